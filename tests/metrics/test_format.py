"""Tests for number, money and date formatting in English and French (metrics/format.py).

The French strings are what Babel's CLDR data gives for fr_FR: digits are grouped with a narrow
no-break space (U+202F, `NNBSP` below) and a no-break space (U+00A0, `NBSP`) comes before "%",
"$US", "€" and "M". Note that CLDR puts U+00A0, not U+202F, before the percent sign.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from metrics.format import (
    babel_locale,
    format_change,
    format_count,
    format_day,
    format_instant,
    format_money,
    format_money_short,
    format_percent,
    format_ratio,
    format_score,
    format_value,
    language,
    not_available,
)
from metrics.result import ratio

NBSP = "\u00a0"
NNBSP = "\u202f"
D = Decimal


@pytest.mark.parametrize(
    ("locale", "expected_language", "expected_babel"),
    [
        ("en", "en", "en_US"),
        ("fr", "fr", "fr_FR"),
        ("fr-CA", "fr", "fr_FR"),
        ("FR_fr", "fr", "fr_FR"),
        ("de", "en", "en_US"),
        ("", "en", "en_US"),
    ],
)
def test_locales_map_to_english_or_french(
    locale: str, expected_language: str, expected_babel: str
) -> None:
    assert language(locale) == expected_language
    assert babel_locale(locale) == expected_babel


@pytest.mark.parametrize(
    ("amount", "currency", "en", "fr"),
    [
        # KPIS.md: 6,500 accounts at $25 → MRR; ARPA $100 at 5 % churn → CLV.
        (D(6500) * D(25), "USD", "$162,500.00", f"162{NNBSP}500,00{NBSP}$US"),
        (D(100) / ratio(5, 100, percent=False), "USD", "$2,000.00", f"2{NNBSP}000,00{NBSP}$US"),
        (D("1234.5"), "EUR", "€1,234.50", f"1{NNBSP}234,50{NBSP}€"),
        (D("-1234.5"), "USD", "-$1,234.50", f"-1{NNBSP}234,50{NBSP}$US"),
        (D(0), "USD", "$0.00", f"0,00{NBSP}$US"),
        # Half-up to the cent, exactly: as a float 2.675 is 2.67499… and would show 2.67.
        (D("2.675"), "USD", "$2.68", f"2,68{NBSP}$US"),
        (D("0.005"), "USD", "$0.01", f"0,01{NBSP}$US"),
        (D("166.6666666667"), "USD", "$166.67", f"166,67{NBSP}$US"),
        # A rounded-away negative cent is zero, without a sign.
        (D("-0.004"), "USD", "$0.00", f"0,00{NBSP}$US"),
        # Currencies keep their own minor unit: the yen has none.
        (D("1234.5"), "JPY", "¥1,235", f"1{NNBSP}235{NBSP}JPY"),
    ],
)
def test_format_money(amount: Decimal, currency: str, en: str, fr: str) -> None:
    assert format_money(amount, currency, "en") == en
    assert format_money(amount, currency, "fr") == fr


def test_money_has_no_float_drift() -> None:
    assert format_money(D("0.1") + D("0.2"), "USD", "en") == "$0.30"
    assert format_money(D("0.1") + D("0.2"), "USD", "fr") == f"0,30{NBSP}$US"


def test_money_keeps_every_digit_of_large_amounts() -> None:
    assert format_money(D("123456789012.34"), "USD", "en") == "$123,456,789,012.34"
    assert format_money(D("123456789012.34"), "EUR", "fr") == (
        f"123{NNBSP}456{NNBSP}789{NNBSP}012,34{NBSP}€"
    )
    # Wider than Decimal's default 28-digit context, and than a float's 17 significant digits.
    huge = D("123456789012345678901234567890.12")
    assert format_money(huge, "USD", "en") == "$123,456,789,012,345,678,901,234,567,890.12"


@pytest.mark.parametrize(
    ("amount", "currency", "en", "fr"),
    [
        (D("1234567"), "USD", "$1.2M", f"1,2{NBSP}M{NBSP}$US"),
        (D("-1250000"), "EUR", "-€1.3M", f"-1,3{NBSP}M{NBSP}€"),
        (D("1500"), "USD", "$1.5K", f"1,5{NBSP}k{NBSP}$US"),
        # Rounded before the unit is chosen: Babel alone would say "$1000K".
        (D("999999"), "USD", "$1M", f"1{NBSP}M{NBSP}$US"),
        (D("999.6"), "USD", "$1K", f"1{NBSP}k{NBSP}$US"),
        (D("950"), "USD", "$950", f"950{NBSP}$US"),
        (D("166.67"), "USD", "$167", f"167{NBSP}$US"),
        (D("2000000"), "USD", "$2M", f"2{NBSP}M{NBSP}$US"),
    ],
)
def test_format_money_short(amount: Decimal, currency: str, en: str, fr: str) -> None:
    assert format_money_short(amount, currency, "en") == en
    assert format_money_short(amount, currency, "fr") == fr


@pytest.mark.parametrize(
    ("value", "en", "fr"),
    [
        # KPIS.md figures, computed the way the metrics compute them.
        (ratio(19500 - 14000, 14000), "39.29%", f"39,29{NBSP}%"),
        (ratio(17000 - 14600, 17000), "14.12%", f"14,12{NBSP}%"),
        (ratio(2, 3), "66.67%", f"66,67{NBSP}%"),
        (ratio(3200, 3000), "106.67%", f"106,67{NBSP}%"),
        (ratio(5, 500), "1%", f"1{NBSP}%"),
        (D("14.1176"), "14.12%", f"14,12{NBSP}%"),
        (D("-5.5"), "-5.5%", f"-5,5{NBSP}%"),
        (D("20.10"), "20.1%", f"20,1{NBSP}%"),
        (D("1234.5"), "1,234.5%", f"1{NNBSP}234,5{NBSP}%"),
        # Half-up (Babel alone rounds half-even: 0.12).
        (D("0.125"), "0.13%", f"0,13{NBSP}%"),
        (D("-0.001"), "0%", f"0{NBSP}%"),
    ],
)
def test_format_percent(value: Decimal, en: str, fr: str) -> None:
    assert format_percent(value, "en") == en
    assert format_percent(value, "fr") == fr


@pytest.mark.parametrize(
    ("n", "en", "fr"),
    [
        (6500, "6,500", f"6{NNBSP}500"),
        (0, "0", "0"),
        (-3, "-3", "-3"),
        (1234567, "1,234,567", f"1{NNBSP}234{NNBSP}567"),
        (D("20.5"), "20.5", "20,5"),
        (D("500"), "500", "500"),
    ],
)
def test_format_count(n: int | Decimal, en: str, fr: str) -> None:
    assert format_count(n, "en") == en
    assert format_count(n, "fr") == fr


@pytest.mark.parametrize(
    ("value", "en", "fr"),
    [
        # KPIS.md: 60 promoters, 10 detractors of 100 → NPS 50.
        (ratio(60, 100) - ratio(10, 100), "50", "50"),
        (D("-12.5"), "-12.5", "-12,5"),
        (D("33.35"), "33.4", "33,4"),
        (D("-100"), "-100", "-100"),
        (D("-0.04"), "0", "0"),
    ],
)
def test_format_score(value: Decimal, en: str, fr: str) -> None:
    assert format_score(value, "en") == en
    assert format_score(value, "fr") == fr


@pytest.mark.parametrize(
    ("value", "en", "fr"),
    [
        (D("4.2"), "4.2", "4,2"),
        (D("4"), "4", "4"),
        (D("4.005"), "4.01", "4,01"),
        (D("1234.5678"), "1,234.57", f"1{NNBSP}234,57"),
    ],
)
def test_format_ratio(value: Decimal, en: str, fr: str) -> None:
    assert format_ratio(value, "en") == en
    assert format_ratio(value, "fr") == fr


@pytest.mark.parametrize(
    ("value", "unit", "en", "fr"),
    [
        (D("162500"), "money", "$162,500.00", f"162{NNBSP}500,00{NBSP}$US"),
        (D("14.1176"), "percent", "14.12%", f"14,12{NBSP}%"),
        (6500, "count", "6,500", f"6{NNBSP}500"),
        (D("6500"), "count", "6,500", f"6{NNBSP}500"),
        (D("-12.54"), "score", "-12.5", "-12,5"),
        (D("4.2"), "ratio", "4.2", "4,2"),
        (None, "percent", "n/a", "n.d."),
        (None, "money", "n/a", "n.d."),
    ],
)
def test_format_value_dispatches_by_unit(
    value: Decimal | int | None, unit: str, en: str, fr: str
) -> None:
    assert format_value(value, unit, currency="USD", locale="en") == en
    assert format_value(value, unit, currency="USD", locale="fr") == fr


def test_not_available_words() -> None:
    assert not_available("en") == "n/a"
    assert not_available("fr_FR") == "n.d."


@pytest.mark.parametrize("value", [D(1), None])
def test_unknown_unit_is_an_error(value: Decimal | None) -> None:
    with pytest.raises(ValueError, match="unit must be one of"):
        format_value(value, "furlongs", currency="USD", locale="en")
    with pytest.raises(ValueError, match="unit must be one of"):
        format_change(value, "furlongs", currency="USD", locale="en")


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot format"):
        format_percent(D("NaN"), "en")
    with pytest.raises(ValueError, match="cannot format"):
        format_money(D("Infinity"), "USD", "en")


@pytest.mark.parametrize(
    ("change", "unit", "en", "fr"),
    [
        (D("1.5"), "percent", "+1.5 pts", f"+1,5{NBSP}pt"),
        (D("-0.5"), "percent", "-0.5 pts", f"-0,5{NBSP}pt"),
        (D("1"), "percent", "+1 pt", f"+1{NBSP}pt"),
        (ratio(2, 3) - D(50), "percent", "+16.67 pts", f"+16,67{NBSP}pt"),
        (D("1200"), "money", "+$1,200.00", f"+1{NNBSP}200,00{NBSP}$US"),
        (D("-1200"), "money", "-$1,200.00", f"-1{NNBSP}200,00{NBSP}$US"),
        (12, "count", "+12", "+12"),
        (D("-1500"), "count", "-1,500", f"-1{NNBSP}500"),
        (D("3"), "score", "+3 pts", f"+3{NBSP}pt"),
        (D("-12.5"), "score", "-12.5 pts", f"-12,5{NBSP}pt"),
        (D("0.2"), "ratio", "+0.2", "+0,2"),
        (D("0"), "percent", "±0", "±0"),
        (D("0"), "money", "±0", "±0"),
        # Changes that round to nothing are no change.
        (D("0.001"), "percent", "±0", "±0"),
        (D("-0.004"), "money", "±0", "±0"),
        (D("0.04"), "score", "±0", "±0"),
        (None, "percent", "n/a", "n.d."),
    ],
)
def test_format_change(change: Decimal | int | None, unit: str, en: str, fr: str) -> None:
    assert format_change(change, unit, currency="USD", locale="en") == en
    assert format_change(change, unit, currency="USD", locale="fr") == fr


def test_money_change_keeps_exact_digits() -> None:
    change = D("123456789012.34") - D("0.01")
    assert format_change(change, "money", currency="USD", locale="en") == "+$123,456,789,012.33"


@pytest.mark.parametrize(
    ("day", "en", "fr"),
    [
        (date(2026, 11, 23), "23 Nov 2026", "23 nov. 2026"),
        (date(2026, 7, 1), "1 Jul 2026", "1 juil. 2026"),
        (date(2026, 9, 30), "30 Sep 2026", "30 sept. 2026"),
    ],
)
def test_format_day(day: date, en: str, fr: str) -> None:
    assert format_day(day, "en") == en
    assert format_day(day, "fr") == fr


@pytest.mark.parametrize(
    ("moment", "timezone", "en", "fr"),
    [
        (
            datetime(2026, 11, 23, 13, 5, tzinfo=UTC),
            "Europe/Paris",
            "23 Nov 2026, 14:05 (Europe/Paris)",
            "23 nov. 2026 à 14:05 (Europe/Paris)",
        ),
        # Summer time: UTC+2, and the local date moves to the next day.
        (
            datetime(2026, 7, 1, 22, 30, tzinfo=UTC),
            "Europe/Paris",
            "2 Jul 2026, 00:30 (Europe/Paris)",
            "2 juil. 2026 à 00:30 (Europe/Paris)",
        ),
        (
            datetime(2026, 11, 23, 3, 0, tzinfo=UTC),
            "America/New_York",
            "22 Nov 2026, 22:00 (America/New_York)",
            "22 nov. 2026 à 22:00 (America/New_York)",
        ),
    ],
)
def test_format_instant(moment: datetime, timezone: str, en: str, fr: str) -> None:
    assert format_instant(moment, timezone, "en") == en
    assert format_instant(moment, timezone, "fr") == fr


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="needs time.tzset (Unix)")
def test_naive_instants_are_utc_whatever_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite hands back stored UTC instants without a zone; the host's zone must not matter.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        naive = datetime(2026, 11, 23, 13, 5)
        assert format_instant(naive, "Europe/Paris", "en") == "23 Nov 2026, 14:05 (Europe/Paris)"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_format_instant_rejects_unknown_zones() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        format_instant(datetime(2026, 1, 1, tzinfo=UTC), "Mars/Olympus", "en")
