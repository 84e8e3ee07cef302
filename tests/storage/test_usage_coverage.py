"""The usage coverage spans count exactly the distinct users of any 30-day window."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.apply import coverage_spans
from storage.db import session_scope
from storage.tables import UsageCoverage
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
