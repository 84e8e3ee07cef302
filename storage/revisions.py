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
- `SURVEYS`: survey responses and the accounts they are attributed to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.tables import DataRevision
from storage.upsert import upsert_newer

STOCKS = "stocks"
SURVEYS = "surveys"
CHANGED_BY: dict[str, frozenset[str]] = {
    STOCKS: frozenset({"account.upserted", "subscription.updated", "fx.rate"}),
    SURVEYS: frozenset({"account.upserted", "survey.responded"}),
}
"""The native event types whose application can change each family."""
FAMILIES = tuple(CHANGED_BY)


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


def token(session: Session, name: str) -> str | None:
    """Return the current token of `name` (None: never touched, do not cache)."""
    return session.scalar(select(col(DataRevision.token)).where(col(DataRevision.name) == name))
