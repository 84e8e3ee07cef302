"""A period's paid invoices (ARPU, CLV, repeat purchases), summed per account, then per group.

The invoices of the period are summed per account first, straight from the covering index
`ix_invoice_day_cover`; only then are the accounts joined for a breakdown or a filter: one join
per account rather than one per invoice (a year of invoices by plan: 46 ms → 25 ms on SQLite).

Without a breakdown or a filter, a period's total is read from memory instead (`totals`): every
invoice summed per day once per revision of `storage.revisions.INVOICES`, then any period is two
bisections. CLV sums a year of invoices at each question (44 ms on SQLite, the reference data).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, literal, select, type_coerce
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics import ledger
from metrics.context import TOTAL, MetricContext
from metrics.periods import Period
from storage.revisions import INVOICES
from storage.tables import Invoice
from storage.types import Money, from_cents


def per_account(period: Period) -> Any:
    """The subquery of each account's paid invoices of `period`: `paid` (Σ) and `invoices` (n)."""
    return (
        select(
            col(Invoice.account_id).label("account_id"),
            type_coerce(func.sum(col(Invoice.amount_reporting)), Money).label("paid"),
            func.count().label("invoices"),
        )
        .where(col(Invoice.day) >= period.start, col(Invoice.day) <= period.end)
        .group_by(col(Invoice.account_id))
        .subquery("invoices")
    )


def each(period: Period) -> Any:
    """The subquery of each paid invoice of `period`, shaped as `per_account` (1 invoice a row)."""
    return (
        select(
            col(Invoice.account_id).label("account_id"),
            col(Invoice.amount_reporting).label("paid"),
            literal(1).label("invoices"),
        )
        .where(col(Invoice.day) >= period.start, col(Invoice.day) <= period.end)
        .subquery("invoices")
    )


def per_group(
    ctx: MetricContext, period: Period, *columns: Any, by_account: bool = False
) -> Select[Any]:
    """Select the scope's group key and `columns` per group, summed over the period's invoices.

    `columns` are built from a subquery shaped as `per_account(period)` passed to them:
    `per_group(ctx, p, lambda i: func.sum(i.c.paid))`. It is `per_account` when the scope joins
    the accounts or `by_account` asks for it, else `each` invoice (one sum, no grouping).
    """
    per = per_account if by_account or ctx.scope.needs_accounts else each
    invoices = per(period)
    key = ctx.scope.key_column().label("key")
    query: Select[Any] = (
        select(key, *(column(invoices) for column in columns)).select_from(invoices).group_by(key)
    )
    return ctx.scope.restrict(query, invoices.c.account_id)


@dataclass(frozen=True)
class InvoiceDays:
    """Every paid invoice, summed per day: the running amount (hundredths of the reporting
    currency) and count through the end of each day with invoices."""

    days: tuple[date, ...]
    paid: tuple[int, ...]
    count: tuple[int, ...]

    def between(self, start: date, end: date) -> tuple[int, int]:
        """The amount (hundredths) and number of the invoices paid from `start` to `end`."""
        first, last = bisect_left(self.days, start), bisect_right(self.days, end)
        if last <= first:
            return 0, 0
        before = (self.paid[first - 1], self.count[first - 1]) if first else (0, 0)
        return self.paid[last - 1] - before[0], self.count[last - 1] - before[1]


def _invoice_days(session: Session) -> InvoiceDays:
    query = (
        select(
            col(Invoice.day),
            func.sum(ledger.cents(col(Invoice.amount_reporting))),
            func.count(),
        )
        .group_by(col(Invoice.day))
        .order_by(col(Invoice.day))
    )
    days, paid, count = [], [], []
    total, number = 0, 0
    for day, amount, invoices in session.connection().execute(query):
        total += int(amount)
        number += int(invoices)
        days.append(day)
        paid.append(total)
        count.append(number)
    return InvoiceDays(tuple(days), tuple(paid), tuple(count))


def kept_days(ctx: MetricContext) -> InvoiceDays | None:
    """Every invoice summed per day, kept per revision (None: nothing kept)."""
    return ledger.kept(ctx, INVOICES, "invoice days", lambda: _invoice_days(ctx.session))


def paid(ctx: MetricContext, period: Period) -> dict[str, tuple[Decimal, int]]:
    """Each group's invoices paid in the period: amount and number (no group without any),
    from memory when kept (`totals`), else summed by the store."""
    kept = totals(ctx, period)
    if kept is not None:
        return kept
    query = per_group(
        ctx,
        period,
        lambda i: type_coerce(func.sum(i.c.paid), Money),
        lambda i: func.sum(i.c.invoices),
    )
    return {group: (amount, int(count)) for group, amount, count in ctx.session.execute(query)}


def totals(ctx: MetricContext, period: Period) -> dict[str, tuple[Decimal, int]] | None:
    """The period's paid invoices as `per_group` sums them, amount and number, from memory.

    Only without a breakdown or filter (None otherwise, or when nothing may be kept): then every
    invoice counts, as in the SQL. Like the SQL, no group at all when the period has none.
    """
    if ctx.scope.needs_accounts:
        return None
    found = kept_days(ctx)
    if found is None:
        return None
    paid, count = found.between(period.start, period.end)
    return {TOTAL: (from_cents(paid), count)} if count else {}
