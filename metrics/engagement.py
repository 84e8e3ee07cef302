"""Engagement metrics (KPIS.md, Engagement and health), per group of the context's scope.

`repeat_purchase_rate` counts paying customers from paid invoices alone: an account is a paying
customer of the period when it has at least one paid invoice dated in it (its MRR is not consulted).
"""

from __future__ import annotations

from sqlalchemy import case, func

from metrics import invoices
from metrics.context import TOTAL, MetricContext
from metrics.periods import Period
from metrics.result import InputValue, Value, ratio

Values = dict[str, Value]


# --- Repeat purchases ---------------------------------------------------------------------------


def repeat_purchase_rate(ctx: MetricContext, period: Period) -> Values:
    """Customers with 2+ paid invoices in the period ÷ customers with 1+ × 100."""
    query = invoices.per_group(
        ctx,
        period,
        lambda i: func.coalesce(func.sum(case((i.c.invoices >= 2, 1), else_=0)), 0),
        lambda i: func.count(),
        by_account=True,
    )
    counts = {group: (int(r), int(n)) for group, r, n in ctx.session.execute(query)}
    if ctx.scope.by is None:
        counts.setdefault(TOTAL, (0, 0))
    values = {}
    for group, (repeat_customers, paying_customers) in counts.items():
        inputs: dict[str, InputValue] = {
            "repeat_customers": repeat_customers,
            "paying_customers": paying_customers,
        }
        values[group] = (
            Value(ratio(repeat_customers, paying_customers), inputs)
            if paying_customers
            else Value.undefined("no paid invoices in the period", **inputs)
        )
    return values
