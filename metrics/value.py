"""Value and cost metrics (KPIS.md, Value and cost): retention cost, CLV, net CLV, ARPA ÷ churn CLV.

Conventions chosen here:

- Arithmetic is exact (fractions) until the end; money is then rounded half-up to cents, ratios to
  10 places.
- A CS cost spanning D days that overlaps a period by d days counts for amount × d ÷ D.
- CS costs are company-wide (they name no account). A breakdown or a `where` filter gets the share
  of them its customers make up: costs × its customers at any time ÷ the company's. The retention
  cost per customer is therefore the same in every part, and the parts' costs add up to the total.
- `clv` and `net-clv` look at the 12 months ending at the period's end, `[end − 12 months + 1 day,
  end]`. Annual logo churn there is churned accounts ÷ customers at the window's start (the `seed`
  convention, whatever `KPIBOT_CHURN_CONVENTION` says); lifetime = 1 ÷ that churn, unless
  `KPIBOT_CUSTOMER_LIFETIME_YEARS` is set.
- `clv-arpa` divides ARPA at the period's end by the mean monthly logo churn (churned ÷ customers
  at start, `seed` convention) of the 6 complete calendar months before the month containing the
  period's end: for a period ending in October 2026, April–September 2026. A month with no customers
  at its start has no rate and is left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from dateutil.relativedelta import relativedelta
from sqlalchemy import select
from sqlmodel import col

from metrics import invoices
from metrics.activity import Activity, Stock, activity, stocks_at
from metrics.context import TOTAL, MetricContext, Scope
from metrics.periods import Period
from metrics.result import InputValue, Value, ratio
from storage.tables import Cost

Values = dict[str, Value]
CHURN_MONTHS = 6
SET_LIFETIME = "set KPIBOT_CUSTOMER_LIFETIME_YEARS to give one"


def _money(amount: Fraction) -> Decimal:
    """Round an exact amount half-up (away from zero) to cents."""
    cents = int(abs(amount) * 100 + Fraction(1, 2))
    return Decimal(cents if amount >= 0 else -cents).scaleb(-2)


def _decimal(amount: Fraction, *, percent: bool = False) -> Decimal:
    return ratio(amount.numerator, amount.denominator, percent=percent)


def _days(ctx: MetricContext, start: date, end: date) -> Period:
    return Period(start, end, timezone=ctx.config.timezone, grain="days", fiscal=ctx.config.fiscal)


def _year_to(ctx: MetricContext, period: Period) -> Period:
    """The 12 months ending at the period's end: [end − 12 months + 1 day, end]."""
    return _days(ctx, period.end - relativedelta(months=12) + timedelta(days=1), period.end)


def _activity(ctx: MetricContext, period: Period) -> dict[str, Activity]:
    found = activity(ctx, period)
    if ctx.scope.by is None:
        found.setdefault(TOTAL, Activity())
    return found


# --- Retention cost -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Share:
    """A group's share of the CS costs of a period and its customers at any time in it."""

    costs: Fraction
    customers_any: int

    @property
    def per_customer(self) -> Fraction | None:
        return self.costs / self.customers_any if self.customers_any else None


def _costs(ctx: MetricContext, period: Period) -> Fraction:
    """CS costs of the period, each prorated by the days it overlaps the period."""
    query = select(col(Cost.period_start), col(Cost.period_end), col(Cost.amount_reporting)).where(
        col(Cost.period_start) <= period.end, col(Cost.period_end) >= period.start
    )
    total = Fraction(0)
    for start, end, amount in ctx.session.execute(query):
        overlap = (min(end, period.end) - max(start, period.start)).days + 1
        total += Fraction(amount) * overlap / ((end - start).days + 1)
    return total


def _shares(ctx: MetricContext, period: Period, groups: dict[str, Activity]) -> dict[str, _Share]:
    """Allocate the period's costs to the groups in proportion to their customers at any time."""
    costs = _costs(ctx, period)
    if not ctx.scope.needs_accounts:
        return {group: _Share(costs, a.customers_any) for group, a in groups.items()}
    company = _activity(ctx.with_scope(Scope()), period)[TOTAL].customers_any
    return {
        group: _Share(
            costs * a.customers_any / company if company else Fraction(0), a.customers_any
        )
        for group, a in groups.items()
    }


def retention_cost(ctx: MetricContext, period: Period) -> Values:
    """CS costs of the period (prorated by day) ÷ accounts that were customers at any time in it.

    Costs are company-wide: a breakdown part or a filtered scope carries the share of them that its
    customers make up, so every part shows the company's cost per customer.
    """
    values = {}
    for group, share in _shares(ctx, period, _activity(ctx, period)).items():
        inputs: dict[str, InputValue] = {
            "costs": _money(share.costs),
            "customers_any": share.customers_any,
        }
        per_customer = share.per_customer
        values[group] = (
            Value(_money(per_customer), inputs)
            if per_customer is not None
            else Value.undefined("no customers in the period", **inputs)
        )
    return values


# --- Customer lifetime value --------------------------------------------------------------------


