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

Families marked per account (usage, see `storage.revisions`) are kept by `tracked` instead: built
in the background (`warm`), then brought up to date by each question that finds the family's
version moved, reloading only the accounts marked since.
"""

from __future__ import annotations

import itertools
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import BigInteger, case, func, literal, select, type_coerce
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics.context import MetricContext, Scope
from storage.revisions import MARKED, STOCKS, changed_since, states
from storage.tables import Account, MrrMovement
from storage.types import Money

ZERO = Decimal("0.00")
JOINING = ("new", "reactivation")
KEPT_ENTRIES = 32  # movement tables kept (per scope and database); least recently used goes first
RESULT_ENTRIES = 512  # results kept (per question, scope and database)
DAILY_ENTRIES = 64  # per-account maps of one day kept (`per_day`)
TRACKED_ENTRIES = 4  # copies of families marked per account (`tracked`): usage and responses,
# of up to two databases in use

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


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
    """A small thread-safe LRU of computed values (the web server answers from many threads).

    A value may be kept for a `slot` (what it is, whatever data revision it was computed at),
    with the `stamp` of when its question read the revisions (`_read_at`): keeping a value drops
    the one kept before for the same slot, unless that one's question read later (its data is
    then at least as new: it stays, and the older value is kept beside it until pushed out).
    Under a stream of webhooks the revisions change every few seconds, and the copies of
    revisions nobody will ask for again would otherwise stay until pushed out, each as large as
    the data (SPEC: under 300 MB).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._slots: dict[Hashable, tuple[Hashable, int]] = {}  # slot → (key kept, its stamp)
        self._lock = threading.Lock()

    def get(
        self, key: Hashable, compute: Callable[[], T], *, slot: Hashable = None, stamp: int = 0
    ) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()  # outside the lock: two threads may compute the same value once each
        self.put(key, value, unless=lambda _: False, slot=slot, stamp=stamp)
        return value

    def peek(self, key: Hashable) -> Any:
        """The value under `key` (None if absent), without computing anything."""
        with self._lock:
            if key not in self._values:
                return None
            self._values.move_to_end(key)
            return self._values[key]

    def put(
        self,
        key: Hashable,
        value: Any,
        *,
        unless: Callable[[Any], bool],
        slot: Hashable = None,
        stamp: int = 0,
    ) -> None:
        """Keep `value` under `key`, unless `unless(the value already there)` says otherwise;
        with a `slot`, in place of the value kept for it under another key (see the class)."""
        with self._lock:
            if key in self._values and unless(self._values[key]):
                return
            if slot is not None:
                previous = self._slots.get(slot)
                if previous is None or previous[1] <= stamp:
                    if previous is not None and previous[0] != key:
                        self._values.pop(previous[0], None)
                    self._slots[slot] = (key, stamp)
            self._values[key] = value
            while len(self._values) > self._size:
                self._values.popitem(last=False)
            if len(self._slots) > 2 * self._size:  # slots of values pushed out
                self._slots = {s: k for s, k in self._slots.items() if k[0] in self._values}

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._slots.clear()


class Recent(Generic[K]):
    """The last `size` distinct items questions asked (scopes, days), for the warmer to rebuild."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, None] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, item: K) -> None:
        """Remember `item` as the most recent."""
        with self._lock:
            self._items[item] = None
            self._items.move_to_end(item)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def items(self) -> list[K]:
        """The items remembered, the oldest first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def replaced(
    values: Mapping[str, V], changed: Collection[str], fresh: Mapping[str, V]
) -> dict[str, V]:
    """`values` without the entries of the `changed` accounts, then with the `fresh` ones.

    How a per-account map is patched for the accounts marked since it was computed.
    """
    patched = {
        account_id: value for account_id, value in values.items() if account_id not in changed
    }
    patched.update(fresh)
    return patched


_KEPT = _Kept(KEPT_ENTRIES)
_RESULTS = _Kept(RESULT_ENTRIES)
_DAILY = _Kept(DAILY_ENTRIES)
_TRACKED = _Kept(TRACKED_ENTRIES)


def forget() -> None:
    """Drop everything kept, and which scopes were asked (tests, benchmarks of first questions)."""
    _KEPT.clear()
    _RESULTS.clear()
    _DAILY.clear()
    _TRACKED.clear()
    _recent_scopes.clear()


