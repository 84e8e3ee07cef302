"""KPIS.md's revenue and churn examples, built from events and answered as `/kpi` answers them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.builders import (
    cancel,
    change,
    ingest,
    kpi,
    make_account,
    make_invoice,
    make_subscription,
    paying_accounts,
)


def test_seed_mrr_of_6500_accounts_at_25(session_factory):
    assert (
        ingest(session_factory, paying_accounts(6500, amount="25.00", since="2026-01-05")).rejected
        == 0
    )
    result = kpi(session_factory, "mrr", "2026-10")
    assert result.value == Decimal("162500.00")
    assert result.current.inputs["customers"] == 6500
    assert kpi(session_factory, "arpa", "2026-10").value == Decimal("25.00")
    assert kpi(session_factory, "revenu-recurrent", "today").value == Decimal("162500.00")


def test_arpa_of_accounts_at_100_100_300_500_500(session_factory):
    events = []
    for n, amount in enumerate(["100.00", "100.00", "300.00", "500.00", "500.00"]):
        events += paying_accounts(1, amount=amount, since="2026-02-01", prefix=f"a{n}")
    ingest(session_factory, events)
    result = kpi(session_factory, "arpa", "2026-10")
    assert result.value == Decimal("300.00")
    assert result.current.inputs == {"mrr_end": Decimal("1500.00"), "customers_end": 5}


def test_seed_expansion_rate_39_29(session_factory):
    events = paying_accounts(1, amount="1000.00", since="2026-09-01", prefix="a")
    events += paying_accounts(1, amount="500.00", since="2026-09-01", prefix="b")
    events += [
        change("a-1", "2026-10-10", amount="15000.00"),
        change("b-1", "2026-11-10", amount="20000.00"),
    ]
    ingest(session_factory, events)
    result = kpi(session_factory, "expansion-rate", "2026-11")
    assert result.current.inputs == {
        "expansion": Decimal("19500.00"),
        "expansion_previous": Decimal("14000.00"),
    }
    assert round(result.value, 2) == Decimal("39.29")


def test_lifecycle_movements_answered_per_month(session_factory):
    gold = {"subscription_id": "gold", "amount": "500.00", "interval": "year"}
    ingest(
        session_factory,
        [
            make_subscription("2026-01-10", quantity=4, **gold),
            make_subscription("2026-02-10", subscription_id="silver", amount="30.00", quantity=2),
            make_subscription(
                "2026-03-10",
                subscription_id="silver",
                amount="30.00",
                quantity=2,
                status="canceled",
            ),
            make_subscription("2026-04-10", quantity=4, status="canceled", **gold),
            make_subscription("2026-09-10", subscription_id="gold-m", amount="50.00", quantity=3),
        ],
    )
    assert kpi(session_factory, "new-mrr", "2026-01").value == Decimal("166.67")
    assert kpi(session_factory, "expansion-mrr", "2026-02").value == Decimal("60.00")
    assert kpi(session_factory, "contraction-mrr", "2026-03").value == Decimal("60.00")
    assert kpi(session_factory, "churned-mrr", "2026-04").value == Decimal("166.67")
    assert kpi(session_factory, "reactivation-mrr", "2026-09").value == Decimal("150.00")
    year = kpi(session_factory, "net-new-mrr", "2026")
    assert year.value == Decimal("150.00")
    assert year.current.inputs["new"] == Decimal("166.67")


def test_seed_arpu_30000_over_100_customers(session_factory):
    events = paying_accounts(100, amount="300.00", since="2026-09-01")
    events += [
        make_invoice("2026-10-02", account_id=f"acc-{n}", amount="300.00") for n in range(1, 101)
    ]
    ingest(session_factory, events)
    result = kpi(session_factory, "arpu", "2026-10")
    assert result.current.inputs == {"invoices_paid": Decimal("30000.00"), "customers_any": 100}
    assert result.value == Decimal("300.00")


def test_seed_churn_5_of_500_is_1_percent(session_factory):
    events = paying_accounts(500, amount="10.00", since="2026-09-01")
    events += [cancel(f"acc-{n}", "2026-10-15", amount="10.00") for n in range(1, 6)]
    ingest(session_factory, events)
    result = kpi(session_factory, "churn", "2026-10")
    assert result.value == Decimal(1)
    assert result.current.inputs == {"churned": 5, "customers_start": 500}
    assert result.previous is not None and result.previous.value is None  # no customers before
    assert "no paying customers" in (result.previous.reason or "")


@pytest.mark.parametrize(
    ("convention", "expected"), [("seed", 11), ("chartmogul", 10), ("stripe", 10)]
)
def test_churn_conventions_on_the_same_data(session_factory, convention, expected):
    events = paying_accounts(100, amount="10.00", since="2026-09-01", prefix="old")
    events += paying_accounts(10, amount="10.00", since="2026-10-05", prefix="new")
    events += [cancel(f"old-{n}", "2026-10-20", amount="10.00") for n in range(1, 11)]
    events += [cancel("new-1", "2026-10-25", amount="10.00")]
    ingest(session_factory, events)
    result = kpi(session_factory, "churn", "2026-10", churn_convention=convention)
    assert result.value == Decimal(expected)
    assert convention in result.definition


def test_revenue_churn_set_20_10_90_80(session_factory):
    events = []
    for name, amount in [("a", "10.00"), ("b", "20.00"), ("c", "30.00"), ("d", "40.00")]:
        events += paying_accounts(1, amount=amount, since="2026-09-01", prefix=name)
    events += [
        cancel("a-1", "2026-10-03", amount="10.00"),
        change("b-1", "2026-10-04", amount="10.00"),
        change("c-1", "2026-10-05", amount="40.00"),
    ]
    ingest(session_factory, events)
    expected = {"gross-revenue-churn": 20, "net-revenue-churn": 10, "nrr": 90, "grr": 80}
    for metric, value in expected.items():
        assert kpi(session_factory, metric, "2026-10").value == Decimal(value), metric


def test_seed_gross_revenue_churn_14_12(session_factory):
    events = paying_accounts(1, amount="10000.00", since="2026-09-01", prefix="a")
    events += paying_accounts(1, amount="1400.00", since="2026-09-01", prefix="b")
    events += paying_accounts(1, amount="5600.00", since="2026-09-01", prefix="c")
    events += [
        change("a-1", "2026-10-08", amount="9000.00"),
        cancel("b-1", "2026-10-09", amount="1400.00"),
    ]
    ingest(session_factory, events)
    result = kpi(session_factory, "revenue-churn", "2026-10")
    assert result.current.inputs["mrr_start"] == Decimal("17000.00")
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("14600.00")
    assert round(result.value, 2) == Decimal("14.12")


def test_retention_200_start_20_new_210_end_is_95(session_factory):
    events = paying_accounts(200, amount="10.00", since="2026-09-01", prefix="old")
    events += paying_accounts(20, amount="10.00", since="2026-10-10", prefix="new")
    events += [cancel(f"old-{n}", "2026-10-20", amount="10.00") for n in range(1, 11)]
    ingest(session_factory, events)
    result = kpi(session_factory, "retention", "2026-10")
    assert result.current.inputs == {
        "customers_end": 210,
        "new_customers": 20,
        "customers_start": 200,
    }
    assert result.value == Decimal(95)


def test_seed_renewals_66_67_and_106_67(session_factory):
    def renewal(contract, outcome, renewed=None):
        data = {
            "contract_id": contract,
            "account_id": "acc-1",
            "due_on": "2026-10-15",
            "amount": "1000.00",
            "outcome": outcome,
        }
        if renewed:
            data["renewed_amount"] = renewed
        return {
            "id": f"r-{contract}",
            "type": "renewal.updated",
            "occurred_at": "2026-10-16T10:00:00Z",
            "data": data,
        }

    ingest(
        session_factory,
        [
            make_account(),
            renewal("c1", "churned"),
            renewal("c2", "renewed", "1600.00"),
            renewal("c3", "renewed", "1600.00"),
        ],
    )
    rate = kpi(session_factory, "renewal-rate", "2026-10")
    assert round(rate.value, 2) == Decimal("66.67")
    assert rate.current.inputs == {"renewed": 2, "due": 3, "pending": 0}
    assert round(kpi(session_factory, "revenue-renewal-rate", "2026-10").value, 2) == Decimal(
        "106.67"
    )


def test_churn_by_plan_recomputes_each_part_and_counts_add_up(session_factory):
    events = paying_accounts(100, amount="10.00", since="2026-09-01", prefix="s", plan="starter")
    events += paying_accounts(50, amount="90.00", since="2026-09-01", prefix="p", plan="scale")
    events += [cancel(f"s-{n}", "2026-10-20", amount="10.00") for n in range(1, 5)]
    events += [cancel(f"p-{n}", "2026-10-20", amount="90.00") for n in range(1, 6)]
    ingest(session_factory, events)
    result = kpi(session_factory, "churn", "2026-10", by="plan")
    parts = {part.key: part.value for part in result.breakdown}
    assert parts["starter"].value == Decimal(4)
    assert parts["scale"].value == Decimal(10)
    assert (
        sum(p.inputs["customers_start"] for p in parts.values())
        == result.current.inputs["customers_start"]
        == 150
    )
    assert result.value == Decimal(6)  # 9 of 150, not the mean of 4 % and 10 %
    scale_only = kpi(session_factory, "churn", "2026-10", filters=[("plan", "Scale")])
    assert scale_only.value == Decimal(10)
