"""Recompute every derived table from the event log, the source of truth."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from storage.apply import Applicable, Applier, IngestConfig, chunks, exclude_appliers
from storage.db import analyze, session_scope
from storage.deliveries import LOGGED_ROW_COLUMNS, LoggedRow, OptionsFor, map_again
from storage.ingest import mark_rejected
from storage.revisions import FAMILIES, touch
from storage.tables import DERIVED_TABLES, EventLog

REBUILD_CHUNK = 2_000


def rebuild(
    factory: sessionmaker[Session],
    *,
    config: IngestConfig,
    options_for: OptionsFor = lambda _source: {},
    progress: Callable[[int], None] | None = None,
) -> int:
    """Empty the derived tables and re-apply every applied event in one transaction.

    Rates are applied first (a rate is in force from its own date, whatever its arrival), then the
    rest in log order. Each row is mapped again through its source, as a replay maps it: a
    provider's row (Stripe, Segment, a survey tool) holds the provider's payload, mapped with that
    source's settings (`options_for`, as `Settings.source_options` gives them). Returns how many
    events were re-applied. Events that a rebuild can no longer apply are marked rejected with the
    reason, as ingestion would have; an event whose type kpibot no longer uses, ignored.

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
                    select(*LOGGED_ROW_COLUMNS)
                    .where(col(EventLog.status) == "applied", col(EventLog.id) > last_id)
                    .order_by(col(EventLog.id))
                    .limit(REBUILD_CHUNK)
                )
                query = query.where(
                    (col(EventLog.type) == "fx.rate")
                    if rates_first
                    else (col(EventLog.type) != "fx.rate")
                )
                rows = [LoggedRow(*row) for row in session.execute(query)]
                if not rows:
                    break
                last_id = rows[-1].id
                count += _reapply(session, rows, config, options_for)
                if progress:
                    progress(len(rows))
        for family in FAMILIES:
            touch(session, family)
    analyze(factory.kw["bind"])
    return count


_MARK_IGNORED = (
    update(EventLog)
    .where(col(EventLog.id).in_(bindparam("ids", expanding=True)))
    .values(status="ignored", reason=None)
)


def _reapply(
    session: Session, rows: list[LoggedRow], config: IngestConfig, options_for: OptionsFor
) -> int:
    mapped, broken = map_again(rows, options_for, applied_before=True)
    mark_rejected(session, broken)
    items = [Applicable(row.id, event) for row, event in mapped if event.data is not None]
    ignored = [row.id for row, event in mapped if event.data is None]
    for part in chunks(ignored):
        session.execute(_MARK_IGNORED, {"ids": list(part)})
    refused = Applier(session, config, alone=True).apply(items)
    mark_rejected(session, list(refused.items()))
    session.expunge_all()  # keep memory flat over millions of events
    return len(items) - len(refused)
