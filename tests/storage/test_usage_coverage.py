"""The usage coverage spans count exactly the distinct users of any 30-day window."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from storage.apply import coverage_spans, merge_spans
from storage.db import session_scope
from storage.tables import EventLog, UsageCoverage, UsageDay
from tests.builders import event, ingest

START = date(2026, 1, 1)


@given(st.lists(st.integers(0, 120), min_size=1, max_size=40, unique=True), st.integers(0, 160))
def test_spans_contain_a_day_exactly_when_the_user_was_active_in_its_window(offsets, end_offset):
    days = sorted(START + timedelta(days=o) for o in offsets)
    end = START + timedelta(days=end_offset)
    spans = coverage_spans(days)
    active_in_window = any(end - timedelta(days=29) <= day <= end for day in days)
    assert sum(first <= end <= last for first, last in spans) == int(active_in_window)
    assert all(a[1] + timedelta(days=1) < b[0] for a, b in pairwise(spans))


@given(st.lists(st.tuples(st.integers(0, 90), st.integers(0, 40)), max_size=30))
def test_merged_spans_cover_the_same_days_disjoint_and_apart(starts_and_lengths):
    spans = [
        (START + timedelta(days=s), START + timedelta(days=s + n)) for s, n in starts_and_lengths
    ]
    merged = merge_spans(spans)

    def days(of):
        return {
            first + timedelta(days=k) for first, last in of for k in range((last - first).days + 1)
        }

    assert days(merged) == days(spans)
    assert all(first <= last for first, last in merged)
    assert all(a[1] + timedelta(days=1) < b[0] for a, b in pairwise(merged))
    assert merge_spans(merged) == merged


@given(st.lists(st.integers(0, 120), max_size=40), st.integers(1, 40))
def test_coverage_spans_are_the_merged_windows_of_the_days(offsets, window):
    days = [START + timedelta(days=o) for o in offsets]
    windows = [(day, day + timedelta(days=window - 1)) for day in days]
    assert coverage_spans(days, window) == merge_spans(windows)


def test_ingested_usage_matches_a_brute_force_count(session_factory):
    activity = {  # day offset → users of acc-1
        0: ["u1", "u2"],
        3: ["u2"],
        40: ["u3"],
        41: ["u1"],
        90: ["u4", "u1"],
    }
    events = [
        event(
            "usage.recorded",
            (START + timedelta(days=o)).isoformat(),
            {
                "account_id": "acc-1",
                "day": (START + timedelta(days=o)).isoformat(),
                "user_ids": users,
            },
        )
        for o, users in activity.items()
    ]
    ingest(session_factory, list(reversed(events)))  # out of order on purpose
    for end_offset in (0, 29, 30, 33, 41, 70, 71, 119, 120):
        end = START + timedelta(days=end_offset)
        expected = len(
            {
                u
                for o, users in activity.items()
                for u in users
                if end_offset - 29 <= o <= end_offset
            }
        )
        with session_scope(session_factory) as session:
            counted = session.scalar(
                select(func.count())
                .select_from(UsageCoverage)
                .where(UsageCoverage.covered_from <= end, UsageCoverage.covered_to >= end)
            )
        assert counted == expected, end_offset


def _stored(session_factory):
    with session_scope(session_factory) as session:
        spans = {
            (a, u, f, t)
            for a, u, f, t in session.execute(
                select(
                    UsageCoverage.account_id,
                    UsageCoverage.user_id,
                    UsageCoverage.covered_from,
                    UsageCoverage.covered_to,
                )
            )
        }
        active: dict[tuple[str, str], list[date]] = {}
        for account_id, day, users in session.execute(
            select(UsageDay.account_id, UsageDay.day, UsageDay.user_ids)
        ):
            for user in users:
                active.setdefault((account_id, user), []).append(day)
    derived = {
        (a, u, f, t) for (a, u), days in active.items() for f, t in coverage_spans(sorted(days))
    }
    return spans, derived


_reports = st.lists(
    st.tuples(
        st.sampled_from(["acc-1", "acc-2"]),
        st.sampled_from([0, 1, 30, 31]),  # few days: the same day reported again, window edges
        st.lists(st.sampled_from(["u1", "u2", "u3"]), max_size=3, unique=True),
        st.booleans(),  # merge
        st.integers(0, 200),  # when it was sent (hours after the day)
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_reports, st.integers(1, 6))
def test_spans_kept_up_to_date_equal_spans_derived_from_scratch(session_factory, reports, batches):
    """Days gaining users extend spans in place; days losing users re-derive: same result."""
    with session_scope(session_factory) as session:
        session.execute(delete(UsageCoverage))
        session.execute(delete(UsageDay))
        session.execute(delete(EventLog))
    events = []
    for n, (account_id, offset, users, merge, hours) in enumerate(reports):
        day = START + timedelta(days=offset)
        sent = (datetime.combine(day, time(23)) + timedelta(hours=hours)).isoformat()
        data = {"account_id": account_id, "day": day.isoformat(), "user_ids": users, "merge": merge}
        events.append(event("usage.recorded", sent, data, event_id=f"usage-{n}"))
    size = max(1, len(events) // batches)
    for start in range(0, len(events), size):
        ingest(session_factory, events[start : start + size])
    spans, derived = _stored(session_factory)
    assert spans == derived
