"""Account health (KPIS.md, Engagement and health): signals, rescaled weights, bands, the metric."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from metrics.context import HealthWeights, MetricConfig
from metrics.health import AccountHealth, Signal, account_health, band
from tests.builders import cancel, change, event, ingest, kpi, make_response, paying_accounts

END = date(2026, 10, 31)  # the end of "2026-10"; 90 days before: 2026-08-02
OCTOBER_WINDOW = [END - timedelta(days=n) for n in range(30)]


def usage(account_id: str, users: int, per_day: int) -> list[dict[str, Any]]:
    """`per_day` of `users` users active on each of the 30 days ending on END, taking turns."""
    names = [f"{account_id}-u{n}" for n in range(users)]
    return [
        event(
            "usage.recorded",
            day.isoformat(),
            {
                "account_id": account_id,
                "day": day.isoformat(),
                "user_ids": [names[(k * per_day + i) % users] for i in range(per_day)],
            },
        )
        for k, day in enumerate(OCTOBER_WINDOW)
    ]


def nps(account_id: str, when: str, score: int) -> dict[str, Any]:
    """An NPS answer (0–10) of the account."""
    return make_response(when, score=score, account_id=account_id)


def csat(account_id: str, when: str, score: int) -> dict[str, Any]:
    """A CSAT answer (1–5) of the account."""
    return make_response(when, score=score, kind="csat", account_id=account_id)


def customer(account_id: str, *, trend: str = "flat", plan: str | None = None) -> list[Any]:
    """A customer since January whose MRR grew, stayed or shrank over the last 90 days."""
    assert account_id.endswith("-1"), "paying_accounts names its first account <prefix>-1"
    extra = {"plan": plan} if plan else {}
    prefix = account_id.removesuffix("-1")
    events = paying_accounts(1, amount="100.00", since="2026-01-05", prefix=prefix, **extra)
    if trend == "growing":
        events.append(change(account_id, "2026-08-03", amount="150.00"))  # first day of the 90
    elif trend == "shrinking":
        events.append(change(account_id, "2026-10-31", amount="80.00"))
    else:
        events.append(change(account_id, "2026-08-02", amount="120.00"))  # before: still flat
    return events


def health_of(factory: Any, *account_ids: str, **weights: Decimal) -> dict[str, AccountHealth]:
    """`account_health` at END, as a caller with its own session gets it."""
    from storage.db import session_scope

    config = MetricConfig(health_weights=HealthWeights(**weights))
    with session_scope(factory) as session:
        return account_health(session, config, account_ids, END)


def four_signals() -> list[Any]:
    """a-1: usage 30 % → 60, latest NPS 8 → 80, MRR growing → 100, CSAT 2 of 4 positive → 50."""
    return [
        *customer("a-1", trend="growing"),
        *usage("a-1", users=10, per_day=3),
        nps("a-1", "2026-09-01", 3),
        nps("a-1", "2026-10-20", 8),
        nps("a-1", "2026-11-05", 0),  # after the end
        csat("a-1", "2026-08-02", 1),  # 91 days before the end: out
        csat("a-1", "2026-08-03", 5),
        csat("a-1", "2026-09-10", 4),
        csat("a-1", "2026-10-05", 2),
        csat("a-1", "2026-10-31", 1),
        csat("a-1", "2026-11-02", 5),  # after the end
    ]


def test_all_four_signals_give_the_weighted_sum(session_factory):
    assert ingest(session_factory, four_signals()).rejected == 0
    found = health_of(session_factory, "a-1")["a-1"]
    assert found.signals == {
        "usage": Signal(Decimal(60), Decimal("0.35")),
        "nps": Signal(Decimal(80), Decimal("0.25")),
        "mrr_trend": Signal(Decimal(100), Decimal("0.25")),
        "csat": Signal(Decimal(50), Decimal("0.15")),
    }
    # 0.35 × 60 + 0.25 × 80 + 0.25 × 100 + 0.15 × 50 = 21 + 20 + 25 + 7.5
    assert found.score == Decimal("73.5")
    assert found.band == "green"
    result = kpi(session_factory, "health", "2026-10")
    assert result.value == Decimal("73.5")
    assert result.current.inputs == {"green": 1, "yellow": 0, "red": 0, "scored": 1}


def test_missing_signals_are_left_out_and_the_weights_rescaled(session_factory):
    events = [*customer("b-1"), nps("b-1", "2026-03-01", 9), nps("b-1", "2026-06-01", 4)]
    events += [*customer("c-1"), *usage("c-1", users=5, per_day=3)]  # 60 %: capped at 100
    events += paying_accounts(1, amount="10.00", since="2026-01-05", prefix="old")
    events += [
        cancel("old-1", "2026-03-01", amount="10.00"),
        make_response("2026-10-01", score=4, account_id="old-1", scale_min=0, scale_max=5),
    ]
    ingest(session_factory, events)
    found = health_of(session_factory, "b-1", "c-1", "old-1", "nobody")
    assert found["b-1"].signals == {
        "nps": Signal(Decimal(40), Decimal("0.5")),
        "mrr_trend": Signal(Decimal(70), Decimal("0.5")),
    }
    assert found["b-1"].score == Decimal(55)  # 0.5 × 40 + 0.5 × 70
    assert found["b-1"].band == "yellow"
    assert found["c-1"].signals["usage"].score == Decimal(100)
    assert found["c-1"].score == Decimal("87.5")  # (0.35 × 100 + 0.25 × 70) ÷ 0.6
    # No MRR on either day: no trend to read, rather than "flat"; NPS 4 on 0–5 reads 80.
    assert found["old-1"].signals == {"nps": Signal(Decimal(80), Decimal(1))}
    assert found["nobody"] == AccountHealth(None, None, {})


@pytest.mark.parametrize(
    ("score", "expected"),
    [("100", "green"), ("70", "green"), ("69.9", "yellow"), ("40", "yellow"), ("39.9", "red")],
)
def test_bands_at_70_and_40(score, expected):
    assert band(Decimal(score)) == expected


def banded_customers() -> list[Any]:
    """Four customers scored 70, 65, 40 and 35 from their MRR trend and latest NPS alone."""
    return [
        *customer("g-1", plan="scale"),
        nps("g-1", "2026-10-01", 7),  # (70 + 70) ÷ 2 = 70: green
        *customer("y-1", trend="growing", plan="scale"),
        nps("y-1", "2026-10-01", 3),  # (30 + 100) ÷ 2 = 65: yellow
        *customer("z-1", trend="shrinking", plan="starter"),
        nps("z-1", "2026-10-01", 5),  # (50 + 30) ÷ 2 = 40: yellow
        *customer("r-1", plan="starter"),
        nps("r-1", "2026-10-01", 0),  # (0 + 70) ÷ 2 = 35: red
    ]


def test_scores_at_the_band_thresholds(session_factory):
    ingest(session_factory, banded_customers())
    found = health_of(session_factory, "g-1", "y-1", "z-1", "r-1")
    assert {a: (h.score, h.band) for a, h in found.items()} == {
        "g-1": (Decimal(70), "green"),
        "y-1": (Decimal(65), "yellow"),
        "z-1": (Decimal(40), "yellow"),
        "r-1": (Decimal(35), "red"),
    }


def test_metric_is_the_mean_over_customers_at_the_end_with_band_counts(session_factory):
    events = banded_customers()
    events += paying_accounts(1, amount="10.00", since="2026-01-05", prefix="gone")
    events += [cancel("gone-1", "2026-10-15", amount="10.00"), nps("gone-1", "2026-10-01", 10)]
    ingest(session_factory, events)
    result = kpi(session_factory, "health", "2026-10")
    assert result.current.inputs == {"green": 1, "yellow": 2, "red": 1, "scored": 4}
    assert result.value == Decimal("52.5")  # (70 + 65 + 40 + 35) ÷ 4; gone-1 churned
    september = result.previous
    assert september is not None and september.inputs["scored"] == 5  # gone-1 still paid
    by_plan = kpi(session_factory, "health", "2026-10", by="plan")
    parts = {part.key: part.value for part in by_plan.breakdown}
    assert parts["scale"].value == Decimal("67.5")
    assert parts["scale"].inputs == {"green": 1, "yellow": 1, "red": 0, "scored": 2}
    assert parts["starter"].value == Decimal("37.5")
    assert parts["starter"].inputs == {"green": 0, "yellow": 1, "red": 1, "scored": 2}
    starter = kpi(session_factory, "health", "2026-10", filters=[("plan", "starter")])
    assert starter.value == Decimal("37.5")


def test_weights_come_from_the_configuration(session_factory):
    ingest(session_factory, [*four_signals(), *customer("b-1")])  # b-1: an MRR trend only
    halves = HealthWeights(
        usage=Decimal("0.5"), nps=Decimal("0.5"), mrr_trend=Decimal(0), csat=Decimal(0)
    )
    result = kpi(session_factory, "health", "2026-10", health_weights=halves)
    assert result.value == Decimal(70)  # 0.5 × 60 + 0.5 × 80; b-1 has no weighed signal
    assert result.current.inputs == {"green": 1, "yellow": 0, "red": 0, "scored": 1}
    csat_only = HealthWeights(
        usage=Decimal(0), nps=Decimal(0), mrr_trend=Decimal(0), csat=Decimal(2)
    )
    assert kpi(session_factory, "health", "2026-10", health_weights=csat_only).value == Decimal(50)


def test_undefined_without_customers_or_without_signals(session_factory):
    result = kpi(session_factory, "health", "2026-10")
    assert result.value is None
    assert result.current.reason == "no paying customers at the end of the period"
    ingest(session_factory, customer("b-1"))  # MRR trend only
    usage_only = HealthWeights(
        usage=Decimal(1), nps=Decimal(0), mrr_trend=Decimal(0), csat=Decimal(0)
    )
    result = kpi(session_factory, "health", "2026-10", health_weights=usage_only)
    assert result.value is None
    assert result.current.reason == "no customer has a health signal"
    assert result.current.inputs == {"green": 0, "yellow": 0, "red": 0, "scored": 0}
