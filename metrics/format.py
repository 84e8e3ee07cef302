"""Numbers, amounts and dates for people, in English or French, through Babel (CLDR data).

Every function is pure and takes a `locale`: anything starting with "fr" is French (Babel's
`fr_FR`), anything else English (`en_US`). What the output looks like is whatever CLDR says for
those locales: French groups digits with a narrow no-break space (U+202F) and puts a no-break
space (U+00A0) before "%" and the currency, e.g. "162 500,00 $US" and "14,12 %".

Choices made here:

- Numbers are `Decimal` throughout and never pass through `float`. Values are rounded half-up
  to the places shown *before* Babel sees them (Babel itself would round half-even), and a
  rounded zero loses its sign ("0 %", never "-0 %").
- Money shows the currency's own minor unit (2 places for USD and EUR, 0 for JPY) and every
  integer digit; `format_money_short` is the compact form for tight spaces ("$1.2M", "1,2 M $US").
- Percentages (already in percent units: 14.1176 → "14.12%") and ratios show at most 2 decimals,
  scores at most 1, counts none unless they are fractional (a mean of daily users).
- A missing value is "n/a" in English and "n.d." (non disponible) in French.
- Changes are signed: "+1.5 pts" for rates and scores (percentage points; "+1,5 pt" in French,
  where the abbreviation takes no plural and follows a no-break space), "+$1,200.00" for money,
  "+12" for counts, and "±0" for a change that rounds to zero.
- Dates are "23 Nov 2026" / "23 nov. 2026" (the "d MMM y" pattern the period labels use: CLDR's
  en_US medium date would be "Nov 23, 2026"); times are 24-hour in both languages.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime
from babel.numbers import (
    format_compact_currency,
    format_currency,
    format_decimal,
    get_currency_precision,
    get_plus_sign_symbol,
)
from babel.numbers import format_percent as babel_format_percent

__all__ = [
    "UNITS",
    "babel_locale",
    "format_change",
    "format_count",
    "format_day",
    "format_instant",
    "format_money",
    "format_money_short",
    "format_percent",
    "format_ratio",
    "format_score",
    "format_value",
    "language",
    "not_available",
    "rounded_change",
]

UNITS = ("money", "percent", "count", "score", "ratio")

_NOT_AVAILABLE = {"en": "n/a", "fr": "n.d."}
# (space before the unit, singular, plural): French puts a no-break space before units, as
# Babel does before "%" and "$US".
_POINTS = {"en": (" ", "pt", "pts"), "fr": ("\u00a0", "pt", "pt")}
_ZERO_CHANGE = "±0"
# Places shown per unit (money uses the currency's own minor unit instead).
_PLACES = {"percent": 2, "ratio": 2, "score": 1, "count": 2}


def language(locale: str) -> str:
    """Return "fr" for any French locale ("fr", "fr-CA", "fr_FR"), else "en"."""
    return "fr" if locale.strip().lower().startswith("fr") else "en"


def babel_locale(locale: str) -> str:
    """Return the Babel locale used for `locale`: "fr_FR" or "en_US"."""
    return "fr_FR" if language(locale) == "fr" else "en_US"


def not_available(locale: str) -> str:
    """Return the word for a missing value: "n/a" or "n.d."."""
    return _NOT_AVAILABLE[language(locale)]


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """Return `amount` in `currency` with every digit, e.g. "$162,500.00" or "162 500,00 $US"."""
    with _room_for(amount):
        places = get_currency_precision(currency)
        return format_currency(_round(amount, places), currency, locale=babel_locale(locale))


def format_money_short(amount: Decimal, currency: str, locale: str) -> str:
    """Return `amount` compactly, e.g. "$1.2M" / "1,2 M $US", "$950", "$167" for 166.67."""
    with _room_for(amount):
        if abs(amount) < 1000:
            rounded = _round(amount, 0)
        else:
            # Round at one decimal of the thousands unit first: Babel picks the unit before
            # rounding, which turns 999,999 into "$1000K" instead of "$1M".
            unit_exponent = amount.adjusted() // 3 * 3
            rounded = _round(amount, 1 - unit_exponent)
        return format_compact_currency(
            rounded.normalize(), currency, locale=babel_locale(locale), fraction_digits=1
        )


def format_percent(value: Decimal, locale: str) -> str:
    """Return a percentage given in percent units: 14.1176 → "14.12%" / "14,12 %"."""
    with _room_for(value):
        shown = _round(value, _PLACES["percent"]).normalize()
        # Babel's percent patterns multiply by 100; scaleb moves the point exactly instead.
        return babel_format_percent(
            shown.scaleb(-2), locale=babel_locale(locale), decimal_quantization=False
        )


def format_count(n: int | Decimal, locale: str) -> str:
    """Return a count with grouping: 6500 → "6,500" / "6 500" (a fractional mean keeps 2 places)."""
    return _plain(Decimal(n), _PLACES["count"], locale)


def format_score(value: Decimal, locale: str) -> str:
    """Return an NPS-like score with at most 1 decimal: "50", "-12.5" / "-12,5"."""
    return _plain(value, _PLACES["score"], locale)


def format_ratio(value: Decimal, locale: str) -> str:
    """Return a plain ratio or mean with at most 2 decimals: "4.2" / "4,2"."""
    return _plain(value, _PLACES["ratio"], locale)


def format_value(value: Decimal | int | None, unit: str, *, currency: str, locale: str) -> str:
    """Return `value` formatted for its unit (see UNITS); None is "n/a" / "n.d."."""
    formatter = _formatter(unit, currency)
    if value is None:
        return not_available(locale)
    return formatter(Decimal(value), locale)


def format_change(change: Decimal | int | None, unit: str, *, currency: str, locale: str) -> str:
    """Return a signed change: "+1.5 pts", "-$1,200.00", "+12"; "±0" when it rounds to zero."""
    formatter = _formatter(unit, currency)
    if change is None:
        return not_available(locale)
    shown = rounded_change(Decimal(change), unit, currency)
    if shown == 0:
        return _ZERO_CHANGE
    points = unit in ("percent", "score")
    # A change of rate is in percentage points, so it is shown as a plain number plus "pts".
    text = _plain(shown, _PLACES[unit], locale) if points else formatter(shown, locale)
    if shown > 0:
        text = get_plus_sign_symbol(babel_locale(locale)) + text
    if points:
        space, one, many = _POINTS[language(locale)]
        text += space + (one if abs(shown) == 1 else many)
    return text


def rounded_change(change: Decimal, unit: str, currency: str) -> Decimal:
    """Return `change` rounded as `format_change` shows it (its sign is the arrow's direction)."""
    places = get_currency_precision(currency) if unit == "money" else _PLACES.get(unit, 2)
    with _room_for(change):
        return _round(change, places)


def format_day(day: date, locale: str) -> str:
    """Return a day as "23 Nov 2026" / "23 nov. 2026"."""
    return format_date(day, "d MMM y", locale=babel_locale(locale))


def format_instant(moment: datetime, timezone: str, locale: str) -> str:
    """Return an instant in `timezone`: "23 Nov 2026, 14:05 (Europe/Paris)" / "… à 14:05 (…)".

    A naive datetime is read as UTC (SQLite hands back naive UTC timestamps).
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {timezone!r}") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(zone)
    pattern = "d MMM y 'à' HH:mm" if language(locale) == "fr" else "d MMM y, HH:mm"
    return f"{format_datetime(local, pattern, locale=babel_locale(locale))} ({timezone})"


def _formatter(unit: str, currency: str) -> Callable[[Decimal, str], str]:
    """Return the function that formats a Decimal of `unit`; raise ValueError for others."""
    if unit == "money":
        return lambda value, locale: format_money(value, currency, locale)
    formatters: dict[str, Callable[[Decimal, str], str]] = {
        "percent": format_percent,
        "count": format_count,
        "score": format_score,
        "ratio": format_ratio,
    }
    if unit not in formatters:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    return formatters[unit]


def _plain(value: Decimal, places: int, locale: str) -> str:
    """Return a grouped number with at most `places` decimals and no trailing zeros."""
    with _room_for(value):
        pattern = "#,##0" + ("." + "#" * places if places else "")
        return format_decimal(_round(value, places), format=pattern, locale=babel_locale(locale))


def _round(value: Decimal, places: int) -> Decimal:
    """Return `value` rounded half-up to `places` decimals (negative: to tens…), 0 unsigned."""
    if not value.is_finite():
        raise ValueError(f"cannot format {value}")
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return rounded.copy_abs() if rounded.is_zero() else rounded


def _room_for(value: Decimal) -> AbstractContextManager[Context]:
    """Return a decimal context wide enough to quantize `value` without losing digits."""
    digits = value.adjusted() + 10 if value.is_finite() else 0
    return localcontext(prec=max(28, digits))
