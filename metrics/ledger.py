"""MRR stocks kept in memory per data revision: MRR and customers on any day by bisection.

A stock (MRR and paying customers at the end of a day) is the sum of every movement up to that day,
a scan of the whole movement table. Movements (and the account attributes a scope groups them by)
change only when subscriptions, accounts or FX rates do, and every such change gives
`storage.revisions.STOCKS` a new token in the same transaction. So the first question after a change
sums the movements per group and day once (one query, as costly as one stock used to be), and every
question until the next change bisects that running total in memory:

- `series`: per scope (filters and breakdown), per group: the days with movements and the running
  MRR and customer count at the end of each;
- `account_series`: the same per account (health's customers and MRR trend);
- `movements`: every movement, in day order, with its amounts in integer hundredths, and
  `members`: each account's group under a scope, so a period's activity is a slice of memory.

Entries are keyed by database and token (`kept`), never reused across tokens; without a token
(a store whose table of tokens was emptied) nothing is kept and every call reads the database.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import BigInteger, case, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics.context import MetricContext
from storage.revisions import STOCKS, token
from storage.tables import MrrMovement
from storage.types import Money

ZERO = Decimal("0.00")
JOINING = ("new", "reactivation")
KEPT_ENTRIES = 32  # movement tables kept (per scope and database); least recently used goes first
RESULT_ENTRIES = 512  # results kept (per question, scope and database)

T = TypeVar("T")


@dataclass(frozen=True)
class Running:
    """The running MRR and customer count of one group (or account) at the end of each day."""

    days: tuple[date, ...]
    mrr: tuple[Decimal, ...]
    customers: tuple[int, ...]

    def at(self, day: date) -> tuple[Decimal, int] | None:
        """MRR and customers at the end of `day`; None before the first movement."""
        index = bisect_right(self.days, day) - 1
        if index < 0:
            return None
        return self.mrr[index], self.customers[index]

    def mrr_at(self, day: date) -> Decimal:
        """MRR at the end of `day` (0 before the first movement)."""
        found = self.at(day)
        return ZERO if found is None else found[0]


def running(rows: Iterable[tuple[date, Decimal | None, int | None]]) -> Running:
    """Accumulate (day, MRR change, customer change) rows, in day order, into a `Running`."""
    days: list[date] = []
    mrr: list[Decimal] = []
    customers: list[int] = []
    total, count = ZERO, 0
    for day, change, joined in rows:
        total += change or ZERO
        count += int(joined or 0)
        days.append(day)
        mrr.append(total)
        customers.append(count)
    return Running(tuple(days), tuple(mrr), tuple(customers))


class _Kept:
    """A small thread-safe LRU of computed values (the web server answers from many threads)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()  # outside the lock: two threads may compute the same value once each
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_KEPT = _Kept(KEPT_ENTRIES)
_RESULTS = _Kept(RESULT_ENTRIES)


def forget() -> None:
    """Drop everything kept (for tests and benchmarks that measure the first question)."""
    _KEPT.clear()
    _RESULTS.clear()


