"""Received events as the operator sees them, and replay of rejected ones after a fix.

The event log is the record of every delivery's events. Replaying a rejected event maps its stored
raw body again through its source (so a fixed mapping or a newly arrived exchange rate applies)
and ingests it like a fresh delivery: it takes the rejected row's place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from storage.apply import IngestConfig, hold_off_rebuild
from storage.csv_import import IMPORT_SOURCE
from storage.db import session_scope
from storage.ingest import (
    IngestReport,
    Malformed,
    RawEvent,
    ingest_events,
    item_event_id,
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
    session: Session, *, status: str | None = None, source: str | None = None, limit: int = 50
) -> list[LoggedEvent]:
    """Return the latest logged events, newest first, optionally of one status or source."""
    query = select(EventLog).order_by(col(EventLog.id).desc()).limit(limit)
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


def replay_rejected(
    factory: sessionmaker[Session],
    *,
    config: IngestConfig,
    ids: Sequence[int] = (),
    source: str | None = None,
    options_for: OptionsFor = lambda _source: {},
) -> IngestReport:
    """Re-map and re-ingest rejected events (these `ids`, or all of `source`, or all)."""
    report = IngestReport()
    with session_scope(factory) as session:
        hold_off_rebuild(session)  # first, as every applying transaction: see there
        query = (
            select(EventLog).where(col(EventLog.status) == "rejected").order_by(col(EventLog.id))
        )
        if ids:
            query = query.where(col(EventLog.id).in_(ids))
        if source:
            query = query.where(col(EventLog.source) == source)
        rows = list(session.scalars(query))
        changes = Changes()  # recorded once, last: see `record_changes`
        for row in rows:
            if _csv_row(row):  # not an event: the file is fixed and imported again instead
                items: list[Any] = [Malformed(row.body, row.reason or _CSV_ROW, row.event_id)]
            else:
                items = items_of(row, options_for(row.source))
            if row.event_id is None or row.event_id not in {item_event_id(item) for item in items}:
                # Nothing of the same id can take its place (it had none, or mapped again it has
                # another: a rating whose broken body was logged under a digest of it): the
                # replay's outcome replaces it.
                session.execute(delete(EventLog).where(col(EventLog.id) == row.id))
            part = ingest_events(
                session,
                items,
                config=config,
                source=row.source,
                received_at=datetime.now(UTC),
                changes=changes,
            )
            report.add(part)
        record_changes(session, changes)
    return report


def map_again(
    rows: Sequence[LoggedRow], options_for: OptionsFor
) -> tuple[list[tuple[LoggedRow, NativeEvent]], list[tuple[int, str]]]:
    """Map logged rows again from their stored bodies, through their sources (no transaction
    needed): a provider's row holds the provider's own payload, not a native event.

    Returns each row that maps to a valid event with that event, and the rows that no longer do
    with the reason (for `storage.ingest.mark_rejected`).
    """
    events: list[tuple[LoggedRow, NativeEvent]] = []
    broken: list[tuple[int, str]] = []
    for row in rows:
        entries = [p.entry for p in prepare(items_of(row, options_for(row.source)))]
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
