"""Received events as the operator sees them, and replay of rejected ones after a fix.

The event log is the record of every delivery's events. Replaying a rejected event maps its stored
raw body again through its source (so a fixed mapping or a newly arrived exchange rate applies)
and ingests it like a fresh delivery: it takes the rejected row's place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from storage.apply import IngestConfig, chunks, hold_off_rebuild
from storage.csv_import import IMPORT_SOURCE, locate_rejections, location
from storage.db import fault_of_the_events, session_scope
from storage.ingest import (
    IngestReport,
    Malformed,
    RawEvent,
    Rejection,
    could_not_apply,
    ingest_events,
    item_event_id,
    mark_rejected,
    prepare,
)
from storage.revisions import Changes, record_changes
from storage.schemas import NativeEvent
from storage.sources.base import Delivery, WebhookRejected
from storage.sources.registry import get_source
from storage.tables import EventLog, table_of

OptionsFor = Callable[[str], Mapping[str, str]]


class Logged(Protocol):
    """What mapping a logged event again needs of its row (an `EventLog`, a queued row)."""

    @property
    def source(self) -> str: ...
    @property
    def event_id(self) -> str | None: ...
    @property
    def body(self) -> str: ...
    @property
    def received_at(self) -> datetime: ...


@dataclass(frozen=True)
class LoggedRow:
    """A row of the event log read back as it is stored: what mapping it again needs."""

    id: int
    source: str
    event_id: str | None
    body: str
    received_at: datetime


# The event log's columns a `LoggedRow` is read from, in its fields' order.
LOGGED_ROW_COLUMNS = tuple(table_of(EventLog).c[f.name] for f in fields(LoggedRow))
_LOGGED = table_of(EventLog).c
_DELETE_LOGGED = delete(table_of(EventLog)).where(_LOGGED.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True)
class LoggedEvent:
    """One row of the event log, without its body."""

    id: int
    source: str
    event_id: str | None
    type: str | None
    status: str
    reason: str | None
    occurred_at: datetime | None
    received_at: datetime


def list_events(
    session: Session,
    *,
    status: str | None = None,
    source: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[LoggedEvent]:
    """Return the latest logged events, newest first, optionally of one status or source, and
    only those logged before the event log id `before` (the next page of a listing)."""
    query = select(EventLog).order_by(col(EventLog.id).desc()).limit(limit)
    if before is not None:
        query = query.where(col(EventLog.id) < before)
    if status:
        query = query.where(col(EventLog.status) == status)
    if source:
        query = query.where(col(EventLog.source) == source)
    return [
        LoggedEvent(
            row.id or 0,
            row.source,
            row.event_id,
            row.type,
            row.status,
            row.reason,
            row.occurred_at,
            row.received_at,
        )
        for row in session.scalars(query)
    ]


# Rejected events replayed per transaction: each transaction holds SQLite's one writer (and on
# PostgreSQL its accounts) only that long, so webhooks and imports write between two of them.
REPLAY_BATCH = 1_000


def replay_rejected(
    factory: sessionmaker[Session],
    *,
    config: IngestConfig,
    ids: Sequence[int] = (),
    source: str | None = None,
    options_for: OptionsFor = lambda _source: {},
) -> IngestReport:
    """Re-map and re-ingest rejected events (these `ids`, or all of `source`, or all).

    They are replayed source by source, in log order, `REPLAY_BATCH` per transaction: what a
    batch applied stays applied whatever happens to a later one. A batch that fails because of
    its events is replayed again one event at a time, and an event that still fails alone stays
    rejected, with the failure as its reason, so that it cannot hold back the others.
    """
    report = IngestReport()
    for row_source, log_ids in _rejected(factory, ids=ids, source=source).items():
        for batch in chunks(log_ids, REPLAY_BATCH):
            part = _replay_batch(factory, row_source, batch, config, options_for)
            report.add(part, offset=len(report.outcomes))
    return report


def _rejected(
    factory: sessionmaker[Session], *, ids: Sequence[int], source: str | None
) -> dict[str, list[int]]:
    """Return the log ids of the rejected events to replay, by source, in log order."""
    query = select(_LOGGED.source, _LOGGED.id).where(_LOGGED.status == "rejected")
    if ids:
        query = query.where(_LOGGED.id.in_(ids))
    if source:
        query = query.where(_LOGGED.source == source)
    by_source: dict[str, list[int]] = {}
    with session_scope(factory) as session:
        for row_source, log_id in session.execute(query.order_by(_LOGGED.id)):
            by_source.setdefault(row_source, []).append(log_id)
    return by_source


def _replay_batch(
    factory: sessionmaker[Session],
    source: str,
    log_ids: Sequence[int],
    config: IngestConfig,
    options_for: OptionsFor,
) -> IngestReport:
    """Replay these rejected events of `source` in one transaction, or one by one if that fails
    because of them (as `storage.ingest.ingest_in_batches` stores a batch)."""
    try:
        with session_scope(factory) as session:
            return _replay(session, source, log_ids, config, options_for)
    except Exception as error:
        if not fault_of_the_events(error):
            raise
        if len(log_ids) > 1:
            report = IngestReport()
            for log_id in log_ids:
                part = _replay_batch(factory, source, [log_id], config, options_for)
                report.add(part, offset=len(report.outcomes))
            return report
        with session_scope(factory) as session:
            return _keep_rejected(session, log_ids[0], could_not_apply(error))


def _replay(
    session: Session,
    source: str,
    log_ids: Sequence[int],
    config: IngestConfig,
    options_for: OptionsFor,
) -> IngestReport:
    """Map these rejected events of `source` again and ingest them in the session's transaction."""
    hold_off_rebuild(session)  # first, as every applying transaction: see there
    rows = session.execute(
        select(*LOGGED_ROW_COLUMNS, _LOGGED.reason)
        .where(_LOGGED.id.in_(log_ids), _LOGGED.status == "rejected")  # still: see `_rejected`
        .order_by(_LOGGED.id)
    )
    items: list[Any] = []
    replaced: list[int] = []
    kept: list[tuple[int, str]] = []  # rows that stay as they are, still rejected: the reason
    rows_at: dict[str, str] = {}  # an imported event's id → where its row was (file and line)
    for *columns, reason in rows:
        row = LoggedRow(*columns)
        if source == IMPORT_SOURCE and row.event_id and (where := location(row.body)):
            rows_at[row.event_id] = where
        if _csv_row(row):  # not an event: the file is fixed and imported again instead
            mapped: list[Any] = [Malformed(row.body, reason or _CSV_ROW, row.event_id)]
        else:
            mapped = items_of(row, options_for(source))
        if row.event_id is None or row.event_id not in {item_event_id(item) for item in mapped}:
            # Nothing of the same id can take its place (it had none, or mapped again it has
            # another: a rating whose broken body was logged under a digest of it): the
            # replay's outcome replaces it, unless that outcome is only rejections without an
            # id, which would be logged anew at every replay: the row then stays, its log id
            # and receipt time with it, and gets the reason it has now.
            mapped = prepare(mapped)
            if mapped and all(p.event_id is None and p.entry.reason for p in mapped):
                reasons = dict.fromkeys(p.entry.reason or "" for p in mapped)
                kept.append((row.id, "; ".join(reasons)))
                continue
            replaced.append(row.id)
        items += mapped
    changes = Changes()  # recorded once, last: see `record_changes`
    report = ingest_events(
        session, items, config=config, source=source, received_at=datetime.now(UTC), changes=changes
    )
    # After `ingest_events`, which locks the accounts before it writes to the event log: the
    # order in which every applying transaction takes its locks (`storage.deferred`).
    for part in chunks(replaced):
        session.connection().execute(_DELETE_LOGGED, {"ids": list(part)})
    if rows_at:  # an imported row still rejected keeps saying where it is, as the import said
        report.rejections = [
            replace(r, reason=f"{rows_at[r.event_id]}: {r.reason}") if r.event_id in rows_at else r
            for r in report.rejections
        ]
        locate_rejections(
            session, [(r.event_id, r.reason) for r in report.rejections if r.event_id in rows_at]
        )
    mark_rejected(session, kept)
    record_changes(session, changes)
    report.add(
        IngestReport(
            rejected=len(kept),
            rejections=[Rejection(n, None, why, log_id) for n, (log_id, why) in enumerate(kept)],
            outcomes=["rejected"] * len(kept),
        ),
        offset=len(report.outcomes),
    )
    return report


