"""Tests for the period grammar, the fiscal calendar and period arithmetic (metrics/periods.py)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.periods import (
    PERIOD_EXAMPLES,
    BadPeriod,
    FiscalCalendar,
    Period,
    parse_period,
    period_for_day,
)

# Monday 23 November 2026, mid-afternoon UTC: the same local date in UTC and Europe/Paris.
NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
CALENDAR = FiscalCalendar()
APRIL = FiscalCalendar(start_month=4)


def parse(
    text: str,
    *,
    now: datetime = NOW,
    timezone: str = "UTC",
    fiscal: FiscalCalendar = CALENDAR,
) -> Period:
    return parse_period(text, now=now, timezone=timezone, fiscal=fiscal)


def span(period: Period) -> tuple[date, date]:
    return period.start, period.end


def d(iso: str) -> date:
    return date.fromisoformat(iso)


# --- The grammar, resolved against a fixed `now` -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end", "grain", "to_date"),
    [
        ("today", "2026-11-23", "2026-11-23", "day", False),
        ("yesterday", "2026-11-22", "2026-11-22", "day", False),
        ("this-week", "2026-11-23", "2026-11-29", "week", False),
        ("last-week", "2026-11-16", "2026-11-22", "week", False),
        ("this-month", "2026-11-01", "2026-11-30", "month", False),
        ("last-month", "2026-10-01", "2026-10-31", "month", False),
        ("this-quarter", "2026-10-01", "2026-12-31", "quarter", False),
        ("last-quarter", "2026-07-01", "2026-09-30", "quarter", False),
        ("this-year", "2026-01-01", "2026-12-31", "year", False),
        ("last-year", "2025-01-01", "2025-12-31", "year", False),
        ("mtd", "2026-11-01", "2026-11-23", "month", True),
        ("qtd", "2026-10-01", "2026-11-23", "quarter", True),
        ("ytd", "2026-01-01", "2026-11-23", "year", True),
        ("last-30-days", "2026-10-25", "2026-11-23", "days", False),
        ("last-1-day", "2026-11-23", "2026-11-23", "days", False),
        ("last-2-weeks", "2026-11-10", "2026-11-23", "days", False),
        ("past-7-days", "2026-11-17", "2026-11-23", "days", False),
        ("last-1-months", "2026-10-01", "2026-10-31", "month", False),
        ("last-2-months", "2026-09-01", "2026-10-31", "days", False),
        ("last-3-months", "2026-08-01", "2026-10-31", "days", False),
        ("last-12-months", "2025-11-01", "2026-10-31", "days", False),
        ("last-3650-days", "2016-11-26", "2026-11-23", "days", False),
        ("last-521-weeks", "2016-11-29", "2026-11-23", "days", False),
        ("last-120-months", "2016-11-01", "2026-10-31", "days", False),
        ("2026", "2026-01-01", "2026-12-31", "year", False),
        ("FY2026", "2026-01-01", "2026-12-31", "year", False),
        ("2026-Q3", "2026-07-01", "2026-09-30", "quarter", False),
        ("Q3-2026", "2026-07-01", "2026-09-30", "quarter", False),
        ("2026-q1", "2026-01-01", "2026-03-31", "quarter", False),
        ("2026-10", "2026-10-01", "2026-10-31", "month", False),
        ("2026-2", "2026-02-01", "2026-02-28", "month", False),
        ("2028-02", "2028-02-01", "2028-02-29", "month", False),
        ("2026-W42", "2026-10-12", "2026-10-18", "week", False),
        ("W42-2026", "2026-10-12", "2026-10-18", "week", False),
        ("2026-10-05", "2026-10-05", "2026-10-05", "day", False),
        ("2026-01-01..2026-03-31", "2026-01-01", "2026-03-31", "quarter", False),
        ("2026-01-01..2026-01-31", "2026-01-01", "2026-01-31", "month", False),
        ("2026-01-05..2026-01-11", "2026-01-05", "2026-01-11", "week", False),
        ("2026-01-06..2026-01-12", "2026-01-06", "2026-01-12", "days", False),
        ("2026-01-01..2026-02-15", "2026-01-01", "2026-02-15", "days", False),
        ("2026-10-05..2026-10-05", "2026-10-05", "2026-10-05", "day", False),
        ("2025-12-01..2026-12-31", "2025-12-01", "2026-12-31", "days", False),
        ("2026-01-01…2026-01-02", "2026-01-01", "2026-01-02", "days", False),
        ("  LAST-Quarter \n", "2026-07-01", "2026-09-30", "quarter", False),
        ("last_quarter", "2026-07-01", "2026-09-30", "quarter", False),
        ("YTD", "2026-01-01", "2026-11-23", "year", True),
    ],
)
def test_parse_resolves_dates(text: str, start: str, end: str, grain: str, to_date: bool) -> None:
    period = parse(text)
    assert span(period) == (d(start), d(end))
    assert (period.grain, period.to_date) == (grain, to_date)
    assert period.timezone == "UTC"
    assert period.fiscal == FiscalCalendar()


def test_last_n_weeks_is_n_times_seven_days_ending_today() -> None:
    period = parse("last-4-weeks")
    assert period.end == d("2026-11-23")
    assert period.days == 28


@pytest.mark.parametrize(
    ("french", "english"),
    [
        ("aujourd-hui", "today"),
        ("aujourdhui", "today"),
        ("aujourd'hui", "today"),
        ("Aujourd’hui", "today"),
        ("hier", "yesterday"),
        ("cette-semaine", "this-week"),
        ("semaine-derniere", "last-week"),
        ("semaine-dernière", "last-week"),
        ("ce-mois", "this-month"),
        ("mois-dernier", "last-month"),
        ("ce-trimestre", "this-quarter"),
        ("trimestre-dernier", "last-quarter"),
        ("cette-annee", "this-year"),
        ("cette-année", "this-year"),
        ("CETTE-ANNÉE", "this-year"),
        ("annee-derniere", "last-year"),
        ("année-dernière", "last-year"),
        ("30-derniers-jours", "last-30-days"),
        ("1-dernier-jour", "last-1-days"),
        ("3-dernieres-semaines", "last-3-weeks"),
        ("3-dernières-semaines", "last-3-weeks"),
        ("2-derniers-mois", "last-2-months"),
        ("T3-2026", "2026-Q3"),
        ("2026-T3", "2026-Q3"),
        ("S42-2026", "2026-W42"),
        ("2026-S42", "2026-W42"),
        ("annee_derniere", "last-year"),
    ],
)
def test_french_aliases_resolve_like_english(french: str, english: str) -> None:
    assert parse(french, fiscal=APRIL) == parse(english, fiscal=APRIL)


def test_single_date_is_period_for_day() -> None:
    period = parse("2026-10-05", timezone="Europe/Paris", fiscal=APRIL)
    assert period == period_for_day(d("2026-10-05"), timezone="Europe/Paris", fiscal=APRIL)
    assert period.days == 1


# --- Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "lastquater",
        "",
        "   ",
        "last quarter",
        "next-week",
        "2026-13",
        "2026-0",
        "2026-Q5",
        "2026-Q0",
        "Q5-2026",
        "2026-W54",
        "2026-W00",
        "2025-W53",
        "2026-02-30",
        "2026-13-01",
        "2026-03-01..2026-02-01",
        "2026-10-05..",
        "..2026-10-05",
        "2026-10-05..2026-10-06..2026-10-07",
        "1969",
        "2101",
        "1969-12",
        "1969-12-31..2026-01-01",
        "2026-01-01..2101-01-01",
        "2101-Q1",
        "last-0-days",
        "last-3651-days",
        "last-522-weeks",
        "last-121-months",
        "last-99999-days",
        "last--3-days",
        "٢٠٢٦",
        "２０２６",
        "2026-Q3-2026",
        "0-derniers-jours",
    ],
)
def test_bad_periods_raise_bad_period_with_help(text: str) -> None:
    with pytest.raises(BadPeriod) as caught:
        parse(text)
    assert caught.value.text == text.strip()
    message = str(caught.value)
    assert f"the period '{text.strip()}'" in message
    assert "Try: today, last-week" in message
    assert "2026-Q3" in message
    assert "2026-01-01..2026-03-31" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-13", "months go from 1 to 12, not 13"),
        ("2026-Q5", "quarters go from 1 to 4, not 5"),
        ("2026-W54", "2026 has ISO weeks 1 to 53, not 54"),
        ("2025-W53", "2025 has ISO weeks 1 to 52, not 53"),
        ("2026-02-30", "2026-02-30 is not a date"),
        ("2026-03-01..2026-02-01", "the range starts on 2026-03-01, after its end 2026-02-01"),
        ("1969", "years go from 1970 to 2100, not 1969"),
        ("last-3651-days", "N days must be from 1 to 3650"),
        ("last-522-weeks", "N weeks must be from 1 to 521"),
        ("last-121-months", "N months must be from 1 to 120"),
    ],
)
def test_out_of_range_errors_say_why(text: str, reason: str) -> None:
    with pytest.raises(BadPeriod, match=f"'{text}' \\({reason}\\)"):
        parse(text)


def test_misspelling_suggests_the_closest_period() -> None:
    with pytest.raises(BadPeriod) as caught:
        parse("lastquater")
    assert caught.value.suggestion == "last-quarter"
    assert "Did you mean 'last-quarter'?" in str(caught.value)


def test_long_text_is_shortened_in_the_message_but_kept_on_the_error() -> None:
    text = "x" * 500
    with pytest.raises(BadPeriod) as caught:
        parse(text)
    assert caught.value.text == text
    assert "'" + "x" * 40 + "…'" in str(caught.value)
    assert len(str(caught.value)) < 300


def test_bad_period_is_a_value_error() -> None:
    assert issubclass(BadPeriod, ValueError)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_period("today", now=datetime(2026, 11, 23, 12), timezone="UTC")


def test_examples_all_parse() -> None:
    assert "2026-01-01..2026-03-31" in PERIOD_EXAMPLES
    for example in PERIOD_EXAMPLES:
        assert parse(example).start <= parse(example).end


# --- Fiscal calendar starting in April (FY labelled by the calendar year it ends in) -----------


@pytest.mark.parametrize(
    ("text", "start", "end", "grain"),
    [
        ("2026", "2025-04-01", "2026-03-31", "year"),
        ("FY2026", "2025-04-01", "2026-03-31", "year"),
        ("2026-Q1", "2025-04-01", "2025-06-30", "quarter"),
        ("2026-Q2", "2025-07-01", "2025-09-30", "quarter"),
        ("Q3-2026", "2025-10-01", "2025-12-31", "quarter"),
        ("T4-2026", "2026-01-01", "2026-03-31", "quarter"),
        ("this-quarter", "2026-10-01", "2026-12-31", "quarter"),
        ("last-quarter", "2026-07-01", "2026-09-30", "quarter"),
        ("this-year", "2026-04-01", "2027-03-31", "year"),
        ("last-year", "2025-04-01", "2026-03-31", "year"),
        ("ytd", "2026-04-01", "2026-11-23", "year"),
        ("qtd", "2026-10-01", "2026-11-23", "quarter"),
        ("2026-10", "2026-10-01", "2026-10-31", "month"),
        ("2025-04-01..2026-03-31", "2025-04-01", "2026-03-31", "year"),
        ("2026-01-01..2026-03-31", "2026-01-01", "2026-03-31", "quarter"),
        ("2026-02-01..2026-04-30", "2026-02-01", "2026-04-30", "days"),
    ],
)
def test_fiscal_year_starting_in_april(text: str, start: str, end: str, grain: str) -> None:
    period = parse(text, fiscal=APRIL)
    assert span(period) == (d(start), d(end))
    assert period.grain == grain


def test_fiscal_quarters_early_in_the_calendar_year() -> None:
    february = datetime(2026, 2, 10, 12, tzinfo=UTC)
    assert span(parse("this-year", now=february, fiscal=APRIL)) == (
        d("2025-04-01"),
        d("2026-03-31"),
    )
    assert span(parse("last-quarter", now=february, fiscal=APRIL)) == (
        d("2025-10-01"),
        d("2025-12-31"),
    )
    assert span(parse("ytd", now=february, fiscal=APRIL)) == (d("2025-04-01"), d("2026-02-10"))


def test_calendar_year_range_is_not_a_fiscal_year_under_april() -> None:
    assert parse("2026-01-01..2026-12-31").grain == "year"
    assert parse("2026-01-01..2026-12-31", fiscal=APRIL).grain == "days"


def test_fiscal_year_starting_in_october() -> None:
    october = FiscalCalendar(start_month=10)
    assert span(parse("2026", fiscal=october)) == (d("2025-10-01"), d("2026-09-30"))
    assert span(parse("2026-Q1", fiscal=october)) == (d("2025-10-01"), d("2025-12-31"))
    assert span(parse("2026-Q4", fiscal=october)) == (d("2026-07-01"), d("2026-09-30"))


def test_fiscal_previous_crosses_the_fiscal_year() -> None:
    q1 = parse("2026-Q1", fiscal=APRIL)
    assert span(q1.previous()) == (d("2025-01-01"), d("2025-03-31"))
    assert q1.previous().label() == "FY2025 Q4"
    assert span(parse("2026", fiscal=APRIL).previous()) == (d("2024-04-01"), d("2025-03-31"))


def test_fiscal_calendar_methods() -> None:
    assert APRIL.year_of(d("2026-03-31")) == 2026
    assert APRIL.year_of(d("2026-04-01")) == 2027
    assert APRIL.quarter_of(d("2026-04-01")) == (2027, 1)
    assert APRIL.quarter_of(d("2026-03-31")) == (2026, 4)
    assert FiscalCalendar().quarter_of(d("2026-08-15")) == (2026, 3)
    assert APRIL.quarter_start(2027, 3) == d("2026-10-01")


@pytest.mark.parametrize("month", [0, 13, -1])
def test_fiscal_calendar_rejects_impossible_months(month: int) -> None:
    with pytest.raises(ValueError, match="start_month"):
        FiscalCalendar(start_month=month)


# --- Time zones: DST and `now` near midnight -----------------------------------------------------


def test_week_with_spring_dst_change_in_paris_is_167_hours() -> None:
    period = parse("2026-W13", timezone="Europe/Paris")  # Mon 23 – Sun 29 March 2026
    assert span(period) == (d("2026-03-23"), d("2026-03-29"))
    assert period.start_utc() == datetime(2026, 3, 22, 23, tzinfo=UTC)  # UTC+1
    assert period.end_utc() == datetime(2026, 3, 29, 22, tzinfo=UTC)  # UTC+2
    assert period.end_utc() - period.start_utc() == timedelta(hours=167)
    assert period.days == 7


def test_week_with_autumn_dst_change_in_paris_is_169_hours() -> None:
    period = parse("2026-W43", timezone="Europe/Paris")  # 19 – 25 October 2026
    assert period.end_utc() - period.start_utc() == timedelta(hours=169)


def test_utc_bounds_are_aware_utc() -> None:
    period = parse("today", timezone="America/Los_Angeles")
    assert period.start_utc().tzinfo is UTC
    assert period.end_utc().tzinfo is UTC
    assert period.start_utc() == datetime(2026, 11, 23, 8, tzinfo=UTC)  # PST, UTC-8


def test_day_whose_midnight_is_skipped_starts_at_local_one_am() -> None:
    # Chile moves its clocks from 00:00 to 01:00 on 6 September 2026.
    period = period_for_day(d("2026-09-06"), timezone="America/Santiago")
    local_start = period.start_utc().astimezone(ZoneInfo("America/Santiago"))
    assert (local_start.day, local_start.hour) == (6, 1)
    assert period.end_utc() - period.start_utc() == timedelta(hours=23)


def test_now_just_after_midnight_utc_is_still_yesterday_in_los_angeles() -> None:
    now = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)  # 31 Oct, 20:00 PDT
    assert parse("today", now=now).start == d("2026-11-01")
    los_angeles = "America/Los_Angeles"
    assert parse("today", now=now, timezone=los_angeles).start == d("2026-10-31")
    assert span(parse("mtd", now=now, timezone=los_angeles)) == (
        d("2026-10-01"),
        d("2026-10-31"),
    )
    assert parse("this-month", now=now, timezone=los_angeles).label() == "October 2026"


def test_now_before_midnight_utc_is_already_new_year_in_auckland() -> None:
    now = datetime(2026, 12, 31, 12, 0, tzinfo=UTC)  # 1 Jan 2027, 01:00 NZDT
    auckland = "Pacific/Auckland"
    assert parse("today", now=now).start == d("2026-12-31")
    assert parse("today", now=now, timezone=auckland).start == d("2027-01-01")
    assert parse("yesterday", now=now, timezone=auckland).start == d("2026-12-31")
    assert span(parse("ytd", now=now, timezone=auckland)) == (d("2027-01-01"), d("2027-01-01"))
    assert parse("this-year", now=now, timezone=auckland).start.year == 2027
    today = parse("today", now=now, timezone=auckland)
    assert today.start_utc() == datetime(2026, 12, 31, 11, tzinfo=UTC)  # NZDT, UTC+13


def test_now_in_another_zone_is_converted() -> None:
    now = datetime(2026, 11, 23, 23, 30, tzinfo=ZoneInfo("America/New_York"))  # 04:30Z on 24th
    assert parse("today", now=now).start == d("2026-11-24")
    assert parse("today", now=now, timezone="America/New_York").start == d("2026-11-23")


def test_unknown_time_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse("today", timezone="Mars/Olympus_Mons")


# --- ISO weeks across year boundaries ----------------------------------------------------------


@pytest.mark.parametrize("year", range(2015, 2033))
def test_week_53_exists_exactly_when_the_stdlib_says_so(year: int) -> None:
    # 28 December is always in the last ISO week of its year.
    has_53 = date(year, 12, 28).isocalendar().week == 53
    assert has_53 == (year in (2015, 2020, 2026, 2032))
    if has_53:
        assert parse(f"{year}-W53").end == date.fromisocalendar(year, 53, 7)
    else:
        with pytest.raises(BadPeriod, match=f"{year} has ISO weeks 1 to 52"):
            parse(f"{year}-W53")


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-W53", "2026-12-28", "2027-01-03"),
        ("2020-W53", "2020-12-28", "2021-01-03"),
        ("2021-W52", "2021-12-27", "2022-01-02"),
        ("2027-W01", "2027-01-04", "2027-01-10"),
        ("2027-W1", "2027-01-04", "2027-01-10"),
        ("2026-W01", "2025-12-29", "2026-01-04"),
    ],
)
def test_iso_weeks_across_year_boundaries(text: str, start: str, end: str) -> None:
    period = parse(text)
    assert span(period) == (d(start), d(end))
    assert period.start.weekday() == 0


def test_2021_has_no_week_53() -> None:
    with pytest.raises(BadPeriod, match="2021 has ISO weeks 1 to 52"):
        parse("2021-W53")


@pytest.mark.parametrize(
    ("text", "previous_start"),
    [
        ("2027-W01", "2026-12-28"),  # week 53 of 2026
        ("2021-W01", "2020-12-28"),  # week 53 of 2020
        ("2022-W01", "2021-12-27"),  # week 52 of 2021
    ],
)
def test_previous_of_week_one_is_the_last_week_of_the_previous_iso_year(
    text: str, previous_start: str
) -> None:
    previous = parse(text).previous()
    assert span(previous) == (d(previous_start), d(previous_start) + timedelta(days=6))
    assert previous.grain == "week"


def test_this_week_on_new_years_day_is_week_53_of_the_old_iso_year() -> None:
    now = datetime(2027, 1, 1, 12, tzinfo=UTC)  # a Friday
    period = parse("this-week", now=now)
    assert span(period) == (d("2026-12-28"), d("2027-01-03"))
    assert period.label() == "Week 53, 2026"


def test_last_year_of_week_53_falls_back_to_week_52() -> None:
    assert span(parse("2026-W53").last_year()) == (d("2025-12-22"), d("2025-12-28"))
    assert span(parse("2021-W10").last_year()) == (d("2020-03-02"), d("2020-03-08"))
    assert span(parse("2020-W53").last_year()) == (
        d("2019-12-23"),
        d("2019-12-29"),
    )


# --- previous() and last_year() for every grain --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "start", "end"),
    [
        ("2026-03-01", NOW, "2026-02-28", "2026-02-28"),
        ("2026-W42", NOW, "2026-10-05", "2026-10-11"),
        ("2026-03", NOW, "2026-02-01", "2026-02-28"),
        ("2026-01", NOW, "2025-12-01", "2025-12-31"),
        ("2026-Q1", NOW, "2025-10-01", "2025-12-31"),
        ("2026", NOW, "2025-01-01", "2025-12-31"),
        ("last-30-days", NOW, "2026-09-25", "2026-10-24"),
        ("2026-01-10..2026-01-20", NOW, "2025-12-30", "2026-01-09"),
        ("2026-01-01..2026-02-28", NOW, "2025-11-01", "2025-12-31"),
        ("last-3-months", NOW, "2026-05-01", "2026-07-31"),
        ("mtd", NOW, "2026-10-01", "2026-10-23"),
        ("mtd", datetime(2026, 3, 31, 12, tzinfo=UTC), "2026-02-01", "2026-02-28"),
        ("mtd", datetime(2028, 3, 31, 12, tzinfo=UTC), "2028-02-01", "2028-02-29"),
        ("mtd", datetime(2026, 3, 1, 12, tzinfo=UTC), "2026-02-01", "2026-02-01"),
        ("qtd", NOW, "2026-07-01", "2026-08-23"),
        ("qtd", datetime(2026, 12, 31, 12, tzinfo=UTC), "2026-07-01", "2026-09-30"),
        ("qtd", datetime(2026, 5, 31, 12, tzinfo=UTC), "2026-01-01", "2026-02-28"),
        ("ytd", NOW, "2025-01-01", "2025-11-23"),
        ("ytd", datetime(2028, 2, 29, 12, tzinfo=UTC), "2027-01-01", "2027-02-28"),
    ],
)
def test_previous(text: str, now: datetime, start: str, end: str) -> None:
    period = parse(text, now=now)
    previous = period.previous()
    assert span(previous) == (d(start), d(end))
    assert (previous.grain, previous.to_date) == (period.grain, period.to_date)
    assert (previous.timezone, previous.fiscal) == (period.timezone, period.fiscal)


def test_previous_of_fiscal_ytd_is_the_same_span_of_the_previous_fiscal_year() -> None:
    previous = parse("ytd", fiscal=APRIL).previous()
    assert span(previous) == (d("2025-04-01"), d("2025-11-23"))


@pytest.mark.parametrize(
    ("text", "now", "start", "end"),
    [
        ("2028-02-29", NOW, "2027-02-28", "2027-02-28"),
        ("2026-10-05", NOW, "2025-10-05", "2025-10-05"),
        ("2028-02", NOW, "2027-02-01", "2027-02-28"),
        ("2025-02", NOW, "2024-02-01", "2024-02-29"),
        ("2026-Q3", NOW, "2025-07-01", "2025-09-30"),
        ("2026", NOW, "2025-01-01", "2025-12-31"),
        ("mtd", datetime(2028, 2, 29, 12, tzinfo=UTC), "2027-02-01", "2027-02-28"),
        ("ytd", NOW, "2025-01-01", "2025-11-23"),
        ("last-30-days", NOW, "2025-10-25", "2025-11-23"),
        ("2028-02-29..2028-03-05", NOW, "2027-02-28", "2027-03-05"),
        ("2024-01-01..2024-02-29", NOW, "2023-01-01", "2023-02-28"),
        ("2025-01-01..2025-02-28", NOW, "2024-01-01", "2024-02-29"),
    ],
)
def test_last_year(text: str, now: datetime, start: str, end: str) -> None:
    period = parse(text, now=now)
    last_year = period.last_year()
    assert span(last_year) == (d(start), d(end))
    assert (last_year.grain, last_year.to_date) == (period.grain, period.to_date)


def test_last_year_of_fiscal_quarter_and_year() -> None:
    assert span(parse("2026-Q1", fiscal=APRIL).last_year()) == (d("2024-04-01"), d("2024-06-30"))
    assert span(parse("2026", fiscal=APRIL).last_year()) == (d("2024-04-01"), d("2025-03-31"))


# --- Labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fiscal", "english", "french"),
    [
        ("2026-Q3", FiscalCalendar(), "Q3 2026", "T3 2026"),
        ("2026-10", FiscalCalendar(), "October 2026", "octobre 2026"),
        ("2026-W42", FiscalCalendar(), "Week 42, 2026", "Semaine 42, 2026"),
        ("2026-W01", FiscalCalendar(), "Week 1, 2026", "Semaine 1, 2026"),
        ("2026", FiscalCalendar(), "2026", "2026"),
        ("2026-10-05", FiscalCalendar(), "5 Oct 2026", "5 oct. 2026"),
        ("mtd", FiscalCalendar(), "November 2026 to date", "novembre 2026 à ce jour"),
        ("qtd", FiscalCalendar(), "Q4 2026 to date", "T4 2026 à ce jour"),
        ("last-30-days", FiscalCalendar(), "25 Oct – 23 Nov 2026", "25 oct. – 23 nov. 2026"),
        ("2027-Q1", APRIL, "FY2027 Q1", "T1 exercice 2027"),
        ("2027", APRIL, "FY2027", "exercice 2027"),
        ("ytd", APRIL, "FY2027 to date", "exercice 2027 à ce jour"),
        ("2026-10", APRIL, "October 2026", "octobre 2026"),
    ],
)
def test_labels(text: str, fiscal: FiscalCalendar, english: str, french: str) -> None:
    period = parse(text, fiscal=fiscal)
    assert period.label() == english
    assert period.label("en") == english
    assert period.label("fr") == french


@pytest.mark.parametrize(
    ("text", "english", "french"),
    [
        ("2026-Q3", "1 Jul – 30 Sep 2026", "1 juil. – 30 sept. 2026"),
        ("mtd", "1 – 23 Nov 2026", "1 – 23 nov. 2026"),
        ("2026-W01", "29 Dec 2025 – 4 Jan 2026", "29 déc. 2025 – 4 janv. 2026"),
        ("2026-10-05", "5 Oct 2026", "5 oct. 2026"),
    ],
)
def test_range_labels(text: str, english: str, french: str) -> None:
    period = parse(text)
    assert period.range_label() == english
    assert period.range_label("fr") == french


@pytest.mark.parametrize(("locale", "label"), [("fr-FR", "T3 2026"), ("fr_CA", "T3 2026")])
def test_regional_french_locales_get_french_labels(locale: str, label: str) -> None:
    assert parse("2026-Q3").label(locale) == label


@pytest.mark.parametrize("locale", ["xx", "", "not a locale"])
def test_unknown_locale_falls_back_to_english(locale: str) -> None:
    assert parse("2026-10").label(locale) == "October 2026"
    assert parse("2026-Q3").range_label(locale) == "1 Jul – 30 Sep 2026"


# --- Constructing periods directly ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "grain", "to_date", "message"),
    [
        ("2026-10-05", "2026-10-04", "days", False, "starts after it ends"),
        ("2026-10-05", "2026-10-05", "fortnight", False, "grain must be one of"),
        ("2026-10-05", "2026-10-06", "day", False, "a day period lasts 1 day"),
        ("2026-10-06", "2026-10-12", "week", False, "not an ISO week"),
        ("2026-10-05", "2026-10-08", "week", False, "not an ISO week"),
        ("2026-10-02", "2026-10-31", "month", False, "not within one month"),
        ("2026-10-01", "2026-11-01", "month", True, "not within one month"),
        ("2026-10-01", "2026-10-30", "month", False, "not a whole month"),
        ("2026-02-01", "2026-04-30", "quarter", False, "not within one quarter"),
    ],
)
def test_period_refuses_inconsistent_fields(
    start: str, end: str, grain: str, to_date: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Period(d(start), d(end), "UTC", grain, APRIL, to_date)


def test_period_accepts_consistent_fields() -> None:
    period = Period(d("2026-10-01"), d("2026-10-23"), "Europe/Paris", "month", APRIL, True)
    assert period.days == 23
    assert span(period.previous()) == (d("2026-09-01"), d("2026-09-23"))


def test_period_for_day() -> None:
    period = period_for_day(d("2026-03-29"), timezone="Europe/Paris")
    assert (period.grain, period.days, period.fiscal) == ("day", 1, FiscalCalendar())
    assert period.end_utc() - period.start_utc() == timedelta(hours=23)


# --- Properties ----------------------------------------------------------------------------------

TIMEZONES = ["UTC", "Europe/Paris", "America/Los_Angeles", "Pacific/Auckland", "Asia/Kolkata"]
nows = st.datetimes(
    min_value=datetime(1985, 1, 1),
    max_value=datetime(2085, 12, 31),
    timezones=st.just(UTC),
)
zones = st.sampled_from(TIMEZONES)
fiscals = st.builds(FiscalCalendar, st.integers(min_value=1, max_value=12))

WORDS = [
    *("today", "yesterday", "this", "last", "past", "mtd", "qtd", "ytd", "fy", "q", "t", "w", "s"),
    *("day", "days", "week", "weeks", "month", "months", "quarter", "year"),
    *("derniers", "dernieres", "dernières", "jours", "semaines", "mois", "cette", "annee"),
    *("aujourd", "hui"),
]
SEPARATORS = ["-", "_", "..", "…", "", " ", "--", "/", "'"]
# Near-valid shapes: the real forms with numbers that may be out of range (month 13, W54, 30 Feb).
SHAPES = [
    "{y}",
    "fy{y}",
    "{y}-{a}",
    "{y}-{a}-{b}",
    "{y}-q{a}",
    "q{a}-{y}",
    "{y}-t{a}",
    "{y}-w{a}",
    "s{a}-{y}",
    "last-{n}-{unit}",
    "{n}-derniers-{unit}",
    "{y}-{a}-{b}..{z}-{a}-{b}",
    "{y}-{a}-{b}..{z}-{b}-{a}",
    "{d1}..{d2}",
    "{d1}..{d2}..{d1}",
]
years = st.one_of(
    st.integers(min_value=1965, max_value=2105).map(str),
    st.sampled_from(["0000", "0001", "1969", "2101", "9999"]),
)
dates = st.dates(min_value=date(1960, 1, 1), max_value=date(2110, 12, 31))
small = st.integers(min_value=0, max_value=60).map(str)


@st.composite
def shaped(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(SHAPES)).format(
        y=draw(years),
        z=draw(years),
        a=draw(small),
        b=draw(small),
        n=draw(st.integers(min_value=-1, max_value=5000)),
        unit=draw(st.sampled_from(WORDS)),
        d1=draw(dates).isoformat(),
        d2=draw(dates).isoformat(),
    )


pieces = st.one_of(
    st.sampled_from(WORDS),
    st.integers(min_value=-10, max_value=100_000).map(str),
    years,
    dates.map(date.isoformat),
    shaped(),
)


@st.composite
def grammar_ish(draw: st.DrawFn) -> str:
    parts = draw(st.lists(pieces, min_size=1, max_size=4))
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + part
    return draw(st.sampled_from(["", " ", "\t"])) + text


@st.composite
def valid_texts(draw: st.DrawFn) -> str:
    """Texts the grammar must accept."""
    year = draw(st.integers(min_value=1971, max_value=2099))
    day = draw(st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 12, 31)))
    other = draw(st.dates(min_value=day, max_value=date(2100, 12, 31)))
    week = draw(
        st.integers(min_value=1, max_value=53 if date(year, 12, 28).isocalendar()[1] == 53 else 52)
    )
    return draw(
        st.sampled_from(
            [
                *PERIOD_EXAMPLES,
                "cette-semaine",
                "trimestre-dernier",
                f"{year}",
                f"{year}-Q{draw(st.integers(1, 4))}",
                f"T{draw(st.integers(1, 4))}-{year}",
                f"{year}-{draw(st.integers(1, 12)):02d}",
                f"{year}-W{week:02d}",
                f"S{week}-{year}",
                day.isoformat(),
                f"{day.isoformat()}..{other.isoformat()}",
                f"last-{draw(st.integers(1, 3650))}-days",
                f"last-{draw(st.integers(1, 521))}-weeks",
                f"last-{draw(st.integers(1, 120))}-months",
                f"{draw(st.integers(1, 120))}-derniers-mois",
            ]
        )
    )


def check_parse_is_total(text: str, now: datetime, timezone: str, fiscal: FiscalCalendar) -> None:
    try:
        period = parse_period(text, now=now, timezone=timezone, fiscal=fiscal)
    except BadPeriod as error:
        assert error.text == text.strip()
        assert "Try:" in str(error)
    else:
        assert period.start <= period.end


@settings(max_examples=300)
@given(text=st.text(max_size=60), now=nows, timezone=zones, fiscal=fiscals)
def test_any_text_parses_or_raises_bad_period(
    text: str, now: datetime, timezone: str, fiscal: FiscalCalendar
) -> None:
    check_parse_is_total(text, now, timezone, fiscal)


@settings(max_examples=500)
@given(text=shaped(), now=nows, timezone=zones, fiscal=fiscals)
def test_near_valid_text_parses_or_raises_bad_period(
    text: str, now: datetime, timezone: str, fiscal: FiscalCalendar
) -> None:
    check_parse_is_total(text, now, timezone, fiscal)


@settings(max_examples=300)
@given(text=grammar_ish(), now=nows, timezone=zones, fiscal=fiscals)
def test_grammar_like_text_parses_or_raises_bad_period(
    text: str, now: datetime, timezone: str, fiscal: FiscalCalendar
) -> None:
    check_parse_is_total(text, now, timezone, fiscal)


@settings(max_examples=300)
@given(text=valid_texts(), now=nows, timezone=zones, fiscal=fiscals)
def test_valid_periods_chain_with_previous_and_last_year(
    text: str, now: datetime, timezone: str, fiscal: FiscalCalendar
) -> None:
    period = parse_period(text, now=now, timezone=timezone, fiscal=fiscal)
    previous = period.previous()
    assert (previous.grain, previous.to_date) == (period.grain, period.to_date)
    day_before = period.start - timedelta(days=1)
    if period.to_date:
        # The same span of the previous unit, clipped to it: it starts where that unit starts
        # (the previous start up to the day before this one is exactly one whole unit).
        Period(previous.start, day_before, timezone, period.grain, fiscal)
        # ... and ends on the same day of the month, or the last day of a shorter month.
        assert previous.end <= day_before
        month_length = calendar.monthrange(previous.end.year, previous.end.month)[1]
        assert previous.end.day == min(period.end.day, month_length)
    else:
        assert previous.end == day_before
    if period.grain in ("day", "week"):
        assert previous.days == period.days
    last_year = period.last_year()
    assert last_year.start <= last_year.end
    assert 364 <= (period.start - last_year.start).days <= 371
    assert period.start_utc() < period.end_utc()
