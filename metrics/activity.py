"""Customers and MRR at a period's boundaries and the movements inside it, per group.

The building block of the revenue and churn metrics. Stocks come from summing movements up to a
day (MRR at the end of a day = Σ mrr_after − mrr_before of its movements so far); who joined and who
left comes from the movements inside the period, per account: the first movement's `mrr_before`
says whether the account was a customer at the start, the last one's `mrr_after` at the end.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import case, func, select, type_coerce
from sqlmodel import col

from metrics.context import MetricContext
from metrics.periods import Period
from storage.tables import MrrMovement
from storage.types import Money

ZERO = Decimal("0.00")
JOINING = ("new", "reactivation")


@dataclass(frozen=True)
class Stock:
    """MRR and paying customers at the end of a day."""

    mrr: Decimal = ZERO
    customers: int = 0


@dataclass
class Activity:
    """One group's customers and MRR over a period."""

    start: Stock = field(default_factory=Stock)
    end: Stock = field(default_factory=Stock)
    amounts: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    accounts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    joined: int = 0  # became customers in the period, not customers at its start
    churned: int = 0  # distinct accounts with a churn in the period
    joined_and_churned: int = 0  # of the churned, those that joined in the period

    @property
    def customers_any(self) -> int:
        """Accounts that were customers at any time in the period."""
        return self.start.customers + self.joined

    def amount(self, kind: str) -> Decimal:
        """Sum of the period's movements of `kind` (new, expansion, contraction, churn, …)."""
        return self.amounts.get(kind, ZERO)


def stocks_at(ctx: MetricContext, day: date) -> dict[str, Stock]:
    """Return MRR and customers at the end of `day`, per group of the context's scope."""
    key = ctx.scope.key_column().label("key")
    customers = func.sum(
        case(
            (col(MrrMovement.kind).in_(JOINING), 1),
            (col(MrrMovement.kind) == "churn", -1),
            else_=0,
        )
    )
    mrr = type_coerce(
        func.sum(col(MrrMovement.mrr_after)) - func.sum(col(MrrMovement.mrr_before)), Money
    )
    query = select(key, mrr, customers).where(col(MrrMovement.day) <= day).group_by(key)
    query = ctx.scope.restrict(query, col(MrrMovement.account_id))
    return {
        group: Stock(mrr or ZERO, int(count or 0))
        for group, mrr, count in ctx.session.execute(query)
    }


def activity(ctx: MetricContext, period: Period) -> dict[str, Activity]:
    """Return each group's stocks at the period's start and end and what moved inside it."""
    groups: dict[str, Activity] = defaultdict(Activity)
    for group, stock in stocks_at(ctx, period.start - timedelta(days=1)).items():
        groups[group].start = stock
    for group, stock in stocks_at(ctx, period.end).items():
        groups[group].end = stock

    key = ctx.scope.key_column().label("key")
    query = (
        select(
            key,
            col(MrrMovement.account_id),
            col(MrrMovement.kind),
            col(MrrMovement.amount),
            col(MrrMovement.mrr_before),
        )
        .where(col(MrrMovement.day) >= period.start, col(MrrMovement.day) <= period.end)
        .order_by(col(MrrMovement.account_id), col(MrrMovement.day))
    )
    query = ctx.scope.restrict(query, col(MrrMovement.account_id))
    seen: dict[str, tuple[str, bool, bool, bool]] = {}  # account → group, at start, joined, churned
    counted: set[tuple[str, str]] = set()
    for group, account_id, kind, amount, mrr_before in ctx.session.execute(query):
        bucket = groups[group]
        bucket.amounts[kind] += amount
        if (account_id, kind) not in counted:
            counted.add((account_id, kind))
            bucket.accounts[kind] += 1
        _, at_start, joined, churned = seen.get(account_id, (group, mrr_before > 0, False, False))
        seen[account_id] = (
            group,
            at_start,
            joined or (kind in JOINING and not at_start),
            churned or kind == "churn",
        )
    for group, _at_start, joined, churned in seen.values():
        bucket = groups[group]
        bucket.joined += joined
        bucket.churned += churned
        bucket.joined_and_churned += joined and churned
    return dict(groups)
