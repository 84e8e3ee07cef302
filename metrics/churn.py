"""Churn and retention metrics (KPIS.md, Churn and retention), per group of the context's scope."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import col

from metrics.activity import ZERO, Activity, activity
from metrics.context import TOTAL, MetricContext
from metrics.periods import Period
from metrics.result import Value, ratio
from storage.tables import Renewal

Values = dict[str, Value]
NO_CUSTOMERS = "no paying customers at the start of the period"
NO_MRR = "no MRR at the start of the period"


def _groups(ctx: MetricContext, period: Period) -> dict[str, Activity]:
    found = activity(ctx, period)
    if ctx.scope.by is None:
        found.setdefault(TOTAL, Activity())
    return found


def churn(ctx: MetricContext, period: Period) -> Values:
    """Customers lost ÷ customers at the start, under the configured convention."""
    convention = ctx.config.churn_convention
    values = {}
    for group, a in _groups(ctx, period).items():
        lost, base = a.churned, a.start.customers
        inputs: dict[str, Decimal | int | None] = {"churned": lost, "customers_start": base}
        if convention == "chartmogul":
            lost -= a.joined_and_churned
            inputs = {"churned": lost, "customers_start": base, "excluded": a.joined_and_churned}
        elif convention == "stripe":
            base += a.joined
            inputs = {
                "churned": lost,
                "customers_start": a.start.customers,
                "new_customers": a.joined,
            }
        values[group] = (
            Value(ratio(lost, base), inputs) if base else Value.undefined(NO_CUSTOMERS, **inputs)
        )
    return values


def _revenue_rate(ctx: MetricContext, period: Period, numerator: str) -> Values:
    values = {}
    for group, a in _groups(ctx, period).items():
        churned, contraction = a.amount("churn"), a.amount("contraction")
        expansion, reactivation = a.amount("expansion"), a.amount("reactivation")
        start = a.start.mrr
        amount = {
            "gross": churned + contraction,
            "net": churned + contraction - expansion - reactivation,
            "nrr": start + expansion - contraction - churned,
            "grr": start - contraction - churned,
        }[numerator]
        inputs: dict[str, Decimal | int | None] = {
            "mrr_start": start,
            "churned_mrr": churned,
            "contraction": contraction,
        }
        if numerator in ("net", "nrr"):
            inputs["expansion"] = expansion
        if numerator == "net":
            inputs["reactivation"] = reactivation
        values[group] = (
            Value(ratio(amount, start), inputs) if start else Value.undefined(NO_MRR, **inputs)
        )
    return values


def gross_revenue_churn(ctx: MetricContext, period: Period) -> Values:
    """(Churned + contraction MRR) ÷ MRR at the start."""
    return _revenue_rate(ctx, period, "gross")


def net_revenue_churn(ctx: MetricContext, period: Period) -> Values:
    """(Churned + contraction − expansion − reactivation MRR) ÷ MRR at the start."""
    return _revenue_rate(ctx, period, "net")


def nrr(ctx: MetricContext, period: Period) -> Values:
    """(MRR at the start + expansion − contraction − churned) ÷ MRR at the start."""
    return _revenue_rate(ctx, period, "nrr")


def grr(ctx: MetricContext, period: Period) -> Values:
    """(MRR at the start − contraction − churned) ÷ MRR at the start."""
    return _revenue_rate(ctx, period, "grr")


def retention(ctx: MetricContext, period: Period) -> Values:
    """(Customers at the end − new customers of the period) ÷ customers at the start."""
    values = {}
    for group, a in _groups(ctx, period).items():
        inputs: dict[str, Decimal | int | None] = {
            "customers_end": a.end.customers,
            "new_customers": a.joined,
            "customers_start": a.start.customers,
        }
        values[group] = (
            Value(ratio(a.end.customers - a.joined, a.start.customers), inputs)
            if a.start.customers
            else Value.undefined(NO_CUSTOMERS, **inputs)
        )
    return values


def _renewals(ctx: MetricContext, period: Period) -> dict[str, dict[str, Decimal]]:
    key = ctx.scope.key_column().label("key")
    query = select(
        key,
        col(Renewal.outcome),
        col(Renewal.amount_reporting),
        col(Renewal.renewed_amount_reporting),
    ).where(col(Renewal.due_on) >= period.start, col(Renewal.due_on) <= period.end)
    query = ctx.scope.restrict(query, col(Renewal.account_id))
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for group, outcome, amount, renewed_amount in ctx.session.execute(query):
        bucket = totals[group]
        bucket[outcome] += 1
        if outcome != "pending":
            bucket["amount_due"] += amount
        if outcome == "renewed":
            bucket["amount_renewed"] += renewed_amount or ZERO
    if ctx.scope.by is None:
        totals.setdefault(TOTAL, defaultdict(lambda: ZERO))
    return totals


def renewal_rate(ctx: MetricContext, period: Period) -> Values:
    """Contracts renewed ÷ contracts due in the period with a known outcome."""
    values = {}
    for group, t in _renewals(ctx, period).items():
        renewed, due = int(t["renewed"]), int(t["renewed"] + t["churned"])
        inputs: dict[str, Decimal | int | None] = {
            "renewed": renewed,
            "due": due,
            "pending": int(t["pending"]),
        }
        values[group] = (
            Value(ratio(renewed, due), inputs)
            if due
            else Value.undefined("no contract due in the period has a known outcome", **inputs)
        )
    return values


def revenue_renewal_rate(ctx: MetricContext, period: Period) -> Values:
    """Renewed amount ÷ amount due on the contracts due in the period with a known outcome."""
    values = {}
    for group, t in _renewals(ctx, period).items():
        inputs: dict[str, Decimal | int | None] = {
            "amount_renewed": t["amount_renewed"],
            "amount_due": t["amount_due"],
            "pending": int(t["pending"]),
        }
        values[group] = (
            Value(ratio(t["amount_renewed"], t["amount_due"]), inputs)
            if t["amount_due"]
            else Value.undefined("no contract due in the period has a known outcome", **inputs)
        )
    return values
