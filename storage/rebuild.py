"""Recompute every derived table from the event log, the source of truth."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from storage.apply import Applicable, Applier, IngestConfig, exclude_appliers
from storage.db import analyze, session_scope
from storage.revisions import FAMILIES, touch
from storage.schemas import EventRejected, parse_event
from storage.tables import DERIVED_TABLES, EventLog

REBUILD_CHUNK = 2_000


def rebuild(
    factory: sessionmaker[Session],
    *,
    config: IngestConfig,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Empty the derived tables and re-apply every applied event in one transaction.

    Rates are applied first (a rate is in force from its own date, whatever its arrival), then the
    rest in log order. Returns how many events were re-applied. Events that a rebuild can no longer
    apply are marked rejected with the reason, as ingestion would have.

    On PostgreSQL it first waits for the transactions applying events to end, and no other
    applies any until it commits (`exclude_appliers`): webhooks are still accepted meanwhile,
    their events queued and applied after it. On SQLite, writers wait for it (or time out).
    """
    with session_scope(factory) as session:
        exclude_appliers(session)
        for table in DERIVED_TABLES:
            session.execute(delete(table))
        count = 0
        for rates_first in (True, False):
            last_id = 0
            while True:
                query = (
                    select(col(EventLog.id), col(EventLog.body))
                    .where(col(EventLog.status) == "applied", col(EventLog.id) > last_id)
                    .order_by(col(EventLog.id))
                    .limit(REBUILD_CHUNK)
                )
                query = query.where(
                    (col(EventLog.type) == "fx.rate")
                    if rates_first
                    else (col(EventLog.type) != "fx.rate")
                )
                rows = [(log_id or 0, body) for log_id, body in session.execute(query)]
                if not rows:
                    break
                last_id = rows[-1][0]
                count += _reapply(session, rows, config)
                if progress:
                    progress(len(rows))
        for family in FAMILIES:
            touch(session, family)
    analyze(factory.kw["bind"])
    return count


def _reapply(session: Session, rows: list[tuple[int, str]], config: IngestConfig) -> int:
    items: list[Applicable] = []
    for log_id, body in rows:
        try:
            items.append(Applicable(log_id, parse_event(json.loads(body))))
        except (EventRejected, ValueError) as error:
            _mark_rejected(session, log_id, str(error))
    refused = Applier(session, config).apply(items)
    for log_id, reason in refused.items():
        _mark_rejected(session, log_id, reason)
    session.expunge_all()  # keep memory flat over millions of events
    return len(items) - len(refused)


def _mark_rejected(session: Session, log_id: int, reason: str) -> None:
    session.execute(
        update(EventLog).where(col(EventLog.id) == log_id).values(status="rejected", reason=reason)
    )
