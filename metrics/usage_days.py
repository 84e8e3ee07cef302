"""Each account's usage days and coverage spans, kept in memory and refreshed account by account.

Stickiness and health's usage signal need, per account, Σ active users over the 30 days ending on a
day and the distinct users active in them: a scan of every `usage_day` row of the window (some
300,000 rows for 10,000 accounts). Usage changes with every product event, so instead of a token
that every event would renew, each ingestion marks the accounts it changed (`storage.revisions.
USAGE`) and this copy reloads just those (`metrics.ledger.tracked`). The server's warmer builds it;
a question that finds none reads the database (`metrics.usage`).

Per account, with days as ordinals:

- its days with a `usage_day` row, ascending, and the running sum of their active users: the
  window's Σ is the difference of two running sums found by bisection;
- the first and last days of its coverage spans (`usage_coverage`), each list ascending: a span
  contains day d when it starts on or before d and does not end before d, and every span that ends
  before d also starts before it, so the spans containing d number
  #(starts ≤ d) − #(ends < d), two bisections.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics import ledger
from metrics.context import MetricContext
from storage.apply import USAGE_WINDOW_DAYS, chunks
from storage.revisions import USAGE
from storage.tables import UsageCoverage, UsageDay

KEY = "usage days"
ORDINALS = "i"  # array type code of day ordinals (date.toordinal() of any real date fits)
SUMS = "q"
KEPT_ENDS = 8  # last days whose windows are kept (and carried over by a refresh)


@dataclass(frozen=True)
class AccountDays:
    """One account's usage days (ordinals) with running sums, and its coverage spans' bounds."""

    days: array[int]  # ascending ordinals of the days with a row
    running: array[int]  # running[i] = Σ active users of days[:i]; one longer than days
    starts: array[int]  # ascending first days of the coverage spans
    ends: array[int]  # ascending last days of the coverage spans

    def window(self, last: int) -> tuple[int, int] | None:
        """(Σ active users, distinct users) of the 30 days ending on ordinal `last`.

        None when the account has no usage row in those days (as the SQL, which groups rows).
        """
        low = bisect_left(self.days, last - USAGE_WINDOW_DAYS + 1)
        high = bisect_right(self.days, last)
        if low == high:
            return None
        users = bisect_right(self.starts, last) - bisect_left(self.ends, last)
        return self.running[high] - self.running[low], users


@dataclass(frozen=True)
class KeptUsage:
    """Every account's `AccountDays`, and the windows already computed per last day."""

    accounts: Mapping[str, AccountDays]
    _windows: dict[int, dict[str, tuple[int, int]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def windows(self, end: date) -> dict[str, tuple[int, int]]:
        """(Σ active users, distinct users) of the 30 days ending on `end`, per account with any."""
        last = end.toordinal()
        found = self._windows.get(last)
        if found is None:
            found = {}
            for account_id, days in self.accounts.items():
                window = days.window(last)
                if window is not None:
                    found[account_id] = window
            while len(self._windows) >= KEPT_ENDS:  # the oldest first (insertion order)
                self._windows.pop(next(iter(self._windows)), None)
            self._windows[last] = found  # the same value if two threads race: no lock needed
        return found

    def refreshed(self, session: Session, changed: Collection[str]) -> KeptUsage:
        """A copy with `changed` accounts read again (those without usage any more dropped)."""
        if not changed:
            return self
        changed = set(changed)
        fresh = read_accounts(session, changed)
        accounts = ledger.replaced(self.accounts, changed, fresh)
        windows = {}
        for last, found in list(self._windows.items())[-KEPT_ENDS:]:
            now = {a: w for a, days in fresh.items() if (w := days.window(last)) is not None}
            windows[last] = ledger.replaced(found, changed, now)
        return KeptUsage(accounts, windows)


def read_accounts(
    session: Session, account_ids: Collection[str] | None = None
) -> dict[str, AccountDays]:
    """Read the `AccountDays` of `account_ids` (every account when None) that have usage rows.

    Rows go straight into each account's arrays as they are read: a list of rows first would
    cost about 200 bytes a row at its peak (160 MB on the reference data), most of it kept by
    the allocator afterwards.
    """
    days: dict[str, tuple[array[int], array[int]]] = {}  # ordinals, running sums (from 0)
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for part in [None] if account_ids is None else chunks(sorted(account_ids)):
        usage = select(
            col(UsageDay.account_id), col(UsageDay.day), col(UsageDay.active_users)
        ).order_by(col(UsageDay.account_id), col(UsageDay.day))
        coverage = select(
            col(UsageCoverage.account_id),
            col(UsageCoverage.covered_from),
            col(UsageCoverage.covered_to),
        )
        if part is not None:
            usage = usage.where(col(UsageDay.account_id).in_(part))
            coverage = coverage.where(col(UsageCoverage.account_id).in_(part))
        else:  # every account: a server-side cursor on PostgreSQL, so that rows stream in
            usage = usage.execution_options(stream_results=True, yield_per=10_000)
        # Core: the ORM would hold the whole result first (as would psycopg's usual cursor).
        connection = session.connection()
        for account_id, day, active in connection.execute(usage):
            found = days.get(account_id)
            if found is None:
                found = days[account_id] = (array(ORDINALS), array(SUMS, [0]))
            ordinals, running = found
            ordinals.append(day.toordinal())
            running.append(running[-1] + active)
        for account_id, first, last in connection.execute(coverage):
            spans[account_id].append((first.toordinal(), last.toordinal()))
    return {
        account_id: _account(ordinals, running, spans.get(account_id, ()))
        for account_id, (ordinals, running) in days.items()
    }


def _account(
    ordinals: array[int], running: array[int], spans: Iterable[tuple[int, int]]
) -> AccountDays:
    bounds = list(spans)
    return AccountDays(
        ordinals,
        running,
        array(ORDINALS, sorted(first for first, _ in bounds)),
        array(ORDINALS, sorted(last for _, last in bounds)),
    )


def kept_usage(ctx: MetricContext, *, build: bool = False) -> KeptUsage | None:
    """Every account's usage days at the question's version (None: not kept, read SQL).

    `build`: build it when not kept (the warmer does; one question is cheaper with SQL).
    """
    return ledger.tracked(
        ctx,
        USAGE,
        KEY,
        refresh=lambda kept, changed: kept.refreshed(ctx.session, changed),
        build=(lambda: KeptUsage(read_accounts(ctx.session))) if build else None,
    )
