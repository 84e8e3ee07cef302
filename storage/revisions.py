"""Revision tokens of derived data, so that readers can keep aggregates in memory safely.

Whatever changes a family of derived data gives it a new random token in the same transaction
(`touch`), as its last write; a reader takes the token (`token`) before it reads the data. A reader
that finds the token it saw last time may reuse what it computed then: the data cannot have changed
without the token changing. A token is random, never a counter, so that emptying the table (tests)
can never bring back a token a reader still remembers; without a row there is no token, and readers
must not cache. A restore does bring back an old token with its own data, which is safe for tokens,
but not for `USAGE`'s version (below): after a restore, restart the readers or `kpibot rebuild`.

Families:

- `STOCKS`: what MRR stocks and movements are computed from: MRR movements, and the accounts'
  attributes that breakdowns and filters group them by (plan, segment, owner, currency);
- `SURVEYS`: survey responses and the accounts they are attributed to. Marked per account, as
  `USAGE` is (below): a webhook stream brings responses every few seconds, and reading every
  response again after each took a busy server a third of its time. A response keeps the account
  it was attributed to when applied (an account change does not move it), so only a move by a
  later version of the response changes attribution, and it marks both accounts;
- `INVOICES`: paid invoices, and their amounts in the reporting currency (an FX rate converts them
  again);
- `USAGE`: daily usage and its coverage spans, per account. Usage changes with every product event,
  so a change does not renew the token: `record_changes` marks which accounts changed, at the
  family's next `version`, and a reader holding the family at version v reloads only the accounts
  marked after v (`changed_since`). The token is renewed instead when one transaction changes more
  than `MARK_LIMIT` accounts (a backfill: readers reload everything), and by `kpibot rebuild`.
  A reader that keeps a value whole, without patching it (`metrics.ledger.kept`), keys it on the
  version too, and computes it again after any mark.

The version is a counter on the family's row, incremented in the marking transaction and locked
until its commit, so versions are given in commit order: a reader that sees version v sees every
mark of a version up to v.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.tables import ChangedAccount, DataRevision, table_of
from storage.upsert import upsert_newer

STOCKS = "stocks"
SURVEYS = "surveys"
INVOICES = "invoices"
USAGE = "usage"
MARK_LIMIT = 1_000  # accounts changed in one transaction above which the token is renewed instead
CHANGED_BY: dict[str, frozenset[str]] = {
    STOCKS: frozenset({"account.upserted", "subscription.updated", "fx.rate"}),
    # Responses are marked per account, and keep the account they were attributed to when they
    # were applied: an account change does not move them, so nothing renews this token.
    SURVEYS: frozenset(),
    INVOICES: frozenset({"invoice.paid", "fx.rate"}),
}
"""The native event types whose application can change each family whose token they renew."""
MARKED = frozenset({SURVEYS, USAGE})
"""The families whose changes are marked per account (`record_changes`), not given a new token."""
FAMILIES = tuple(dict.fromkeys((*CHANGED_BY, *sorted(MARKED))))


@dataclass(frozen=True)
class State:
    """A family's revision as a reader sees it: its token and how many marks since."""

    token: str
    version: int


def touch(session: Session, name: str) -> None:
    """Give `name` a new token, in the caller's transaction (make it the transaction's last write).

    On PostgreSQL the row stays locked until commit, so concurrent writers queue here briefly;
    writing it last keeps that wait to the commit itself.
    """
    row = {"name": name, "token": uuid.uuid4().hex, "changed_at": datetime.now(UTC)}
    upsert_newer(session, DataRevision, [row], key=("name",))


@dataclass
class Changes:
    """What a transaction changed: the types of the events it applied, the accounts it marked."""

    event_types: set[str] = field(default_factory=set)
    marked: dict[str, set[str]] = field(default_factory=dict)  # family → accounts

    def add(self, event_types: Iterable[str], marked: dict[str, set[str]]) -> None:
        """Add what one more part of the transaction changed."""
        self.event_types.update(event_types)
        for name, accounts in marked.items():
            self.marked.setdefault(name, set()).update(accounts)


def record_changes(session: Session, changes: Changes) -> None:
    """Record what a transaction changed, as its last writes: one statement, then the marks.

    Call it once per transaction, after its last other write: on PostgreSQL the revision rows
    stay locked until commit (so concurrent writers queue here briefly, and take versions in
    commit order), and a transaction that went on to lock accounts after them could deadlock
    with one that holds an account and waits for them.

    Each family that any of the applied event types can change gets a new token; each marked
    family gets its next version, and its accounts their marks at that version. More than
    `MARK_LIMIT` accounts renew the token instead: reloading everything is then cheaper for
    readers than account by account.
    """
    renewed = {name for name, changers in CHANGED_BY.items() if changers & changes.event_types}
    marks: dict[str, list[str]] = {}
    for name, account_ids in changes.marked.items():
        accounts = sorted(set(account_ids))
        if len(accounts) > MARK_LIMIT:
            renewed.add(name)
        elif accounts and name not in renewed:  # a new token makes readers reload everything
            marks[name] = accounts
    if not renewed and not marks:
        return
    now = datetime.now(UTC)
    rows = [
        # `version` carries the increment: 0 renews the token, 1 keeps it and counts a change.
        {"name": name, "token": uuid.uuid4().hex, "changed_at": now, "version": int(name in marks)}
        for name in sorted(renewed | marks.keys())
    ]
    session.flush()
    statement = _revising(session.get_bind().dialect.name)
    versions = {name: version for name, version in session.connection().execute(statement, rows)}
    for name, accounts in marks.items():
        found = [{"family": name, "account_id": a, "version": versions[name]} for a in accounts]
        upsert_newer(session, ChangedAccount, found, key=("family", "account_id"))


@lru_cache(maxsize=2)
def _revising(dialect: str) -> Any:
    """INSERT … ON CONFLICT of `data_revision` rows: a new token, or the version incremented.

    A row not there yet is inserted with its token (readers kept nothing without one).
    """
    table = table_of(DataRevision)
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={
            "token": case((excluded.version == 0, excluded.token), else_=table.c.token),
            "changed_at": excluded.changed_at,
            "version": table.c.version + excluded.version,
        },
    ).returning(table.c.name, table.c.version)


def token(session: Session, name: str) -> str | None:
    """Return the current token of `name` (None: never touched, do not cache)."""
    return session.scalar(select(col(DataRevision.token)).where(col(DataRevision.name) == name))


def state(session: Session, name: str) -> State | None:
    """Return the current token and version of `name` (None: never touched, do not cache)."""
    found = session.execute(
        select(col(DataRevision.token), col(DataRevision.version)).where(
            col(DataRevision.name) == name
        )
    ).first()
    return None if found is None else State(found[0], int(found[1]))


def states(session: Session) -> dict[str, State]:
    """Return every family's current token and version, read together (one snapshot)."""
    rows = session.execute(
        select(col(DataRevision.name), col(DataRevision.token), col(DataRevision.version))
    )
    return {name: State(token, int(version)) for name, token, version in rows}


def changed_since(session: Session, name: str, version: int) -> list[str]:
    """Return the accounts whose data of `name` was marked changed after `version`."""
    query = select(col(ChangedAccount.account_id)).where(
        col(ChangedAccount.family) == name, col(ChangedAccount.version) > version
    )
    return list(session.scalars(query))