def _keep_rejected(session: Session, log_id: int, reason: str) -> IngestReport:
    """Leave a rejected event rejected, with `reason`; report it (or nothing, if it is no longer
    rejected: replayed, or taken over by a resend, meanwhile)."""
    hold_off_rebuild(session)
    found = session.execute(
        select(_LOGGED.event_id).where(_LOGGED.id == log_id, _LOGGED.status == "rejected")
    ).one_or_none()
    if found is None:
        return IngestReport()
    mark_rejected(session, [(log_id, reason)])
    rejection = Rejection(0, found.event_id, reason)
    return IngestReport(rejected=1, rejections=[rejection], outcomes=["rejected"])


def map_again(
    rows: Sequence[LoggedRow], options_for: OptionsFor, *, applied_before: bool = False
) -> tuple[list[tuple[LoggedRow, NativeEvent]], list[tuple[int, str]]]:
    """Map logged rows again from their stored bodies, through their sources (no transaction
    needed): a provider's row holds the provider's own payload, not a native event. Rows
    `applied_before` are held to the rules they were applied under (`storage.schemas`).

    Returns each row that maps to a valid event with that event, and the rows that no longer do
    with the reason (for `storage.ingest.mark_rejected`).
    """
    events: list[tuple[LoggedRow, NativeEvent]] = []
    broken: list[tuple[int, str]] = []
    for row in rows:
        items = items_of(row, options_for(row.source))
        entries = [p.entry for p in prepare(items, applied_before=applied_before)]
        mine = next((e for e in entries if e.event_id == row.event_id), None)
        if mine is None and len(entries) == 1 and entries[0].reason:
            mine = entries[0]  # it no longer parses: its own reason says why
        if mine is not None and mine.event is not None and mine.reason is None:
            events.append((row, mine.event))
        else:
            why = mine.reason if mine is not None else None
            broken.append((row.id, why or "the stored body no longer maps to this event"))
    return events, broken


_CSV_ROW = "a CSV row that could not be read: fix the file and import it again"


def _csv_row(row: Logged) -> bool:
    """Whether a logged row is a CSV row that `kpibot import` could not read (its body is the
    row's cells, not an event: `storage.csv_import`)."""
    if row.source != IMPORT_SOURCE or not row.body.startswith('{"file"'):
        return False
    try:
        body = json.loads(row.body)
    except ValueError:
        return False
    return isinstance(body, dict) and {"file", "lines", "rows"} <= body.keys()


def items_of(row: Logged, options: Mapping[str, str]) -> list[Any]:
    """Map a logged row's stored body again through its source (what a replay ingests)."""
    try:
        payload = json.loads(row.body)
    except ValueError as error:
        return [Malformed(row.body, f"not JSON: {error}", row.event_id)]
    source = get_source(row.source)
    if source is None:  # a JSON Lines file or a CSV import: the body is the native event
        return [RawEvent(row.body, payload)]
    delivery = Delivery({}, row.body.encode(), row.received_at, options)
    try:
        return [event.item() for event in source.events(payload, delivery)]
    except WebhookRejected as rejected:
        return [Malformed(row.body, rejected.reason, row.event_id)]
