"""Human labels and help examples for reporting periods, in English and French (dates via babel).

Labels: "Q3 2026" / "T3 2026" for a quarter, "October 2026" / "octobre 2026" for a month,
"Week 42, 2026" / "Semaine 42, 2026" for an ISO week, "2026" for a year. When the fiscal year
does not start in January, quarters and years carry the fiscal-year label (the calendar year the
fiscal year ends in): "FY2027 Q1" / "T1 exercice 2027" and "FY2027" / "exercice 2027". To-date
periods add "to date" / "à ce jour"; single days and other spans are shown as a date range. Locales
other than English and French get English words with dates formatted in their own locale.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from babel import Locale, UnknownLocaleError
from babel.dates import format_date

if TYPE_CHECKING:
    from metrics.periods import Period

# Every accepted period form once, for help texts; PERIOD_HINT is the short list errors show.
PERIOD_EXAMPLES: tuple[str, ...] = (
    "today",
    "yesterday",
    "this-week",
    "last-week",
    "this-month",
    "last-month",
    "this-quarter",
    "last-quarter",
    "this-year",
    "last-year",
    "mtd",
    "qtd",
    "ytd",
    "last-30-days",
    "last-6-weeks",
    "last-3-months",
    "2026",
    "2026-Q3",
    "Q3-2026",
    "2026-10",
    "2026-W42",
    "2026-10-05",
    "2026-01-01..2026-03-31",
)
PERIOD_HINT = (
    "today, last-week, last-month, last-quarter, ytd, 2026-Q3, 2026-10, 2026-W42, last-30-days, "
    "2026-01-01..2026-03-31"
)

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "quarter": "Q{quarter} {year}",
        "fiscal_quarter": "FY{year} Q{quarter}",
        "year": "{year}",
        "fiscal_year": "FY{year}",
        "week": "Week {week}, {year}",
        "to_date": "{label} to date",
    },
    "fr": {
        "quarter": "T{quarter} {year}",
        "fiscal_quarter": "T{quarter} exercice {year}",
        "year": "{year}",
        "fiscal_year": "exercice {year}",
        "week": "Semaine {week}, {year}",
        "to_date": "{label} à ce jour",
    },
}


def period_label(period: Period, locale: str = "en") -> str:
    """Return the short human label of `period` in `locale` (see the module docstring)."""
    babel_locale = _babel_locale(locale)
    words = _WORDS.get(babel_locale.language, _WORDS["en"])
    fiscal = period.fiscal
    if period.grain == "week":
        iso_year, week, _ = period.start.isocalendar()
        label = words["week"].format(week=week, year=iso_year)
    elif period.grain == "month":
        label = format_date(period.start, "LLLL y", locale=babel_locale)
    elif period.grain == "quarter":
        fiscal_year, quarter = fiscal.quarter_of(period.start)
        key = "quarter" if fiscal.start_month == 1 else "fiscal_quarter"
        label = words[key].format(quarter=quarter, year=fiscal_year)
    elif period.grain == "year":
        key = "year" if fiscal.start_month == 1 else "fiscal_year"
        label = words[key].format(year=fiscal.year_of(period.start))
    else:
        return period_range_label(period.start, period.end, locale)
    return words["to_date"].format(label=label) if period.to_date else label


def period_range_label(start: date, end: date, locale: str = "en") -> str:
    """Return "1 Jul – 30 Sep 2026", "1 – 23 Nov 2026", "29 Dec 2025 – 4 Jan 2026" or one date."""
    babel_locale = _babel_locale(locale)
    last = format_date(end, "d MMM y", locale=babel_locale)
    if start == end:
        return last
    if start.year != end.year:
        first_pattern = "d MMM y"
    elif start.month != end.month:
        first_pattern = "d MMM"
    else:
        first_pattern = "d"
    return f"{format_date(start, first_pattern, locale=babel_locale)} – {last}"


def _babel_locale(locale: str) -> Locale:
    """Return the babel locale for "fr", "fr-FR" or "fr_FR"; English when it is unknown."""
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError, AttributeError):
        return Locale("en")
