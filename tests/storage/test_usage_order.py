"""A usage day's users are the same whatever order its events arrive in (merges and full reports).

In event time order a full report (`merge: false`) replaces the day's users and a merge adds to
them; `storage.apply.UsageDayState` keeps what makes any arrival order give that result.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from storage.db import session_scope
from storage.tables import EventLog, UsageCoverage, UsageDay
from tests.builders import event, ingest

DAY = date(2026, 3, 2)


def _usage(n: int, users: list[str], *, hours: int, merge: bool, account: str = "acc-1") -> dict:
    sent = datetime.combine(DAY, time(0)) + timedelta(hours=hours)
    data = {"account_id": account, "day": DAY.isoformat(), "user_ids": users, "merge": merge}
    return event("usage.recorded", sent.isoformat(), data, event_id=f"usage-{n}")


def _users(session_factory) -> dict[str, set[str]]:
    with session_scope(session_factory) as session:
        rows = session.execute(select(UsageDay.account_id, UsageDay.user_ids))
        return {account_id: set(users) for account_id, users in rows}


def _in_event_order(reports: list[tuple[str, int, list[str], bool]]) -> dict[str, set[str]]:
    """What the day holds when the events are applied one by one in time order."""
    days: dict[str, set[str]] = {}
    for account, _hours, users, merge in sorted(reports, key=lambda r: r[1]):
        days[account] = (days.get(account, set()) | set(users)) if merge else set(users)
    return days


def test_a_backfilled_full_report_older_than_live_merges_keeps_its_users(session_factory):
    """Segment's track calls (merges) arrive first; a CSV import of the same day (a full report
    dated the start of the day) arrives after: in time order the report came first."""
    ingest(session_factory, [_usage(1, ["carol"], hours=14, merge=True)])
    ingest(session_factory, [_usage(2, ["alice", "bob"], hours=0, merge=False)])
    assert _users(session_factory) == {"acc-1": {"alice", "bob", "carol"}}


def test_a_merge_older_than_the_full_report_changes_nothing(session_factory):
    ingest(session_factory, [_usage(1, ["alice"], hours=20, merge=False)])
    ingest(session_factory, [_usage(2, ["bob"], hours=9, merge=True)])  # late: the report saw it
    assert _users(session_factory) == {"acc-1": {"alice"}}
    ingest(session_factory, [_usage(3, ["carol"], hours=21, merge=True)])
    ingest(session_factory, [_usage(4, ["dave"], hours=22, merge=False)])
    ingest(session_factory, [_usage(5, ["erin"], hours=23, merge=True)])
    ingest(session_factory, [_usage(6, ["frank"], hours=21, merge=False)])  # older: ignored
    assert _users(session_factory) == {"acc-1": {"dave", "erin"}}


def test_a_day_written_before_the_order_was_kept_counts_its_users_as_merged(session_factory):
    """Rows from before the migration have no report time nor merge times: their users count as
    merged at their latest event, so a late older merge still adds and a newer report replaces."""
    ingest(session_factory, [_usage(1, ["alice"], hours=12, merge=True)])
    with session_scope(session_factory) as session:
        session.execute(update(UsageDay).values(reported_at=None, merged_at={}))
    ingest(session_factory, [_usage(2, ["bob"], hours=3, merge=True)])
    assert _users(session_factory) == {"acc-1": {"alice", "bob"}}
    ingest(session_factory, [_usage(3, ["carol"], hours=13, merge=False)])
    assert _users(session_factory) == {"acc-1": {"carol"}}


_reports = st.lists(
    st.tuples(
        st.sampled_from(["acc-1", "acc-2"]),
        st.integers(0, 47),  # hours after the day's start: distinct, so time order is strict
        st.lists(st.sampled_from(["u1", "u2", "u3", "u4"]), max_size=3, unique=True),
        st.booleans(),  # merge
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda report: report[1],
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_reports, st.randoms(use_true_random=False), st.integers(1, 4))
def test_any_arrival_order_leaves_what_time_order_leaves(session_factory, reports, rng, batches):
    with session_scope(session_factory) as session:
        for table in (UsageCoverage, UsageDay, EventLog):
            session.execute(delete(table))
    events = [
        _usage(n, users, hours=hours, merge=merge, account=account)
        for n, (account, hours, users, merge) in enumerate(reports)
    ]
    rng.shuffle(events)
    size = max(1, len(events) // batches)
    for start in range(0, len(events), size):
        ingest(session_factory, events[start : start + size])

    assert _users(session_factory) == _in_event_order(reports)
