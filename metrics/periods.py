"""Reporting periods: the `/kpi` period grammar, the fiscal calendar and period arithmetic.

A period is a run of whole local days `[start, end]` in a time zone (KPIS.md, Conventions). This
module is pure: no database, no settings, no Slack. Callers pass the time zone and the fiscal
calendar they read from their own configuration.

Conventions chosen here (also stated by `/kpi explain`):

- **Fiscal years are labelled by the calendar year they end in.** With `start_month=4`, FY2026 runs
  1 Apr 2025 – 31 Mar 2026, so `2026` means that span and `2026-Q1` means 1 Apr – 30 Jun 2025.
  With `start_month=1` (the default) fiscal and calendar years are the same.
- `this-week`, `this-month`, `this-quarter`, `this-year` are the whole unit (the end may be in the
  future); `mtd`, `qtd`, `ytd` stop at today and are marked `to_date`.
- `last-N-days` and `last-N-weeks` are N days (N x 7 days) ending today, today included.
  `last-N-months` is the N complete calendar months before the current one (today's month is not
  included): on 23 Nov 2026 `last-3-months` is 1 Aug – 31 Oct 2026.
- `previous()` of a to-date period is the same span of the previous unit, shifted by whole months
  and clipped to that unit: 1–23 Nov → 1–23 Oct, 1–31 Mar → 1–28 Feb. Its end is therefore not
  the day before the start; every other period's `previous()` ends the day before it starts.
- An explicit range (or `last-N-months`) that is exactly one day, ISO week, month, fiscal quarter or
  fiscal year takes that grain, so `2026-01-01..2026-03-31` compares with the previous quarter.
  A `days` period made of two or more whole months compares with as many whole months before it;
  any other `days` period compares with the same number of days before it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

from metrics.period_labels import PERIOD_EXAMPLES, PERIOD_HINT, period_label, period_range_label

__all__ = [
    "PERIOD_EXAMPLES",
    "BadPeriod",
    "FiscalCalendar",
    "Period",
    "parse_period",
    "period_for_day",
]

GRAINS = ("day", "week", "month", "quarter", "year", "days")
MIN_YEAR = 1970
MAX_YEAR = 2100
MAX_DAYS = 3650
# The largest N per unit that stays within MAX_DAYS (521 weeks = 3647 days, 120 months ≈ 3652 days).
MAX_COUNT = {"days": MAX_DAYS, "weeks": MAX_DAYS // 7, "months": 120}

_MONTHS_IN = {"month": 1, "quarter": 3, "year": 12}
_UNITS = {
    **dict.fromkeys(("day", "days", "jour", "jours"), "days"),
    **dict.fromkeys(("week", "weeks", "semaine", "semaines"), "weeks"),
    **dict.fromkeys(("month", "months", "mois"), "months"),
}


class BadPeriod(ValueError):
    """A period the user wrote that the grammar does not accept; the message says how to fix it."""

    def __init__(self, text: str, reason: str | None = None) -> None:
        self.text = text
        self.reason = reason
        short = len(text) <= 40
        self.suggestion = _closest_name(text) if reason is None and short else None
        shown = text if short else text[:40] + "…"
        message = f"I didn't understand the period '{shown}'"
        if reason:
            message += f" ({reason})"
        message += "."
        if self.suggestion:
            message += f" Did you mean '{self.suggestion}'?"
        super().__init__(f"{message} Try: {PERIOD_HINT}.")


@dataclass(frozen=True)
class FiscalCalendar:
    """When the fiscal year starts; fiscal years are labelled by the calendar year they end in."""

    start_month: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.start_month, int) or not 1 <= self.start_month <= 12:
            raise ValueError(f"fiscal start_month must be 1..12, not {self.start_month!r}")

    def year_of(self, day: date) -> int:
        """Return the label of the fiscal year containing `day`."""
        if self.start_month == 1 or day.month < self.start_month:
            return day.year
        return day.year + 1

    def year_start(self, fiscal_year: int) -> date:
        """Return the first day of fiscal year `fiscal_year`."""
        if self.start_month == 1:
            return date(fiscal_year, 1, 1)
        return date(fiscal_year - 1, self.start_month, 1)

    def quarter_of(self, day: date) -> tuple[int, int]:
        """Return (fiscal year, quarter 1..4) of the fiscal quarter containing `day`."""
        return self.year_of(day), (day.month - self.start_month) % 12 // 3 + 1

    def quarter_start(self, fiscal_year: int, quarter: int) -> date:
        """Return the first day of quarter `quarter` of fiscal year `fiscal_year`."""
        return self.year_start(fiscal_year) + relativedelta(months=3 * (quarter - 1))


@dataclass(frozen=True)
class Period:
    """Inclusive local days `[start, end]` in `timezone`, with the grain that names them."""

    start: date
    end: date
    timezone: str
    grain: str
    fiscal: FiscalCalendar
    to_date: bool = False

    def __post_init__(self) -> None:
        _zone(self.timezone)
        if self.grain not in GRAINS:
            raise ValueError(f"grain must be one of {', '.join(GRAINS)}, not {self.grain!r}")
        if self.start > self.end:
            raise ValueError(f"period starts after it ends: {self.start} > {self.end}")
        if self.grain == "day" and self.days != 1:
            raise ValueError(f"a day period lasts 1 day, not {self.days}")
        if self.grain == "week" and (
            self.start.isoweekday() != 1 or self.days > 7 or (self.days < 7 and not self.to_date)
        ):
            raise ValueError(f"{self.start}..{self.end} is not an ISO week (Monday to Sunday)")
        if self.grain not in _MONTHS_IN:
            return
        unit_start, unit_end = _unit_bounds(self.start, self.grain, self.fiscal)
        if self.start != unit_start or self.end > unit_end:
            raise ValueError(f"{self.start}..{self.end} is not within one {self.grain}")
        if not self.to_date and self.end != unit_end:
            raise ValueError(f"{self.start}..{self.end} is not a whole {self.grain}")

    @property
    def days(self) -> int:
        """Return the number of local days in the period."""
        return (self.end - self.start).days + 1

    def start_utc(self) -> datetime:
        """Return the aware UTC instant at which `start` begins in the period's time zone."""
        return _local_midnight_utc(self.start, self.timezone)

    def end_utc(self) -> datetime:
        """Return the aware UTC instant at which the day after `end` begins (exclusive bound)."""
        return _local_midnight_utc(self.end + timedelta(days=1), self.timezone)

    def previous(self) -> Period:
        """Return the period of the same kind just before this one (see the module docstring)."""
        if self.grain in _MONTHS_IN:
            shift = relativedelta(months=_MONTHS_IN[self.grain])
            start = self.start - shift
            end = self.end - shift if self.to_date else self.start - timedelta(days=1)
            return replace(self, start=start, end=end)
        months = _whole_months(self.start, self.end) if self.grain == "days" else 0
        if months >= 2:
            start = self.start - relativedelta(months=months)
            return replace(self, start=start, end=self.start - timedelta(days=1))
        step = timedelta(days={"day": 1, "week": 7}.get(self.grain, self.days))
        return replace(self, start=self.start - step, end=self.end - step)

    def last_year(self) -> Period:
        """Return the same period one year earlier (29 Feb becomes 28 Feb)."""
        year = relativedelta(years=1)
        if self.grain == "week":
            iso_year, week, _ = self.start.isocalendar()
            start = _iso_week_start(iso_year - 1, week) or _iso_week_start(iso_year - 1, 52)
            assert start is not None  # every ISO year has a week 52
            return replace(self, start=start, end=start + (self.end - self.start))
        start, end = self.start - year, self.end - year
        if self.grain in _MONTHS_IN and not self.to_date:
            end = _unit_bounds(start, self.grain, self.fiscal)[1]
        elif self.grain == "days" and _whole_months(self.start, self.end):
            end = _month_end(end)
        return replace(self, start=start, end=end)

    def label(self, locale: str = "en") -> str:
        """Return a short human label: "Q3 2026", "octobre 2026", "Week 42, 2026" or a range."""
        return period_label(self, locale)

    def range_label(self, locale: str = "en") -> str:
        """Return the dates as a range, e.g. "1 Jul – 30 Sep 2026" or "1 juil. – 30 sept. 2026"."""
        return period_range_label(self.start, self.end, locale)


