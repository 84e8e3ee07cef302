"""Engagement metrics (KPIS.md, Engagement and health), per group of the context's scope.

`repeat_purchase_rate` counts paying customers from paid invoices alone: an account is a paying
customer of the period when it has at least one paid invoice dated in it (its MRR is not consulted).
"""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlmodel import col

from metrics.context import TOTAL, MetricContext
from metrics.periods import Period
from metrics.result import InputValue, Value, ratio
from storage.tables import Invoice

Values = dict[str, Value]


# --- Repeat purchases ---------------------------------------------------------------------------


def repeat_purchase_rate(ctx: MetricContext, period: Period) -> Values:
    """Customers with 2+ paid invoices in the period ÷ customers with 1+ × 100."""
    key = ctx.scope.key_column().label("key")
    invoices_per_account = (
        select(key, col(Invoice.account_id), func.count().label("invoices"))
        .where(col(Invoice.day) >= period.start, col(Invoice.day) <= period.end)
        .group_by(key, col(Invoice.account_id))
    )
    per_account = ctx.scope.restrict(invoices_per_account, col(Invoice.account_id)).subquery()
    repeat = func.coalesce(func.sum(case((per_account.c.invoices >= 2, 1), else_=0)), 0)
    query = select(per_account.c.key, repeat, func.count()).group_by(per_account.c.key)
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