def remembered(ctx: MetricContext, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`, kept per revision and scope under `key` (computed each time without a token).

    For results derived from movements alone (a period's activity): the same question asked again
    before the data changes (a teammate, the App Home, a digest) is answered from memory.
    """
    current = revision(ctx)
    if current is None:
        return compute()
    return _RESULTS.get(
        (key, current, ctx.scope), compute, slot=(key, current[0], ctx.scope), stamp=_read_at(ctx)
    )


Revision = tuple[str, str, int]
"""(database, token, version) of a family as one question sees it."""


_READS = itertools.count(1)


def _read_at(ctx: MetricContext) -> int:
    """When the question first read a revision, in the order questions did: one that read later
    computes from data at least as new (revisions only move forward). Kept with the revisions,
    which every scope of the question shares."""
    if _READ_AT not in ctx.revisions:
        ctx.revisions[_READ_AT] = next(_READS)
    return cast(int, ctx.revisions[_READ_AT])


_READ_AT = "(read at)"  # not a family's name


def revision(ctx: MetricContext, family: str = STOCKS) -> Revision | None:
    """`family`'s current revision, read once per question (None: no token, keep nothing).

    A question's first read takes every family's revision at once, after its stamp
    (`_read_at`): a question stamped later never holds an older revision of any family (but
    for two questions reading within the same instant), so what it keeps may replace theirs.
    """
    if _READ_AT not in ctx.revisions:
        _read_at(ctx)
        url = ctx.session.get_bind().engine.url.render_as_string(hide_password=True)
        for name, at in states(ctx.session).items():
            ctx.revisions[name] = (url, at.token, at.version)
    return cast(Revision | None, ctx.revisions.get(family))  # a family without a token: None


def kept(ctx: MetricContext, family: str, key: Hashable, compute: Callable[[], T]) -> T | None:
    """`compute()`, kept under `key` for the current revision of `family`.

    None when the family has no token: nothing may be kept, and the caller reads the database.
    """
    return _kept_in(_KEPT, ctx, (family,), key, compute)


Patch = Callable[[T, frozenset[str]], T]
"""Bring a value up to date for the accounts marked changed since it was computed."""


def per_day(
    ctx: MetricContext,
    families: tuple[str, ...],
    key: Hashable,
    compute: Callable[[], T],
    *,
    patch: Patch[T] | None = None,
) -> T:
    """`compute()`, kept under `key` (which names its day) until any of `families` changes.

    For per-account maps of one day (health's signal scores), held apart from the whole tables
    of `kept`, so that many days do not push those out. With `patch`, a change of a family marked
    per account (usage, survey responses) patches the map for the accounts it marked instead of
    computing it again.
    Computed each time without tokens.
    """
    found = _kept_in(_DAILY, ctx, families, key, compute, patch)
    return compute() if found is None else found


def tracked(
    ctx: MetricContext,
    family: str,
    key: Hashable,
    *,
    refresh: Patch[T],
    build: Callable[[], T] | None = None,
) -> T | None:
    """The value of a family marked per account, brought up to the question's version.

    Held per database, `family` and `key`: a value held at the question's token is refreshed with
    `refresh(value, accounts marked since)`. Without one: `build()` when given (the warmer), else
    None (the question reads the database, cheaper than building for one answer).
    """
    return _kept_in(_TRACKED, ctx, (family,), key, build, refresh)


@dataclass(frozen=True)
class _AtVersion:
    """A value of families marked per account, with the versions it is up to date with."""

    versions: tuple[int, ...]
    value: Any


def _kept_in(
    store: _Kept,
    ctx: MetricContext,
    families: tuple[str, ...],
    key: Hashable,
    compute: Callable[[], T] | None,
    patch: Patch[T] | None = None,
) -> T | None:
    """The value under `key` for the current revisions of `families`.

    Computed when missing (None when `compute` is None or a family has no token). With `patch`,
    the families marked per account are held by token only: a value of older versions is patched
    with the accounts marked since, in any of them; one of the same or newer versions (newer
    data, never older) is used as it is.
    """
    revisions = tuple(revision(ctx, family) for family in families)
    if None in revisions:
        return None
    # What the value is, at whatever revision: one is kept per database (see `_Kept`).
    what = (key, families, tuple(cast(Revision, r)[0] for r in revisions))
    marked = [n for n, family in enumerate(families) if family in MARKED]
    if patch is None or not marked:
        if compute is None:
            return cast(T | None, store.peek((key, families, revisions)))
        return store.get((key, families, revisions), compute, slot=what, stamp=_read_at(ctx))
    held_at = tuple(
        cast(Revision, r)[:2] if n in marked else r for n, r in enumerate(revisions)
    )  # versions of marked families left out: a held value is patched up to the current ones
    slot = (key, families, held_at)
    versions = tuple(cast(Revision, revisions[n])[2] for n in marked)
    held: _AtVersion | None = store.peek(slot)
    if held is not None and all(h >= v for h, v in zip(held.versions, versions, strict=True)):
        return cast(T, held.value)
    if held is not None:
        changed = frozenset().union(
            *(
                _changed_since(ctx, families[n], h)
                for n, h, v in zip(marked, held.versions, versions, strict=True)
                if h < v
            )
        )
        value = patch(held.value, changed)
        versions = tuple(max(h, v) for h, v in zip(held.versions, versions, strict=True))
    elif compute is not None:
        value = compute()
    else:
        return None
    store.put(
        slot,
        _AtVersion(versions, value),
        unless=lambda kept: all(k >= v for k, v in zip(kept.versions, versions, strict=True)),
        slot=what,
        stamp=_read_at(ctx),
    )
    return value


def _changed_since(ctx: MetricContext, family: str, version: int) -> frozenset[str]:
    """The accounts marked after `version`, read once per question."""
    memo_key = ("changed since", family, version)
    if memo_key not in ctx.memo:
        ctx.memo[memo_key] = frozenset(changed_since(ctx.session, family, version))
    return cast(frozenset[str], ctx.memo[memo_key])


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
    for key, day, change, joined in session.connection().execute(query):  # Core: no ORM rows
        rows.setdefault(key, []).append((day, change, joined))
    return {key: running(found) for key, found in rows.items()}


def series(ctx: MetricContext) -> dict[str, Running] | None:
    """Per group of the context's scope, its running MRR and customers (None: nothing kept)."""
    _asked(ctx.scope)
    return _series(ctx)


def _series(ctx: MetricContext) -> dict[str, Running] | None:
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
    for day, *movement in session.connection().execute(query):  # Core: rows stream
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
    _asked(ctx.scope)
    return _members_of(ctx)


def _members_of(ctx: MetricContext) -> dict[str, str] | None:
    return kept(ctx, STOCKS, ("members", ctx.scope), lambda: _members(ctx))


@dataclass(frozen=True)
class Groups:
    """Each account's group under a scope, for data (usage) kept apart from the accounts."""

    of: dict[str, str]  # the accounts the scope keeps, with their group
    known: frozenset[str]  # every account with an account row, kept or not
    without_account: str | None  # the group of an id without a row (None: left out)

    def group(self, account_id: str) -> str | None:
        """The group of `account_id` (None: the scope leaves it out)."""
        found = self.of.get(account_id)
        if found is not None or account_id in self.known:
            return found
        return self.without_account


def _groups(ctx: MetricContext) -> Groups:
    condition = ctx.scope.condition()
    kept = literal(True) if condition is None else condition
    query = select(col(Account.account_id), ctx.scope.key_column(), kept)  # one snapshot
    of, known = {}, set()
    for account_id, key, is_kept in ctx.session.execute(query):
        known.add(account_id)
        if is_kept:  # false or NULL (a missing attribute compared): left out
            of[account_id] = key
    return Groups(of, frozenset(known), ctx.scope.group_without_account())


def groups(ctx: MetricContext) -> Groups | None:
    """Every account's group under the context's scope (None: nothing kept).

    Account attributes are part of `STOCKS`, so this is kept per its token.
    """
    return kept(ctx, STOCKS, ("account groups", ctx.scope), lambda: _groups(ctx))


def warm(ctx: MetricContext) -> bool:
    """Build what questions read, if the revision changed (True: it did).

    Without a breakdown, and under the breakdowns and filters recently asked.

    Run in the background by the server after each change, so that the first question after it
    is answered from memory too.
    """
    if revision(ctx) is None or is_warm(ctx):
        return False
    _series(ctx)
    movements(ctx)
    account_series(ctx)
    for scope in _recent_scopes.items():  # the breakdowns and filters recently asked
        scoped = ctx.with_scope(scope)
        _series(scoped)
        _members_of(scoped)
    return True


RECENT_SCOPES = 4  # breakdowns and filters recently asked, which `warm` builds again too
_recent_scopes: Recent[Scope] = Recent(RECENT_SCOPES)


def _asked(scope: Scope) -> None:
    """Remember that a question read stocks under `scope` (other than all accounts, ungrouped)."""
    if scope != Scope():
        _recent_scopes.note(scope)


def is_warm(ctx: MetricContext) -> bool:
    """Tell whether the movements of the current revision are kept in memory."""
    current = revision(ctx)
    return current is not None and ("movements", (STOCKS,), (current,)) in _KEPT
