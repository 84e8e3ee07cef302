"""Revenue metrics (KPIS.md, Revenue): MRR, its movements, expansion rate, ARPA, ARPU, customers.

Each function takes a context and a period and returns a `Value` per group of the context's scope
(the single key `TOTAL` without a breakdown).
"""

from __future__ import annotations

from decimal import Decimal

from metrics import invoices
from metrics.activity import ZERO, Activity, Stock, activity, stocks_at
from metrics.context import TOTAL, MetricContext
from metrics.periods import Period
from metrics.result import InputValue, Value, ratio
from storage.types import round_money

Values = dict[str, Value]


def _groups(ctx: MetricContext, found: dict[str, Activity]) -> dict[str, Activity]:
    if ctx.scope.by is None:
        found.setdefault(TOTAL, Activity())
    return found


def mrr(ctx: MetricContext, period: Period) -> Values:
    """MRR at the end of the period, with customers and ARPA."""
    stocks = stocks_at(ctx, period.end)
    if ctx.scope.by is None:
        stocks.setdefault(TOTAL, Stock())
    values = {}
    for group, stock in stocks.items():
        arpa = round_money(stock.mrr / stock.customers) if stock.customers else None
        values[group] = Value(stock.mrr, {"customers": stock.customers, "arpa": arpa})
    return values


def customers(ctx: MetricContext, period: Period) -> Values:
    """Paying customers at the end of the period, with who joined and who left during it."""
    return {
        group: Value(
            Decimal(a.end.customers),
            {
                "customers_start": a.start.customers,
                "new_customers": a.accounts.get("new", 0),
                "reactivated": a.accounts.get("reactivation", 0),
                "churned": a.churned,
            },
        )
        for group, a in _groups(ctx, activity(ctx, period)).items()
    }


def net_new_mrr(ctx: MetricContext, period: Period) -> Values:
    """New + expansion + reactivation − contraction − churned MRR, with the bridge."""
    values = {}
    for group, a in _groups(ctx, activity(ctx, period)).items():
        bridge = {
            "new": a.amount("new"),
            "expansion": a.amount("expansion"),
            "reactivation": a.amount("reactivation"),
            "contraction": a.amount("contraction"),
            "churned_mrr": a.amount("churn"),
        }
        net = (
            bridge["new"]
            + bridge["expansion"]
            + bridge["reactivation"]
            - bridge["contraction"]
            - bridge["churned_mrr"]
        )
        values[group] = Value(net, {**bridge, "mrr_start": a.start.mrr, "mrr_end": a.end.mrr})
    return values


def _movement(kind: str, ctx: MetricContext, period: Period) -> Values:
    return {
        group: Value(a.amount(kind), {"accounts": a.accounts.get(kind, 0)})
        for group, a in _groups(ctx, activity(ctx, period)).items()
    }


def new_mrr(ctx: MetricContext, period: Period) -> Values:
    """MRR from accounts paying for the first time."""
    return _movement("new", ctx, period)


def expansion_mrr(ctx: MetricContext, period: Period) -> Values:
    """MRR added by paying accounts."""
    return _movement("expansion", ctx, period)


def contraction_mrr(ctx: MetricContext, period: Period) -> Values:
    """MRR lost by accounts that still pay."""
    return _movement("contraction", ctx, period)


def churned_mrr(ctx: MetricContext, period: Period) -> Values:
    """MRR lost by accounts that stopped paying."""
    return _movement("churn", ctx, period)


def reactivation_mrr(ctx: MetricContext, period: Period) -> Values:
    """MRR from accounts that paid before, stopped, and pay again."""
    return _movement("reactivation", ctx, period)


def expansion_rate(ctx: MetricContext, period: Period) -> Values:
    """Growth of expansion MRR against the previous period, in %."""
    current = _groups(ctx, activity(ctx, period))
    before = activity(ctx, period.previous())
    values = {}
    for group, a in current.items():
        now = a.amount("expansion")
        then = before[group].amount("expansion") if group in before else ZERO
        inputs: dict[str, InputValue] = {"expansion": now, "expansion_previous": then}
        values[group] = (
            Value(ratio(now - then, then), inputs)
            if then
            else Value.undefined("no expansion MRR in the previous period", **inputs)
        )
    return values


def arpa(ctx: MetricContext, period: Period) -> Values:
    """MRR at the end ÷ customers at the end."""
    stocks = stocks_at(ctx, period.end)
    if ctx.scope.by is None:
        stocks.setdefault(TOTAL, Stock())
    values = {}
    for group, stock in stocks.items():
        inputs: dict[str, InputValue] = {"mrr_end": stock.mrr, "customers_end": stock.customers}
        values[group] = (
            Value(round_money(stock.mrr / stock.customers), inputs)
            if stock.customers
            else Value.undefined("no paying customers at the end of the period", **inputs)
        )
    return values


def arpu(ctx: MetricContext, period: Period) -> Values:
    """Paid invoices in the period ÷ accounts that were customers at any time in it."""
    paid = {group: total for group, (total, _count) in invoices.paid(ctx, period).items()}
    values = {}
    for group, a in _groups(ctx, activity(ctx, period)).items():
        invoiced = paid.get(group, ZERO)
        inputs: dict[str, InputValue] = {
            "invoices_paid": invoiced,
            "customers_any": a.customers_any,
        }
        values[group] = (
            Value(round_money(invoiced / a.customers_any), inputs)
            if a.customers_any
            else Value.undefined("no customers in the period", **inputs)
        )
    return values