def period_for_day(
    day: date, *, timezone: str, fiscal: FiscalCalendar = FiscalCalendar()
) -> Period:
    """Return the one-day period of `day`."""
    return Period(day, day, timezone, "day", fiscal)


def parse_period(
    text: str, *, now: datetime, timezone: str, fiscal: FiscalCalendar = FiscalCalendar()
) -> Period:
    """Return the period `text` names, relative to `now` seen in `timezone`; raise BadPeriod."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    today = now.astimezone(_zone(timezone)).date()
    token = _normalise(text)
    ctx = _Context(text.strip(), today, timezone, fiscal)
    if token in _NAMED:
        return _resolve_named(ctx, _NAMED[token])
    for pattern, resolve in _PATTERNS:
        match = pattern.fullmatch(token)
        if match:
            return resolve(ctx, match)
    raise BadPeriod(text.strip())


# --- Grammar -----------------------------------------------------------------------------------

_NAMED: dict[str, str] = {
    alias: canonical
    for canonical, aliases in {
        "today": ("today", "aujourd-hui", "aujourdhui", "aujourd'hui"),
        "yesterday": ("yesterday", "hier"),
        "this-week": ("this-week", "cette-semaine"),
        "last-week": ("last-week", "semaine-derniere"),
        "this-month": ("this-month", "ce-mois", "ce-mois-ci"),
        "last-month": ("last-month", "mois-dernier"),
        "this-quarter": ("this-quarter", "ce-trimestre"),
        "last-quarter": ("last-quarter", "trimestre-dernier"),
        "this-year": ("this-year", "cette-annee"),
        "last-year": ("last-year", "annee-derniere"),
        "mtd": ("mtd",),
        "qtd": ("qtd",),
        "ytd": ("ytd",),
    }.items()
    for alias in aliases
}


@dataclass(frozen=True)
class _Context:
    """What every grammar rule needs: the text as written, today, the zone and fiscal calendar."""

    text: str
    today: date
    timezone: str
    fiscal: FiscalCalendar

    def bad(self, reason: str) -> BadPeriod:
        return BadPeriod(self.text, reason)

    def period(self, start: date, end: date, grain: str, to_date: bool = False) -> Period:
        return Period(start, end, self.timezone, grain, self.fiscal, to_date)

    def unit(self, day: date, grain: str) -> Period:
        """Return the whole ISO week, month, fiscal quarter or fiscal year containing `day`."""
        if grain == "week":
            start = day - timedelta(days=day.weekday())
            return self.period(start, start + timedelta(days=6), "week")
        return self.period(*_unit_bounds(day, grain, self.fiscal), grain)

    def classified(self, start: date, end: date) -> Period:
        """Return `[start, end]` with the one day, week, month, quarter or year it spans exactly."""
        if start == end:
            return self.period(start, end, "day")
        if start.weekday() == 0 and (end - start).days == 6:
            return self.period(start, end, "week")
        for grain in ("month", "quarter", "year"):
            if _unit_bounds(start, grain, self.fiscal) == (start, end):
                return self.period(start, end, grain)
        return self.period(start, end, "days")

    def parse_year(self, digits: str) -> int:
        year = int(digits)
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise self.bad(f"years go from {MIN_YEAR} to {MAX_YEAR}, not {year}")
        return year

    def parse_date(self, iso: str) -> date:
        year, month, day = (int(part) for part in iso.split("-"))
        try:
            return date(self.parse_year(str(year)), month, day)
        except ValueError:
            raise self.bad(f"{iso} is not a date") from None


def _resolve_named(ctx: _Context, name: str) -> Period:
    today = ctx.today
    if name in ("today", "yesterday"):
        day = today if name == "today" else today - timedelta(days=1)
        return ctx.period(day, day, "day")
    if name in ("mtd", "qtd", "ytd"):
        grain = {"mtd": "month", "qtd": "quarter", "ytd": "year"}[name]
        return ctx.period(_unit_bounds(today, grain, ctx.fiscal)[0], today, grain, to_date=True)
    which, grain = name.split("-")
    current = ctx.unit(today, grain)
    return current if which == "this" else current.previous()


def _resolve_last_n(ctx: _Context, match: re.Match[str]) -> Period:
    count, unit = int(match["n"]), _UNITS[match["unit"]]
    if not 1 <= count <= MAX_COUNT[unit]:
        raise ctx.bad(f"N {unit} must be from 1 to {MAX_COUNT[unit]}")
    if unit == "months":
        end = ctx.today.replace(day=1) - timedelta(days=1)
        return ctx.classified(end.replace(day=1) - relativedelta(months=count - 1), end)
    length = count if unit == "days" else count * 7
    return ctx.period(ctx.today - timedelta(days=length - 1), ctx.today, "days")


def _resolve_year(ctx: _Context, match: re.Match[str]) -> Period:
    return ctx.unit(ctx.fiscal.year_start(ctx.parse_year(match["y"])), "year")


def _resolve_quarter(ctx: _Context, match: re.Match[str]) -> Period:
    year, quarter = ctx.parse_year(match["y"]), int(match["q"])
    if not 1 <= quarter <= 4:
        raise ctx.bad(f"quarters go from 1 to 4, not {quarter}")
    return ctx.unit(ctx.fiscal.quarter_start(year, quarter), "quarter")


def _resolve_week(ctx: _Context, match: re.Match[str]) -> Period:
    year, week = ctx.parse_year(match["y"]), int(match["w"])
    start = _iso_week_start(year, week)
    if start is None:
        weeks = 53 if _iso_week_start(year, 53) else 52
        raise ctx.bad(f"{year} has ISO weeks 1 to {weeks}, not {week}")
    return ctx.unit(start, "week")


def _resolve_month(ctx: _Context, match: re.Match[str]) -> Period:
    year, month = ctx.parse_year(match["y"]), int(match["m"])
    if not 1 <= month <= 12:
        raise ctx.bad(f"months go from 1 to 12, not {month}")
    return ctx.unit(date(year, month, 1), "month")


def _resolve_date(ctx: _Context, match: re.Match[str]) -> Period:
    day = ctx.parse_date(match[0])
    return ctx.period(day, day, "day")


def _resolve_range(ctx: _Context, match: re.Match[str]) -> Period:
    start, end = ctx.parse_date(match["a"]), ctx.parse_date(match["b"])
    if start > end:
        raise ctx.bad(f"the range starts on {start}, after its end {end}")
    return ctx.classified(start, end)


_DATE = r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
_YEAR = r"(?:fy)?(?P<y>[0-9]{4})"
_PATTERNS: list[tuple[re.Pattern[str], Callable[[_Context, re.Match[str]], Period]]] = [
    (re.compile(p), resolve)
    for p, resolve in (
        (r"(?:last|past)-(?P<n>[0-9]{1,5})-(?P<unit>days?|weeks?|months?)", _resolve_last_n),
        (r"(?P<n>[0-9]{1,5})-dernier(?:e|s|es)?-(?P<unit>jours?|semaines?|mois)", _resolve_last_n),
        (_YEAR, _resolve_year),
        (_YEAR + r"-[qt](?P<q>[0-9]{1,2})", _resolve_quarter),
        (r"[qt](?P<q>[0-9]{1,2})-" + _YEAR, _resolve_quarter),
        (r"(?P<y>[0-9]{4})-[ws](?P<w>[0-9]{1,2})", _resolve_week),
        (r"[ws](?P<w>[0-9]{1,2})-(?P<y>[0-9]{4})", _resolve_week),
        (r"(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})", _resolve_month),
        (_DATE, _resolve_date),
        (rf"(?P<a>{_DATE})\.\.(?P<b>{_DATE})", _resolve_range),
    )
]


def _normalise(text: str) -> str:
    """Lower-case, strip accents and surrounding space, and read `_` as `-` and `…` as `..`."""
    decomposed = unicodedata.normalize("NFD", text.strip().lower())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.replace("_", "-").replace("’", "'").replace("…", "..")


def _closest_name(text: str) -> str | None:
    close = difflib.get_close_matches(_normalise(text), _NAMED, n=1, cutoff=0.75)
    return close[0] if close else None


# --- Calendar arithmetic -------------------------------------------------------------------------


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
        raise ValueError(f"unknown time zone {timezone!r}") from error


def _local_midnight_utc(day: date, timezone: str) -> datetime:
    # fold=0 makes a midnight skipped by a DST jump resolve to the instant the day actually begins.
    return datetime.combine(day, time(0), tzinfo=_zone(timezone)).astimezone(UTC)


def _iso_week_start(year: int, week: int) -> date | None:
    try:
        return date.fromisocalendar(year, week, 1)
    except ValueError:
        return None


def _month_end(day: date) -> date:
    return day + relativedelta(day=31)


def _whole_months(start: date, end: date) -> int:
    """Return how many whole calendar months `[start, end]` is, or 0 if it is not whole months."""
    if start.day != 1 or end != _month_end(end):
        return 0
    return (end.year - start.year) * 12 + end.month - start.month + 1


def _unit_bounds(day: date, grain: str, fiscal: FiscalCalendar) -> tuple[date, date]:
    """Return the first and last day of the month, fiscal quarter or fiscal year around `day`."""
    if grain == "month":
        start = day.replace(day=1)
    elif grain == "quarter":
        start = fiscal.quarter_start(*fiscal.quarter_of(day))
    else:
        start = fiscal.year_start(fiscal.year_of(day))
    return start, start + relativedelta(months=_MONTHS_IN[grain]) - timedelta(days=1)