def remembered(ctx: MetricContext, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`, kept per revision and scope under `key` (computed each time without a token).

    For results derived from movements alone (a period's activity): the same question asked again
    before the data changes (a teammate, the App Home, a digest) is answered from memory.
    """
    current = revision(ctx)
    if current is None:
        return compute()
    return _RESULTS.get((key, current, ctx.scope), compute)


def revision(ctx: MetricContext, family: str = STOCKS) -> tuple[str, str] | None:
    """(database, token) of `family`'s current revision, read once per question (None: no token)."""
    memo_key = ("revision", family)
    if memo_key not in ctx.memo:
        found = token(ctx.session, family)
        url = ctx.session.get_bind().engine.url.render_as_string(hide_password=True)
        ctx.memo[memo_key] = None if found is None else (url, found)
    return ctx.memo[memo_key]


def kept(ctx: MetricContext, family: str, key: Hashable, compute: Callable[[], T]) -> T | None:
    """`compute()`, kept under `key` for the current revision of `family`.

    None when the family has no token: nothing may be kept, and the caller reads the database.
    """
    found = revision(ctx, family)
    if found is None:
        return None
    return _KEPT.get((key, family, found), compute)


def changes() -> tuple[Any, Any]:
    """The SQL of a row's MRR change and customer change (joining +1, churn −1)."""
    mrr = type_coerce(
        func.sum(col(MrrMovement.mrr_after)) - func.sum(col(MrrMovement.mrr_before)), Money
    )
    customers = func.sum(
        case(
            (col(MrrMovement.kind).in_(JOINING), 1),
            (col(MrrMovement.kind) == "churn", -1),
            else_=0,
        )
    )
    return mrr, customers


def _group_series(ctx: MetricContext) -> dict[str, Running]:
    group = ctx.scope.key_column().label("key")
    mrr, customers = changes()
    day = col(MrrMovement.day)
    query = select(group, day, mrr, customers).group_by(group, day).order_by(group, day)
    query = ctx.scope.restrict(query, col(MrrMovement.account_id))
    return _per_key(ctx.session, query)


def _per_key(session: Session, query: Any) -> dict[str, Running]:
    rows: dict[str, list[tuple[date, Decimal | None, int | None]]] = {}
    for key, day, change, joined in session.execute(query):
        rows.setdefault(key, []).append((day, change, joined))
    return {key: running(found) for key, found in rows.items()}


def series(ctx: MetricContext) -> dict[str, Running] | None:
    """Per group of the context's scope, its running MRR and customers (None: nothing kept)."""
    return kept(ctx, STOCKS, ("groups", ctx.scope), lambda: _group_series(ctx))


def _account_series(session: Session) -> dict[str, Running]:
    account, day = col(MrrMovement.account_id), col(MrrMovement.day)
    mrr, customers = changes()
    query = select(account, day, mrr, customers).group_by(account, day).order_by(account, day)
    return _per_key(session, query)


def account_series(ctx: MetricContext) -> dict[str, Running] | None:
    """Per account with movements, its running MRR and customers (None: nothing kept)."""
    return kept(ctx, STOCKS, "accounts", lambda: _account_series(ctx.session))


Movement = tuple[str, str, int, int, int]
"""(account id, kind, amount, MRR before, MRR after), amounts in integer hundredths."""


@dataclass(frozen=True)
class Movements:
    """Every MRR movement in day order (then account), amounts in integer hundredths."""

    days: tuple[date, ...]
    rows: tuple[Movement, ...]

    def between(self, start: date, end: date) -> tuple[Movement, ...]:
        """The movements of the days from `start` to `end`, both included, in day order."""
        return self.rows[bisect_left(self.days, start) : bisect_right(self.days, end)]


def cents(column: Any) -> Any:
    """A `Money` column read as its stored integer hundredths (no `Decimal` per row)."""
    return type_coerce(column, BigInteger)


def _movements(session: Session) -> Movements:
    query = select(
        col(MrrMovement.day),
        col(MrrMovement.account_id),
        col(MrrMovement.kind),
        cents(col(MrrMovement.amount)),
        cents(col(MrrMovement.mrr_before)),
        cents(col(MrrMovement.mrr_after)),
    ).order_by(col(MrrMovement.day), col(MrrMovement.account_id))
    days: list[date] = []
    rows: list[Movement] = []
    for day, *movement in session.execute(query):
        days.append(day)
        rows.append(tuple(movement))
    return Movements(tuple(days), tuple(rows))


def movements(ctx: MetricContext) -> Movements | None:
    """Every movement, kept per revision (None: nothing kept)."""
    return kept(ctx, STOCKS, "movements", lambda: _movements(ctx.session))


def _members(ctx: MetricContext) -> dict[str, str]:
    group = ctx.scope.key_column().label("key")
    account = col(MrrMovement.account_id)
    query = select(account, group).distinct()
    query = ctx.scope.restrict(query, account)
    return {account_id: key for account_id, key in ctx.session.execute(query)}


def members(ctx: MetricContext) -> dict[str, str] | None:
    """Each account with movements that the scope keeps, with its group (None: nothing kept).

    The same join and filters as the SQL queries of the scope, so an account without attributes
    is grouped (or filtered) exactly as they would.
    """
    return kept(ctx, STOCKS, ("members", ctx.scope), lambda: _members(ctx))


def warm(ctx: MetricContext) -> bool:
    """Build what questions without a breakdown read, if the revision changed (True: it did).

    Run in the background by the server after each change, so that the first question after it
    is answered from memory too.
    """
    if revision(ctx) is None or is_warm(ctx):
        return False
    series(ctx)
    movements(ctx)
    account_series(ctx)
    return True


def is_warm(ctx: MetricContext) -> bool:
    """Tell whether the movements of the current revision are kept in memory."""
    current = revision(ctx)
    return current is not None and ("movements", STOCKS, current) in _KEPT
