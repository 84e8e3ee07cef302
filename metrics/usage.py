"""Product usage (KPIS.md, Engagement and health): stickiness, per group and per account.

Stickiness looks at the 30 local days ending with the period's end, whatever the period's length:
mean DAU = Σ `active_users` of the window's `usage_day` rows ÷ 30 (a day without a row counts as 0
active users), MAU = distinct (account, user) pairs active in the window, stickiness = mean DAU ÷
MAU × 100, undefined when MAU is 0. User ids belong to their account, so a group's MAU is the sum of
its accounts' distinct users. Breakdowns group an account by its current attributes.

Both figures come from each account's usage days kept in memory (`metrics.usage_days`) when the
server keeps them; otherwise they are aggregated in SQL: DAU as a `SUM` read from a covering index
of `usage_day`, MAU as a count of the `usage_coverage` spans containing the window's last day (a
user active on day x counts for the windows ending in [x, x + 29]; their merged spans are derived
at ingestion), so no JSON is read at all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics import ledger
from metrics.context import TOTAL, MetricContext
from metrics.periods import Period
from metrics.result import InputValue, Value, ratio
from metrics.usage_days import kept_usage
from storage.apply import USAGE_WINDOW_DAYS, chunks
from storage.tables import UsageCoverage, UsageDay

Values = dict[str, Value]
WINDOW_DAYS = USAGE_WINDOW_DAYS
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Usage:
    """Active users of one group (or account) over a 30-day window."""

    user_days: int = 0  # Σ active users per day over the window
    distinct_users: int = 0  # MAU: distinct (account, user) pairs active in the window

    @property
    def mean_dau(self) -> Decimal:
        """Mean daily active users over the window, to 2 decimals."""
        return (Decimal(self.user_days) / WINDOW_DAYS).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def stickiness(self) -> Decimal | None:
        """Mean DAU ÷ MAU × 100 (exact, not from the rounded DAU); None without active users."""
        if not self.distinct_users:
            return None
        return ratio(self.user_days, self.distinct_users * WINDOW_DAYS)


def usage_window(end: date) -> tuple[date, date]:
    """Return the first and last day of the 30 days ending with `end`."""
    return end - timedelta(days=WINDOW_DAYS - 1), end


def stickiness(ctx: MetricContext, period: Period) -> Values:
    """Mean DAU ÷ MAU × 100 over the 30 days ending with the period, with DAU and MAU."""
    usage = _kept_per_group(ctx, period.end)
    if usage is None:
        usage = _per_group(ctx, period.end) if ctx.scope.needs_accounts else _total(ctx, period.end)
    if ctx.scope.by is None:
        usage.setdefault(TOTAL, Usage())
    first, last = usage_window(period.end)
    values: Values = {}
    for group, found in usage.items():
        inputs: dict[str, InputValue] = {"dau": found.mean_dau, "mau": found.distinct_users}
        rate = found.stickiness
        values[group] = (
            Value(rate, inputs)
            if rate is not None
            else Value.undefined(f"no active users from {first} to {last}", **inputs)
        )
    return values


def _kept_per_group(ctx: MetricContext, end: date) -> dict[str, Usage] | None:
    """Each group's usage from the per-account copy in memory (None: not kept, read SQL)."""
    kept = kept_usage(ctx)
    groups = ledger.groups(ctx) if ctx.scope.needs_accounts else None
    if kept is None or (ctx.scope.needs_accounts and groups is None):
        return None
    sums: dict[str, tuple[int, int]] = {}
    for account_id, (user_days, users) in kept.windows(end).items():
        group = TOTAL if groups is None else groups.group(account_id)
        if group is not None:
            total_user_days, total_users = sums.get(group, (0, 0))
            sums[group] = (total_user_days + user_days, total_users + users)
    return {group: Usage(user_days, users) for group, (user_days, users) in sums.items()}


def _per_group(ctx: MetricContext, end: date) -> dict[str, Usage]:
    """Each group's usage: the per-account figures summed by the accounts' group."""
    per_account = _per_account(ctx.session, end).subquery("per_account")
    key = ctx.scope.key_column().label("key")
    user_days, users = per_account.c.user_days, per_account.c.users
    query: Select[Any] = select(key, func.sum(user_days), func.sum(users)).group_by(key)
    query = ctx.scope.restrict(query, per_account.c.account_id)
    return {
        group: Usage(int(total_user_days or 0), int(total_users or 0))
        for group, total_user_days, total_users in ctx.session.execute(query)
    }


def _total(ctx: MetricContext, end: date) -> dict[str, Usage]:
    """All accounts' usage, without grouping: two sums straight from the covering indexes.

    The same figures as summing `_per_account`: a span containing the window's last day starts
    inside the window, so every account counted in MAU has usage rows in the window.
    """
    first, last = usage_window(end)
    user_days = ctx.session.scalar(
        select(func.sum(col(UsageDay.active_users))).where(
            col(UsageDay.day) >= first, col(UsageDay.day) <= last
        )
    )
    if user_days is None:
        return {}
    users = ctx.session.scalar(
        select(func.count()).where(
            col(UsageCoverage.covered_to) >= last, col(UsageCoverage.covered_from) <= last
        )
    )
    return {TOTAL: Usage(int(user_days), int(users or 0))}


def account_stickiness(
    session: Session, account_ids: Iterable[str], end: date
) -> dict[str, Decimal | None]:
    """Return each account's stickiness over the 30 days ending with `end` (None: no usage)."""
    wanted = sorted(set(account_ids))
    found: dict[str, Usage] = {}
    for part in chunks(wanted):
        found.update(account_usage(session, end, part))
    return {account: found.get(account, Usage()).stickiness for account in wanted}


def account_usage(
    session: Session, end: date, accounts: Collection[str] | Select[Any] | None = None
) -> dict[str, Usage]:
    """Return the window's usage of `accounts` (ids or a query of them; all when None), if any."""
    query = _per_account(session, end, accounts)
    return {
        account: Usage(int(user_days or 0), int(users or 0))
        for account, user_days, users in session.execute(query)
    }


def _per_account(
    session: Session, end: date, accounts: Collection[str] | Select[Any] | None = None
) -> Select[Any]:
    """Per account with usage rows in the window: Σ active users per day, and distinct users."""
    first, last = usage_window(end)
    account = col(UsageDay.account_id)
    in_window = [col(UsageDay.day) >= first, col(UsageDay.day) <= last]
    if accounts is not None:
        in_window.append(account.in_(accounts))
    user_days = (
        select(account.label("account_id"), func.sum(col(UsageDay.active_users)).label("n"))
        .where(*in_window)
        .group_by(account)
        .subquery("user_days")
    )
    covered = [col(UsageCoverage.covered_to) >= last, col(UsageCoverage.covered_from) <= last]
    if accounts is not None:
        covered.append(col(UsageCoverage.account_id).in_(accounts))
    users = (
        select(col(UsageCoverage.account_id).label("account_id"), func.count().label("n"))
        .where(*covered)
        .group_by(col(UsageCoverage.account_id))
        .subquery("users")
    )
    return select(
        user_days.c.account_id,
        user_days.c.n.label("user_days"),
        func.coalesce(users.c.n, 0).label("users"),
    ).outerjoin(users, users.c.account_id == user_days.c.account_id)
