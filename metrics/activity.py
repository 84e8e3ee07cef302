"""Customers and MRR at a period's boundaries and the movements inside it, per group.

The building block of the revenue and churn metrics. Stocks come from summing movements up to a
day (MRR at the end of a day = Σ mrr_after − mrr_before of its movements so far); who joined and who
left comes from the movements inside the period, per account: the first movement's `mrr_before`
says whether the account was a customer at the start, the last one's `mrr_after` at the end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import col

from metrics.context import TOTAL, MetricContext
from metrics.ledger import (
    JOINING,
    ZERO,
    Running,
    cents,
    changes,
    members,
    movements,
    remembered,
    series,
)
from metrics.periods import Period
from storage.tables import MrrMovement
from storage.types import from_cents


@dataclass(frozen=True)
class Stock:
    """MRR and paying customers at the end of a day."""

    mrr: Decimal = ZERO
    customers: int = 0


@dataclass
class Activity:
    """One group's customers and MRR over a period (shared once returned: never change it)."""

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
    """Return MRR and customers at the end of `day`, per group of the context's scope.

    From the running totals kept per data revision (`metrics.ledger`) when there are some, else
    by summing the movements up to `day`.
    """
    key = ("stocks", day)
    if key not in ctx.memo:
        kept = series(ctx)
        ctx.memo[key] = _sum_movements(ctx, day) if kept is None else _bisect(kept, day)
    return dict(ctx.memo[key])


def _bisect(kept: dict[str, Running], day: date) -> dict[str, Stock]:
    stocks = {}
    for name, totals in kept.items():
        found = totals.at(day)
        if found is not None:
            stocks[name] = Stock(*found)
    return stocks


def _sum_movements(ctx: MetricContext, day: date) -> dict[str, Stock]:
    group = ctx.scope.key_column().label("key")
    mrr, customers = changes()
    query = select(group, mrr, customers).where(col(MrrMovement.day) <= day).group_by(group)
    query = ctx.scope.restrict(query, col(MrrMovement.account_id))
    return {
        name: Stock(total or ZERO, int(count or 0))
        for name, total, count in ctx.session.execute(query)
    }


def activity(ctx: MetricContext, period: Period) -> dict[str, Activity]:
    """Return each group's stocks at the period's start and end and what moved inside it.

    One scan of all movements gives the end; the start is the end less the period's own
    movements (and is remembered: it is the previous period's end).
    """
    key = ("activity", period.start, period.end)
    if key not in ctx.memo:
        ctx.memo[key] = remembered(ctx, key, lambda: _activity(ctx, period))
    return dict(ctx.memo[key])


def _activity(ctx: MetricContext, period: Period) -> dict[str, Activity]:
    groups: dict[str, Activity] = defaultdict(Activity)
    ends = stocks_at(ctx, period.end)
    for name, stock in ends.items():
        groups[name].end = stock
    rows = _kept_rows(ctx, period)
    if rows is None:
        rows = _scanned_rows(ctx, period)
    amounts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    moved: dict[str, int] = defaultdict(int)
    joined_net: dict[str, int] = defaultdict(int)
    seen: dict[str, tuple[str, bool, bool, bool]] = {}  # account → group, at start, joined, churned
    counted: set[tuple[str, str]] = set()
    for name, account_id, kind, amount, mrr_before, mrr_after in rows:
        bucket = groups[name]
        amounts[name][kind] += amount
        moved[name] += mrr_after - mrr_before
        joined_net[name] += 1 if kind in JOINING else -1 if kind == "churn" else 0
        if (account_id, kind) not in counted:
            counted.add((account_id, kind))
            bucket.accounts[kind] += 1
        _, at_start, joined, churned = seen.get(account_id, (name, mrr_before > 0, False, False))
        seen[account_id] = (
            name,
            at_start,
            joined or (kind in JOINING and not at_start),
            churned or kind == "churn",
        )
    for name, _at_start, joined, churned in seen.values():
        bucket = groups[name]
        bucket.joined += joined
        bucket.churned += churned
        bucket.joined_and_churned += joined and churned
    starts = {}
    for name, bucket in groups.items():
        for kind, total in amounts[name].items():
            bucket.amounts[kind] = from_cents(total)
        start_mrr = bucket.end.mrr - from_cents(moved[name])
        bucket.start = Stock(start_mrr, bucket.end.customers - joined_net[name])
        if bucket.start != Stock():
            starts[name] = bucket.start
    ctx.memo.setdefault(("stocks", period.start - timedelta(days=1)), starts)
    return dict(groups)


Row = tuple[str, str, str, int, int, int]  # group, account, kind, amount, MRR before, MRR after


def _kept_rows(ctx: MetricContext, period: Period) -> Iterable[Row] | None:
    """The period's movements from memory (`metrics.ledger`), each with its group, if kept."""
    kept = movements(ctx)
    if kept is None:
        return None
    window = kept.between(period.start, period.end)
    if not ctx.scope.needs_accounts:
        return ((TOTAL, *movement) for movement in window)
    group_of = members(ctx)
    if group_of is None:
        return None
    return ((group_of[m[0]], *m) for m in window if m[0] in group_of)


def _scanned_rows(ctx: MetricContext, period: Period) -> Iterable[Row]:
    """The period's movements from the database, each with its group, per account in day order."""
    group = ctx.scope.key_column().label("key")
    query = (
        select(
            group,
            col(MrrMovement.account_id),
            col(MrrMovement.kind),
            cents(col(MrrMovement.amount)),
            cents(col(MrrMovement.mrr_before)),
            cents(col(MrrMovement.mrr_after)),
        )
        .where(col(MrrMovement.day) >= period.start, col(MrrMovement.day) <= period.end)
        .order_by(col(MrrMovement.account_id), col(MrrMovement.day))
    )
    query = ctx.scope.restrict(query, col(MrrMovement.account_id))
    return ctx.session.execute(query)
