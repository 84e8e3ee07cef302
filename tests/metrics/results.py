"""A hand-made KPI result for the tests of what renders results (text answers, Block Kit)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from metrics.periods import FiscalCalendar, Period
from metrics.result import KpiResult, Value

Q3 = Period(date(2026, 7, 1), date(2026, 9, 30), "Europe/Paris", "quarter", FiscalCalendar())
AS_OF = datetime(2026, 11, 23, 13, 5, tzinfo=UTC)


def make_churn(**changes: Any) -> KpiResult:
    """A logo-churn answer for Q3 2026 (5 of 500 churned: 1 %) against Q2 (1.5 %)."""
    result = KpiResult(
        metric="churn",
        label="Logo churn",
        period=Q3,
        current=Value(Decimal("1.0000000000"), {"churned": 5, "customers_start": 500}),
        unit="percent",
        definition="Customers lost in the period ÷ customers at its start × 100.",
        currency="USD",
        previous_period=Q3.previous(),
        previous=Value(Decimal("1.5"), {"churned": 3, "customers_start": 200}),
        data_as_of=AS_OF,
        higher_is_better=False,
    )
    return replace(result, **changes)