@dataclass(frozen=True)
class _Lifetime:
    """One group's CLV factors over a 12-month window, exact; `reason` says why it is undefined."""

    paid: Fraction
    invoices: int
    customers_any: int
    lifetime_years: Fraction | None
    reason: str | None

    @property
    def value(self) -> Fraction | None:
        # average purchase × purchases per year × lifetime = paid ÷ customers × lifetime
        if self.reason is not None or self.lifetime_years is None:
            return None
        return self.paid / self.customers_any * self.lifetime_years

    def inputs(self) -> dict[str, InputValue]:
        return {
            "average_purchase": _money(self.paid / self.invoices) if self.invoices else None,
            "purchases_per_year": _decimal(Fraction(self.invoices, self.customers_any))
            if self.customers_any
            else None,
            "lifetime_years": None
            if self.lifetime_years is None
            else _decimal(self.lifetime_years),
        }


def _lifetime_years(ctx: MetricContext, a: Activity) -> tuple[Fraction | None, str | None]:
    """Lifetime in years: the configured one, else 1 ÷ annual logo churn (seed convention)."""
    configured = ctx.config.customer_lifetime_years
    if configured is not None:
        return Fraction(configured), None
    if not a.start.customers:
        return None, (
            "no paying customers at the start of the 12 months, so no churn to derive a "
            f"lifetime from; {SET_LIFETIME}"
        )
    if not a.churned:
        return None, f"no logo churn in the 12 months, so the lifetime is unbounded; {SET_LIFETIME}"
    return Fraction(a.start.customers, a.churned), None


def _lifetimes(
    ctx: MetricContext, window: Period, groups: dict[str, Activity]
) -> dict[str, _Lifetime]:
    paid = invoices.paid(ctx, window)
    found = {}
    for group in groups.keys() | paid.keys():
        a = groups.get(group, Activity())
        amount, paid_count = paid.get(group, (Decimal(0), 0))
        lifetime, reason = _lifetime_years(ctx, a)
        if not paid_count:
            reason = "no paid invoices in the 12 months ending with the period"
        elif not a.customers_any:
            reason = "no paying customers in the 12 months ending with the period"
        found[group] = _Lifetime(Fraction(amount), paid_count, a.customers_any, lifetime, reason)
    return found


def clv(ctx: MetricContext, period: Period) -> Values:
    """Average purchase × purchases per customer per year × lifetime, over the last 12 months."""
    window = _year_to(ctx, period)
    values = {}
    for group, parts in _lifetimes(ctx, window, _activity(ctx, window)).items():
        value = parts.value
        values[group] = (
            Value(_money(value), parts.inputs())
            if value is not None
            else Value.undefined(parts.reason or "no lifetime", **parts.inputs())
        )
    return values


def net_clv(ctx: MetricContext, period: Period) -> Values:
    """CLV − retention cost per customer per year × lifetime, both over the last 12 months."""
    window = _year_to(ctx, period)
    groups = _activity(ctx, window)
    shares = _shares(ctx, window, groups)
    values = {}
    for group, parts in _lifetimes(ctx, window, groups).items():
        gross = parts.value
        yearly_cost = shares[group].per_customer if group in shares else None
        inputs: dict[str, InputValue] = {
            "clv": None if gross is None else _money(gross),
            "retention_cost_per_year": None if yearly_cost is None else _money(yearly_cost),
            "lifetime_years": parts.inputs()["lifetime_years"],
        }
        if gross is None or yearly_cost is None or parts.lifetime_years is None:
            values[group] = Value.undefined(parts.reason or "no lifetime", **inputs)
        else:
            values[group] = Value(_money(gross - yearly_cost * parts.lifetime_years), inputs)
    return values


# --- CLV from ARPA and monthly churn ------------------------------------------------------------


def _churn_months(ctx: MetricContext, period: Period) -> list[Period]:
    """The 6 complete calendar months before the month containing the period's end, oldest first."""
    month = period.end.replace(day=1)
    starts = [month - relativedelta(months=n) for n in range(CHURN_MONTHS, 0, -1)]
    return [_days(ctx, start, start + relativedelta(months=1, days=-1)) for start in starts]


def clv_arpa(ctx: MetricContext, period: Period) -> Values:
    """ARPA at the period's end ÷ mean monthly logo churn of the 6 complete months before it."""
    months = _churn_months(ctx, period)
    span = _days(ctx, months[0].start, months[-1].end).range_label()
    stocks = stocks_at(ctx, period.end)
    rates: dict[str, list[Fraction]] = {group: [] for group in stocks}
    for month in months:
        for group, a in activity(ctx, month).items():
            found = rates.setdefault(group, [])
            if a.start.customers:
                found.append(Fraction(a.churned, a.start.customers))
    if ctx.scope.by is None:
        rates.setdefault(TOTAL, [])
    values = {}
    for group, monthly in rates.items():
        stock = stocks.get(group, Stock())
        arpa = Fraction(stock.mrr) / stock.customers if stock.customers else None
        churn = sum(monthly, Fraction(0)) / len(monthly) if monthly else None
        inputs: dict[str, InputValue] = {
            "arpa": None if arpa is None else _money(arpa),
            "monthly_churn": None if churn is None else _decimal(churn, percent=True),
        }
        if arpa is None:
            values[group] = Value.undefined(
                "no paying customers at the end of the period", **inputs
            )
        elif churn is None:
            values[group] = Value.undefined(
                f"no paying customers at the start of any month of {span}", **inputs
            )
        elif not churn:
            values[group] = Value.undefined(
                f"no logo churn in {span}, so the lifetime is unbounded", **inputs
            )
        else:
            values[group] = Value(_money(arpa / churn), inputs)
    return values
