"""Revision tokens of derived data, so that readers can keep aggregates in memory safely.

Whatever changes a family of derived data gives it a new random token in the same transaction
(`touch`), as its last write; a reader takes the token (`token`) before it reads the data. A reader
that finds the token it saw last time may reuse what it computed then: the data cannot have changed
without the token changing. A token is random, never a counter, so that emptying the table (tests,
a restore) can never bring back a token a reader still remembers; without a row there is no token,
and readers must not cache.

Families:

- `STOCKS`: what MRR stocks and movements are computed from: MRR movements, and the accounts'
  attributes that breakdowns and filters group them by (plan, segment, owner, currency);
- `SURVEYS`: survey responses and the accounts they are attributed to;
- `USAGE`: daily usage and its coverage spans, per account. Usage changes with every product event,
  so a change does not renew the token: `mark` records which accounts changed, at the family's next
  `version`, and a reader holding the family at version v reloads only the accounts marked after v
  (`changed_since`). The token is renewed instead when one transaction changes more than
  `MARK_LIMIT` accounts (a backfill: readers reload everything), and by `kpibot rebuild`.

The version is a counter on the family's row, incremented in the marking transaction and locked
until its commit, so versions are given in commit order: a reader that sees version v sees every
mark of a version up to v.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.tables import ChangedAccount, DataRevision
from storage.upsert import upsert_newer

STOCKS = "stocks"
SURVEYS = "surveys"
USAGE = "usage"
MARK_LIMIT = 1_000  # accounts changed in one transaction above which the token is renewed instead
CHANGED_BY: dict[str, frozenset[str]] = {
    STOCKS: frozenset({"account.upserted", "subscription.updated", "fx.rate"}),
    SURVEYS: frozenset({"account.upserted", "survey.responded"}),
}
"""The native event types whose application can change each family whose token they renew."""
MARKED = frozenset({USAGE})
"""The families whose changes are marked per account (`mark`), not given a new token."""
FAMILIES = (*CHANGED_BY, *sorted(MARKED))


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


def touch_if_changed(session: Session, event_types: Iterable[str]) -> None:
    """Touch each family that any of `event_types` (of applied events) can change."""
    applied = frozenset(event_types)
    for name, changers in CHANGED_BY.items():
        if changers & applied:
            touch(session, name)


def mark(session: Session, name: str, account_ids: Iterable[str]) -> None:
    """Record that `account_ids`' data of `name` changed, in the caller's transaction (last write).

    More than `MARK_LIMIT` accounts renew the token instead: reloading everything is then cheaper
    for readers than reloading account by account, and the marks are not written.
    """
    accounts = sorted(set(account_ids))
    if not accounts:
        return
    if len(accounts) > MARK_LIMIT:
        touch(session, name)
        return
    version = session.scalar(
        update(DataRevision)
        .where(col(DataRevision.name) == name)
        .values(version=col(DataRevision.version) + 1)
        .returning(col(DataRevision.version))
    )
    if version is None:  # no token yet: readers keep nothing, so a token is all they need
        touch(session, name)
        return
    rows = [{"family": name, "account_id": a, "version": version} for a in accounts]
    upsert_newer(session, ChangedAccount, rows, key=("family", "account_id"))


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


def changed_since(session: Session, name: str, version: int) -> list[str]:
    """Return the accounts whose data of `name` was marked changed after `version`."""
    query = select(col(ChangedAccount.account_id)).where(
        col(ChangedAccount.family) == name, col(ChangedAccount.version) > version
    )
    return list(session.scalars(query))
