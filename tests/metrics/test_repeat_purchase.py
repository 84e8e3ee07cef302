"""KPIS.md's repeat-purchase example, built from paid invoices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.builders import ingest, kpi, make_invoice, paying_accounts


def invoices(account_id: str, count: int, when: str = "2026-10-05") -> list[dict[str, Any]]:
    """`count` paid invoices of $50 for `account_id`, all on `when`."""
    return [make_invoice(when, account_id=account_id, amount="50.00") for _ in range(count)]


def test_repeat_purchase_rate_25_percent_of_100_customers(session_factory):
    events = paying_accounts(110, amount="50.00", since="2026-09-01")
    for n in range(1, 101):
        events += invoices(f"acc-{n}", 3 if n <= 5 else 2 if n <= 25 else 1)
    # A second invoice outside October does not make a repeat purchase of the period.
    events += invoices("acc-26", 1, when="2026-09-30") + invoices("acc-27", 1, when="2026-11-01")
    events += invoices("acc-101", 2, when="2026-09-15")  # bought twice, but not in October
    assert ingest(session_factory, events).rejected == 0
    result = kpi(session_factory, "repeat-purchase-rate", "2026-10")
    assert result.current.inputs == {"repeat_customers": 25, "paying_customers": 100}
    assert result.value == Decimal(25)
    september = result.previous
    assert september is not None and september.value == Decimal(50)  # acc-101 twice, acc-26 once


def test_repeat_purchase_rate_by_plan_and_filtered(session_factory):
    events = paying_accounts(4, amount="50.00", since="2026-09-01", prefix="s", plan="starter")
    events += paying_accounts(2, amount="90.00", since="2026-09-01", prefix="p", plan="scale")
    events += invoices("s-1", 2) + invoices("s-2", 1) + invoices("s-3", 1) + invoices("s-4", 1)
    events += invoices("p-1", 2) + invoices("p-2", 2)
    events += invoices("stranger", 1)  # no account.upserted: lands in "(none)"
    ingest(session_factory, events)
    result = kpi(session_factory, "achat-repete", "2026-10", by="plan")
    parts = {part.key: part.value.value for part in result.breakdown}
    assert parts == {"starter": Decimal(25), "scale": Decimal(100), "(none)": Decimal(0)}
    assert result.current.inputs == {"repeat_customers": 3, "paying_customers": 7}
    scale = kpi(session_factory, "repeat-purchase", "2026-10", filters=[("plan", "scale")])
    assert scale.current.inputs == {"repeat_customers": 2, "paying_customers": 2}


def test_repeat_purchase_rate_without_paid_invoices_is_undefined(session_factory):
    ingest(session_factory, paying_accounts(3, amount="50.00", since="2026-09-01"))
    result = kpi(session_factory, "repeat-purchase-rate", "2026-10")
    assert result.value is None
    assert result.current.reason == "no paid invoices in the period"
    assert result.current.inputs == {"repeat_customers": 0, "paying_customers": 0}
