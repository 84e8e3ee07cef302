"""KPIS.md's stickiness (DAU ÷ MAU over the 30 days ending with the period), from usage events."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from metrics import usage
from metrics.registry import find_metric
from tests.builders import event, ingest, kpi, make_account

OCTOBER_WINDOW = [date(2026, 10, 2) + timedelta(days=n) for n in range(30)]  # "2026-10" ends 10-31


def recorded(account_id: str, day: date, user_ids: list[str]) -> dict[str, Any]:
    """A usage.recorded event: these users of the account were active on `day`."""
    return event(
        "usage.recorded",
        day.isoformat(),
        {"account_id": account_id, "day": day.isoformat(), "user_ids": user_ids},
    )


def rotating(
    account_id: str, users: int, per_day: int, days: list[date], *, prefix: str = "u"
) -> list[dict[str, Any]]:
    """`per_day` of the account's `users` users active each day, taking turns so all appear."""
    names = [f"{prefix}{n}" for n in range(1, users + 1)]
    return [
        recorded(account_id, day, [names[(k * per_day + i) % users] for i in range(per_day)])
        for k, day in enumerate(days)
    ]


def test_the_registry_computes_stickiness_in_metrics_usage():
    found = find_metric("dau-mau")
    assert found is not None
    assert found.function() is usage.stickiness


def test_kpis_example_20_active_a_day_of_100_users_is_20_percent(session_factory):
    # 100 users over 4 accounts; each day 5 of each account's 25 are active: 20 a day in all.
    events = []
    for n in range(1, 5):
        events += rotating(f"acc-{n}", users=25, per_day=5, days=OCTOBER_WINDOW)
    assert ingest(session_factory, events).rejected == 0
    result = kpi(session_factory, "stickiness", "2026-10")
    assert result.value == Decimal(20)
    assert result.current.inputs == {"dau": Decimal("20.00"), "mau": 100}
    assert result.previous is not None and result.previous.value is None  # no usage in September
    assert result.previous.reason == "no active users from 2026-09-01 to 2026-09-30"


def test_days_outside_the_30_days_are_ignored(session_factory):
    events = rotating("acc-1", users=100, per_day=20, days=OCTOBER_WINDOW)
    others = [f"new-{n}" for n in range(50)]
    events += [
        recorded("acc-1", date(2026, 10, 1), others),  # the day before the window
        recorded("acc-1", date(2026, 11, 1), others),  # the day after the period
        recorded("acc-2", date(2026, 9, 20), others),
    ]
    ingest(session_factory, events)
    result = kpi(session_factory, "stickiness", "2026-10")
    assert result.current.inputs == {"dau": Decimal("20.00"), "mau": 100}
    assert result.value == Decimal(20)
    # A period ending on the same day has the same 30 days, whatever its length.
    assert kpi(session_factory, "stickiness", "2026-10-31").value == Decimal(20)


def test_days_without_usage_count_as_zero_active_users(session_factory):
    every_other_day = OCTOBER_WINDOW[::2]  # 15 days with 20 active users, 15 days with none
    ingest(session_factory, rotating("acc-1", users=100, per_day=20, days=every_other_day))
    result = kpi(session_factory, "stickiness", "2026-10")
    assert result.current.inputs == {"dau": Decimal("10.00"), "mau": 100}
    assert result.value == Decimal(10)


def test_mau_counts_account_and_user_pairs(session_factory):
    # The same user id in two accounts is two people: MAU 2, DAU 2 on every day.
    events = [recorded(account, day, ["u1"]) for account in ("a", "b") for day in OCTOBER_WINDOW]
    ingest(session_factory, events)
    result = kpi(session_factory, "stickiness", "2026-10")
    assert result.current.inputs == {"dau": Decimal("2.00"), "mau": 2}
    assert result.value == Decimal(100)


def test_breakdown_by_plan_recomputes_each_part(session_factory):
    events = [
        make_account("s-1", plan="starter"),
        make_account("p-1", plan="scale"),
        make_account("p-2", plan="scale"),
    ]
    events += rotating("s-1", users=10, per_day=5, days=OCTOBER_WINDOW)  # 5 ÷ 10: 50 %
    events += rotating("p-1", users=10, per_day=1, days=OCTOBER_WINDOW)  # with p-2: 2 ÷ 20: 10 %
    events += rotating("p-2", users=10, per_day=1, days=OCTOBER_WINDOW)
    events += rotating("x-1", users=4, per_day=1, days=OCTOBER_WINDOW[:4])  # no account record
    ingest(session_factory, events)
    result = kpi(session_factory, "stickiness", "2026-10", by="plan")
    parts = {part.key: part.value for part in result.breakdown}
    assert parts["starter"].value == Decimal(50)
    assert parts["starter"].inputs == {"dau": Decimal("5.00"), "mau": 10}
    assert parts["scale"].value == Decimal(10)
    assert parts["scale"].inputs == {"dau": Decimal("2.00"), "mau": 20}
    assert parts["(none)"].inputs == {"dau": Decimal("0.13"), "mau": 4}
    assert round(parts["(none)"].value, 2) == Decimal("3.33")  # 4 user-days ÷ 30 ÷ 4
    # The total is recomputed (214 user-days ÷ 30 over 34 users), not the mean of the parts.
    assert result.current.inputs == {"dau": Decimal("7.13"), "mau": 34}
    assert round(result.value, 2) == Decimal("20.98")
    scale = kpi(session_factory, "stickiness", "2026-10", filters=[("plan", "Scale")])
    assert scale.value == Decimal(10)
    assert scale.current.inputs == {"dau": Decimal("2.00"), "mau": 20}


def test_undefined_without_active_users(session_factory):
    ingest(session_factory, [make_account("acc-1"), recorded("acc-1", date(2026, 10, 10), [])])
    result = kpi(session_factory, "stickiness", "2026-10")
    assert result.value is None
    assert result.current.reason == "no active users from 2026-10-02 to 2026-10-31"
    assert result.current.inputs == {"dau": Decimal("0.00"), "mau": 0}


def test_account_stickiness_per_account(session_factory):
    from storage.db import session_scope

    events = rotating("a", users=10, per_day=3, days=OCTOBER_WINDOW)  # 30 %
    events += rotating("b", users=8, per_day=2, days=OCTOBER_WINDOW[-10:])  # 20 ÷ 30 ÷ 8
    events += rotating("c", users=5, per_day=5, days=[date(2026, 9, 1)])  # before the window
    ingest(session_factory, events)
    with session_scope(session_factory) as session:
        found = usage.account_stickiness(
            session, ["a", "b", "c", "nobody", "a"], date(2026, 10, 31)
        )
    assert list(found) == ["a", "b", "c", "nobody"]
    assert found["a"] == Decimal(30)
    assert found["b"] is not None and round(found["b"], 2) == Decimal("8.33")
    assert found["c"] is None
    assert found["nobody"] is None
