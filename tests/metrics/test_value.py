"""KPIS.md's value and cost examples (retention cost, CLV, net CLV, CLV from ARPA), from events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.builders import cancel, event, ingest, kpi, make_invoice, paying_accounts

THREE_YEARS = Decimal(3)


def cost(amount: str, start: str, end: str, *, cost_id: str = "cs-team") -> dict[str, Any]:
    """A cost.recorded event: `amount` USD of customer-success cost spread over [start, end]."""
    return event(
        "cost.recorded",
        start,
        {
            "cost_id": cost_id,
            "period_start": start,
            "period_end": end,
            "amount": amount,
            "currency": "USD",
            "category": "cs-salaries",
        },
    )


def twice_a_year(account_id: str, amount: str = "1000.00") -> list[dict[str, Any]]:
    """Two paid invoices inside the 12 months ending 31 Oct 2026."""
    return [
        make_invoice("2025-12-01", account_id=account_id, amount=amount),
        make_invoice("2026-06-01", account_id=account_id, amount=amount),
    ]


# --- retention-cost -----------------------------------------------------------------------------


def test_seed_retention_cost_50000_over_a_year_and_100_customers_is_500(session_factory):
    events = paying_accounts(100, amount="10.00", since="2024-12-01")
    events.append(cost("50000.00", "2025-01-01", "2025-12-31"))
    assert ingest(session_factory, events).rejected == 0
    result = kpi(session_factory, "retention-cost", "2025")
    assert result.current.inputs == {"costs": Decimal("50000.00"), "customers_any": 100}
    assert result.value == Decimal("500.00")


def test_retention_cost_prorates_each_cost_by_the_days_it_overlaps(session_factory):
    events = paying_accounts(100, amount="10.00", since="2024-12-01")
    events += [
        cost("50000.00", "2025-01-01", "2025-12-31", cost_id="year"),  # 31 of 365 days
        cost("2000.00", "2025-10-20", "2025-11-08", cost_id="event"),  # 12 of 20 days
        cost("9999.00", "2025-11-01", "2025-11-30", cost_id="november"),
    ]
    ingest(session_factory, events)
    result = kpi(session_factory, "retention-cost", "2025-10")
    # 50,000 × 31 ÷ 365 + 2,000 × 12 ÷ 20 = 4,246.5753… + 1,200, rounded once at the end
    assert result.current.inputs == {"costs": Decimal("5446.58"), "customers_any": 100}
    assert result.value == Decimal("54.47")


def test_retention_cost_counts_customers_at_any_time_in_the_period(session_factory):
    events = paying_accounts(90, amount="10.00", since="2025-09-01", prefix="old")
    events += paying_accounts(30, amount="10.00", since="2025-10-10", prefix="new")
    events += [cancel(f"old-{n}", "2025-10-20", amount="10.00") for n in range(1, 11)]
    events.append(cost("1200.00", "2025-10-01", "2025-10-31"))
    ingest(session_factory, events)
    result = kpi(session_factory, "cost-of-retention", "2025-10")
    assert result.current.inputs == {"costs": Decimal("1200.00"), "customers_any": 120}
    assert result.value == Decimal("10.00")


def test_retention_cost_allocates_costs_to_parts_by_customers(session_factory):
    events = paying_accounts(75, amount="10.00", since="2024-12-01", prefix="e", segment="ent")
    events += paying_accounts(25, amount="10.00", since="2024-12-01", prefix="s", segment="smb")
    events.append(cost("50000.00", "2025-01-01", "2025-12-31"))
    ingest(session_factory, events)
    result = kpi(session_factory, "retention-cost", "2025", by="segment")
    parts = {part.key: part.value for part in result.breakdown}
    assert parts["ent"].inputs == {"costs": Decimal("37500.00"), "customers_any": 75}
    assert parts["smb"].inputs == {"costs": Decimal("12500.00"), "customers_any": 25}
    assert {key: part.value for key, part in parts.items()} == {
        "ent": Decimal("500.00"),
        "smb": Decimal("500.00"),
    }
    smb = kpi(session_factory, "retention-cost", "2025", filters=[("segment", "smb")])
    assert smb.current.inputs == {"costs": Decimal("12500.00"), "customers_any": 25}
    assert smb.value == Decimal("500.00")


def test_retention_cost_without_customers_is_undefined(session_factory):
    ingest(session_factory, [cost("1000.00", "2025-01-01", "2025-12-31")])
    result = kpi(session_factory, "retention-cost", "2025")
    assert result.value is None
    assert result.current.reason == "no customers in the period"
    assert result.current.inputs == {"costs": Decimal("1000.00"), "customers_any": 0}


# --- clv and net-clv ----------------------------------------------------------------------------


def test_seed_clv_6000_with_a_configured_lifetime_of_3_years(session_factory):
    events = paying_accounts(1, amount="100.00", since="2025-06-01")
    events += [
        make_invoice("2025-10-31", account_id="acc-1", amount="5000.00"),  # before the window
        make_invoice("2025-11-01", account_id="acc-1", amount="1000.00"),  # its first day
        make_invoice("2026-10-31", account_id="acc-1", amount="1000.00"),  # its last day
        make_invoice("2026-11-01", account_id="acc-1", amount="5000.00"),  # after the period
    ]
    ingest(session_factory, events)
    result = kpi(session_factory, "clv", "2026-10", customer_lifetime_years=THREE_YEARS)
    assert result.current.inputs == {
        "average_purchase": Decimal("1000.00"),
        "purchases_per_year": Decimal(2),
        "lifetime_years": Decimal(3),
    }
    assert result.value == Decimal("6000.00")


def three_customers_one_churning() -> list[dict[str, Any]]:
    """3 customers a year before 31 Oct 2026, each paying $1,000 twice; 1 leaves: churn 1/3."""
    events = paying_accounts(3, amount="100.00", since="2025-06-01")
    for n in (1, 2, 3):
        events += twice_a_year(f"acc-{n}")
    events.append(cancel("acc-3", "2026-07-15", amount="100.00"))
    return events


def test_seed_clv_6000_with_lifetime_from_one_third_annual_churn(session_factory):
    ingest(session_factory, three_customers_one_churning())
    result = kpi(session_factory, "ltv", "2026-10")
    assert result.current.inputs == {
        "average_purchase": Decimal("1000.00"),
        "purchases_per_year": Decimal(2),
        "lifetime_years": Decimal(3),
    }
    assert result.value == Decimal("6000.00")


def test_clv_without_churn_or_configured_lifetime_is_undefined(session_factory):
    events = paying_accounts(1, amount="100.00", since="2025-06-01") + twice_a_year("acc-1")
    ingest(session_factory, events)
    result = kpi(session_factory, "clv", "2026-10")
    assert result.value is None
    assert "no logo churn" in (result.current.reason or "")
    assert "KPIBOT_CUSTOMER_LIFETIME_YEARS" in (result.current.reason or "")
    assert result.current.inputs["lifetime_years"] is None
    assert result.current.inputs["average_purchase"] == Decimal("1000.00")


def test_clv_without_paid_invoices_is_undefined(session_factory):
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2025-06-01"))
    result = kpi(session_factory, "clv", "2026-10", customer_lifetime_years=THREE_YEARS)
    assert result.value is None
    assert "no paid invoices" in (result.current.reason or "")


def test_clv_by_segment_uses_each_parts_own_churn(session_factory):
    events = paying_accounts(2, amount="100.00", since="2025-06-01", prefix="e", segment="ent")
    events += paying_accounts(6, amount="100.00", since="2025-06-01", prefix="s", segment="smb")
    for account_id in ["e-1", "e-2"] + [f"s-{n}" for n in range(1, 7)]:
        events += twice_a_year(account_id)
    events += [cancel(account_id, "2026-07-01", amount="100.00") for account_id in ("e-2", "s-1")]
    events += [cancel("s-2", "2026-08-01", amount="100.00")]
    ingest(session_factory, events)
    result = kpi(session_factory, "clv", "2026-10", by="segment")
    parts = {part.key: part.value for part in result.breakdown}
    assert parts["ent"].value == Decimal("4000.00")  # $2,000 a year × 2 years (1 of 2 churned)
    assert parts["ent"].inputs["lifetime_years"] == Decimal(2)
    assert parts["smb"].value == Decimal("6000.00")  # × 3 years (2 of 6 churned)
    assert result.value == Decimal("5333.33")  # × 8/3 years (3 of 8), not the parts' mean


@pytest.mark.parametrize("lifetime", [THREE_YEARS, None])
def test_seed_net_clv_4500_with_500_a_year_of_retention_cost(session_factory, lifetime):
    if lifetime is None:  # lifetime from churn: 3 customers, so $1,500 is $500 each
        events = three_customers_one_churning()
        events.append(cost("1500.00", "2025-11-01", "2026-10-31"))
    else:
        events = paying_accounts(1, amount="100.00", since="2025-06-01") + twice_a_year("acc-1")
        events.append(cost("500.00", "2025-11-01", "2026-10-31"))
    ingest(session_factory, events)
    result = kpi(session_factory, "net-clv", "2026-10", customer_lifetime_years=lifetime)
    assert result.current.inputs == {
        "clv": Decimal("6000.00"),
        "retention_cost_per_year": Decimal("500.00"),
        "lifetime_years": Decimal(3),
    }
    assert result.value == Decimal("4500.00")


def test_net_clv_is_undefined_when_clv_is(session_factory):
    events = paying_accounts(1, amount="100.00", since="2025-06-01") + twice_a_year("acc-1")
    events.append(cost("500.00", "2025-11-01", "2026-10-31"))
    ingest(session_factory, events)
    result = kpi(session_factory, "net-clv", "2026-10")
    assert result.value is None
    assert "no logo churn" in (result.current.reason or "")
    assert result.current.inputs["retention_cost_per_year"] == Decimal("500.00")


# --- clv-arpa -----------------------------------------------------------------------------------


def five_percent_monthly_churn() -> list[dict[str, Any]]:
    """20 customers at $100 at the start of each of Apr–Sep 2026: 1 leaves and 1 joins each month.

    A churn in March and one in October frame the window: counting either would move the mean.
    """
    events = paying_accounts(21, amount="100.00", since="2026-02-01", prefix="c")
    events.append(cancel("c-21", "2026-03-10", amount="100.00"))
    for n, month in enumerate(range(4, 10), start=1):
        events.append(cancel(f"c-{n}", f"2026-{month:02d}-10", amount="100.00"))
        events += paying_accounts(1, amount="100.00", since=f"2026-{month:02d}-15", prefix=f"n{n}")
    events.append(cancel("c-7", "2026-10-05", amount="100.00"))
    return events


def test_clv_arpa_2000_from_arpa_100_and_5_percent_monthly_churn(session_factory):
    ingest(session_factory, five_percent_monthly_churn())
    result = kpi(session_factory, "clv-arpa", "2026-10")
    assert result.current.inputs == {"arpa": Decimal("100.00"), "monthly_churn": Decimal(5)}
    assert result.value == Decimal("2000.00")
    mid_month = kpi(session_factory, "ltv-arpa", "2026-10-01..2026-10-15")
    assert mid_month.value == Decimal("2000.00")  # still Apr–Sep: October is not complete


def test_clv_arpa_averages_the_monthly_rates(session_factory):
    events = paying_accounts(20, amount="150.00", since="2026-03-01")
    events += [cancel("acc-1", "2026-05-10", amount="150.00")]  # 1 of 20 in May: 5 %
    events += [cancel(f"acc-{n}", "2026-08-10", amount="150.00") for n in (2, 3, 4, 5)]  # 4 of 19
    ingest(session_factory, events)
    result = kpi(session_factory, "clv-arpa", "2026-10")
    churn = (Decimal(1) / 20 + Decimal(4) / 19) / 6
    assert result.current.inputs["arpa"] == Decimal("150.00")
    assert result.current.inputs["monthly_churn"] == round(churn * 100, 10)
    assert result.value == round(Decimal(150) / churn, 2)


def test_clv_arpa_with_no_churn_is_undefined(session_factory):
    ingest(session_factory, paying_accounts(20, amount="100.00", since="2026-03-01"))
    result = kpi(session_factory, "clv-arpa", "2026-10")
    assert result.value is None
    assert "no logo churn" in (result.current.reason or "")
    assert result.current.inputs == {"arpa": Decimal("100.00"), "monthly_churn": Decimal(0)}


def test_clv_arpa_without_customers_is_undefined(session_factory):
    ingest(session_factory, [make_invoice("2026-10-02", amount="100.00")])
    result = kpi(session_factory, "clv-arpa", "2026-10")
    assert result.value is None
    assert result.current.inputs == {"arpa": None, "monthly_churn": None}
