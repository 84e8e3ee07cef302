"""The one ingestion service: every source (webhook, JSON Lines file, CSV import, demo) goes here.

`ingest_events` logs each event in the event log, drops the ones already seen for their source, and
applies the rest in the caller's transaction: the batch is committed whole or not at all, and within
it each event is either applied completely or rejected with its reason, never half-applied.

With `defer=True` (the webhook routes) it stops after the log: valid new events are stored as
`queued`, durably, and handed back in `IngestReport.deferred`; `storage.deferred` applies them
later, in larger batches, and marks each row applied or rejected.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from storage.apply import Applicable, Applier, IngestConfig, accounts_of, chunks
from storage.db import dumps, fault_of_the_events, session_scope
from storage.revisions import Changes, record_changes
from storage.schemas import (
    EventRejected,
    NativeEvent,
    given_id,
    given_type,
    loggable_id,
    parse_event,
)
from storage.tables import EventLog, table_of
from storage.upsert import insert_ignoring_conflicts

NATIVE_SOURCE = "kpibot"


@dataclass(frozen=True)
class Malformed:
    """An input that cannot be read as an event (a line that is not JSON, an unmappable payload).

    It is logged as rejected with `raw` as its body, under `event_id` when the sender gave one,
    so that a fixed resend (or a replay) of the same id takes its place.
    """

    raw: str
    reason: str
    event_id: str | None = None


@dataclass(frozen=True)
class RawEvent:
    """A decoded event with the exact text it was received as (kept as its body in the log)."""

    raw: str
    value: Any


@dataclass(frozen=True)
class Rejection:
    """Why the event at `index` of a batch was not applied (`log_id`: its row in the event log,
    given where nothing else names it: a replayed event without an id)."""

    index: int
    event_id: str | None
    reason: str
    log_id: int | None = None


OUTCOMES = ("applied", "queued", "duplicate", "ignored", "rejected")


@dataclass
class IngestReport:
    """Counts of what happened to each event of one or more batches.

    `outcomes` holds each item's fate by its index (one of `OUTCOMES`), so that the report of
    items gathered from several deliveries can be split back per delivery (`part`).
    """

    applied: int = 0
    queued: int = 0  # stored for `storage.deferred` to apply (ingested with `defer=True`)
    duplicate: int = 0
    ignored: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list, compare=False, repr=False)
    deferred: list[Applicable] = field(default_factory=list, compare=False, repr=False)

    @property
    def total(self) -> int:
        """Return how many events were received."""
        return self.applied + self.queued + self.duplicate + self.ignored + self.rejected

    def add(self, other: IngestReport, *, offset: int = 0) -> None:
        """Add `other`'s counts; its rejection indexes are shifted by `offset`."""
        self.applied += other.applied
        self.queued += other.queued
        self.duplicate += other.duplicate
        self.ignored += other.ignored
        self.rejected += other.rejected
        self.rejections.extend(
            Rejection(r.index + offset, r.event_id, r.reason, r.log_id) for r in other.rejections
        )
        self.outcomes.extend(other.outcomes)
        self.deferred.extend(other.deferred)

    def settle(self, index: int, outcome: str, rejection: Rejection | None = None) -> None:
        """Count item `index` as `outcome` (a field named in `OUTCOMES`; "applied" until then)."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.outcomes[index] = outcome
        if rejection is not None:
            self.rejections.append(rejection)

    def part(self, start: int, stop: int) -> IngestReport:
        """Return the report of items `start` to `stop` (excluded), indexes counted from `start`."""
        outcomes = self.outcomes[start:stop]
        part = IngestReport(
            rejections=[
                Rejection(r.index - start, r.event_id, r.reason, r.log_id)
                for r in self.rejections
                if start <= r.index < stop
            ],
            outcomes=outcomes,
        )
        for outcome in OUTCOMES:
            setattr(part, outcome, outcomes.count(outcome))
        return part


@dataclass
class _Received:
    index: int
    body: str
    event: NativeEvent | None = None
    event_id: str | None = None
    reason: str | None = None
    given_type: str | None = None  # a rejected event's type as it says it, for the log

    @property
    def status(self) -> str:
        if self.reason is not None:
            return "rejected"
        return "ignored" if self.event is not None and self.event.data is None else "applied"


@dataclass(frozen=True)
class Prepared:
    """An item already checked and parsed by `prepare`: `ingest_events` takes it as it is."""

    entry: _Received

    @property
    def event_id(self) -> str | None:
        """Return the id the event is de-duplicated by (None when it has none)."""
        return self.entry.event_id


def item_event_id(item: Any) -> str | None:
    """The id `ingest_events` logs an item under and de-duplicates it by, read without parsing
    the item (None when it gives none)."""
    if isinstance(item, Prepared):
        return item.event_id
    if isinstance(item, Malformed):
        return loggable_id(item.event_id)
    return given_id(item.value if isinstance(item, RawEvent) else item)


def prepare(items: Iterable[Any], *, applied_before: bool = False) -> list[Prepared]:
    """Check and parse `items` ahead of `ingest_events` (outside a writer's lock, say); events
    `applied_before` are held to the rules they were applied under (`kpibot rebuild`)."""
    return [Prepared(_receive(index, item, applied_before)) for index, item in enumerate(items)]


def _receive(index: int, item: Any, applied_before: bool = False) -> _Received:
    if isinstance(item, Prepared):
        entry = item.entry  # (not `dataclasses.replace`: it costs more than the rest of this)
        return _Received(
            index, entry.body, entry.event, entry.event_id, entry.reason, entry.given_type
        )
    if isinstance(item, Malformed):
        return _Received(index, item.raw, event_id=loggable_id(item.event_id), reason=item.reason)
    if isinstance(item, RawEvent):
        body, item = item.raw, item.value
    else:
        body = dumps(item)
    if _has_nul(body) and _has_nul(dumps(item)):
        # PostgreSQL text cannot hold NUL, and no real event needs one. Only the event itself
        # counts: a provider's payload (the stored body) may carry one where kpibot reads nothing,
        # and is stored with it escaped.
        reason = "text must not contain NUL characters (\\u0000)"
        return _Received(index, body, event_id=given_id(item), reason=reason)
    try:
        event = parse_event(item, applied_before=applied_before)
    except EventRejected as rejected:
        return _Received(
            index,
            body,
            event_id=rejected.event_id,
            reason=rejected.reason,
            given_type=given_type(item),
        )
    return _Received(index, body, event=event, event_id=event.event_id)


def _has_nul(text: str) -> bool:
    return "\\u0000" in text or "\x00" in text


def ingest_events(
    session: Session,
    items: list[Any],
    *,
    config: IngestConfig,
    source: str = NATIVE_SOURCE,
    received_at: datetime | None = None,
    changes: Changes | None = None,
    defer: bool = False,
) -> IngestReport:
    """Log, de-duplicate and apply decoded JSON events in the caller's transaction.

    What they changed is recorded for readers (`storage.revisions.record_changes`) at the end,
    unless `changes` is given: a caller that ingests several times in one transaction collects
    them there and records them once, last.

    With `defer`, the valid new events are only logged, as `queued`, and returned in the
    report's `deferred` (counted as `queued`) for `storage.deferred.apply_queued`.
    """
    received_at = received_at or datetime.now(UTC)
    report = IngestReport(outcomes=["applied"] * len(items))
    received: list[_Received] = []
    first: dict[str, int] = {}  # event id → where its first copy is in `received`
    for index, item in enumerate(items):
        entry = _receive(index, item)
        if entry.event_id is not None:
            at = first.get(entry.event_id)
            if at is None:
                first[entry.event_id] = len(received)
            elif received[at].status == "rejected" and entry.status != "rejected":
                # A fixed copy later in the batch takes the rejected one's place, as it would
                # in a later batch; the rejected copy is answered rejected, and not logged.
                earlier = received[at]
                rejection = Rejection(earlier.index, earlier.event_id, earlier.reason or "")
                report.settle(earlier.index, "rejected", rejection)
                received[at] = entry
                continue
            else:
                report.settle(index, "duplicate")
                continue
        received.append(entry)

    applier = Applier(session, config)
    if not defer:
        applier.lock_accounts(accounts_of(e.event for e in received if e.event is not None))
    log_ids = _log(session, received, source=source, received_at=received_at, queued=defer)
    retried = _take_over_rejected(
        session, [e for e in received if e.event_id not in log_ids], source, received_at, defer
    )
    log_ids.update(retried)

    applicable: list[Applicable] = []
    for entry in received:
        if entry.event_id is not None and entry.event_id not in log_ids:
            report.settle(entry.index, "duplicate")
        elif entry.status == "rejected":
            rejection = Rejection(entry.index, entry.event_id, entry.reason or "")
            report.settle(entry.index, "rejected", rejection)
        elif entry.status == "ignored":
            report.settle(entry.index, "ignored")
        else:
            assert entry.event is not None and entry.event_id is not None
            applicable.append(Applicable(log_ids[entry.event_id], entry.event))
            if defer:
                report.settle(entry.index, "queued")
    if defer:
        report.deferred = applicable
        return report

    refused = applier.apply(applicable)
    by_log_id = {item.log_id: item for item in applicable}
    by_event_id = {entry.event_id: entry for entry in received}
    mark_rejected(session, list(refused.items()))
    for log_id, reason in refused.items():
        entry = by_event_id[by_log_id[log_id].event.event_id]
        report.settle(entry.index, "rejected", Rejection(entry.index, entry.event_id, reason))
    report.applied += len(applicable) - len(refused)
    report.rejections.sort(key=lambda r: r.index)
    applied = {i.event.type for i in applicable if i.log_id not in refused}
    if changes is None:
        record_changes(session, Changes(applied, applier.marked()))
    else:
        changes.add(applied, applier.marked())
    return report


# Events per transaction for files and imports: each transaction re-derives its accounts' MRR
# movements once, whatever its size, so larger batches cost less per event (on `make bench`'s
# traffic, 5,000 instead of 1,000 takes a file about a quarter less time to load).
BATCH_SIZE = 5_000
COPY_THRESHOLD = 50  # rows from which the event log is written with COPY on PostgreSQL
_LOG_COLUMNS = (
    "source",
    "event_id",
    "type",
    "occurred_at",
    "received_at",
    "body",
    "status",
    "reason",
)

_LOG_TYPES = ("text", "text", "text", "timestamptz", "timestamptz", "text", "text", "text")


def _log_row(
    entry: _Received, source: str, received_at: datetime, queued: bool = False
) -> dict[str, Any]:
    event = entry.event
    status = entry.status
    return {
        "source": source,
        "event_id": _storable(entry.event_id),
        "type": event.type if event else entry.given_type,
        "occurred_at": event.occurred_at if event else None,
        "received_at": received_at,
        "body": _storable(entry.body),
        "status": "queued" if queued and status == "applied" else status,
        "reason": _storable(entry.reason),
    }


def mark_rejected(
    session: Session,
    reasons: Sequence[tuple[int, str]],
    *,
    still_queued: bool = False,
    received_at: datetime | None = None,
) -> int:
    """Mark these log rows rejected, each with its reason (kept for a replay after a fix).

    With `still_queued`, only rows that are still queued (a row another process has applied
    meanwhile keeps its fate); with `received_at`, only rows logged then (a row a resend has
    taken over since is not this delivery's any more). Returns how many rows were marked.
    """
    marked = 0
    connection = session.connection()
    for log_id, reason in reasons:
        statement = update(EventLog).where(_LOGGED.id == log_id)
        if still_queued:
            statement = statement.where(_LOGGED.status == "queued")
        if received_at is not None:
            statement = statement.where(_LOGGED.received_at == received_at)
        values = {"status": "rejected", "reason": _storable(reason)}
        marked += connection.execute(statement.values(**values)).rowcount
    return marked


def _storable(text: str | None) -> str | None:
    """Text PostgreSQL can store: a NUL character becomes U+FFFD."""
    return None if text is None else text.replace("\x00", "\ufffd")


def _log(
    session: Session,
    received: list[_Received],
    *,
    source: str,
    received_at: datetime,
    queued: bool = False,
) -> dict[str, int]:
    """Insert the event log rows; return the log id of each event id that was new."""
    rows = [_log_row(entry, source, received_at, queued) for entry in received]
    rows.sort(key=lambda row: row["event_id"] or "")  # one order for every writer: no deadlock
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql and len(rows) >= COPY_THRESHOLD:
        inserted = _log_by_copy(session, rows)
    elif postgresql:
        inserted = _log_by_arrays(session, rows)
    else:
        inserted = _log_by_rowid(session, rows)
    return {event_id: log_id for log_id, event_id in inserted if event_id is not None}


def _log_by_rowid(session: Session, rows: list[dict[str, Any]]) -> list[Any]:
    """SQLite: insert the rows in one `executemany`, then read the new ones back by their ids.

    SQLite's driver drops what RETURNING gives in an `executemany`, and SQLAlchemy's way around
    it (one statement per few hundred rows, each row's parameters built one by one) cost a
    busy server a fifth of its time. The transaction holds SQLite's write lock from its BEGIN
    (`storage.db`), and a new row's id is always greater than every id in the table: the rows
    with an id above the greatest one before the insert are exactly the rows it added.
    """
    connection = session.connection()
    before = connection.execute(_LAST_LOG_ID).scalar_one_or_none() or 0
    insert_ignoring_conflicts(session, EventLog, rows)
    return list(connection.execute(_LOGGED_AFTER, {"after": before}))


def _log_by_copy(session: Session, rows: list[dict[str, Any]]) -> list[Any]:
    """PostgreSQL: COPY the rows into a temporary table, then insert the new ones from it.

    A batch's raw bodies are most of its bytes; COPY streams them instead of binding thousands of
    parameters (which psycopg would parse out of one huge VALUES statement), in the binary
    format, which psycopg writes several times faster than text (no escaping, no time formatting).
    """
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    names = ", ".join(_LOG_COLUMNS)
    with cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_event_log (source text, event_id text, "
            "type text, occurred_at timestamptz, received_at timestamptz, body text, "
            "status text, reason text) ON COMMIT DELETE ROWS"
        )
        cursor.execute("DELETE FROM incoming_event_log")
        with cursor.copy(f"COPY incoming_event_log ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_LOG_TYPES)
            for row in rows:
                copy.write_row([row[name] for name in _LOG_COLUMNS])
        cursor.execute(
            f"INSERT INTO event_log ({names}) SELECT {names} FROM incoming_event_log "
            "ORDER BY event_id ON CONFLICT DO NOTHING RETURNING id, event_id"
        )
        return list(cursor.fetchall())


_BY_ARRAYS = (
    f"INSERT INTO event_log ({', '.join(_LOG_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%({n})b::{kind}[]" for n, kind in zip(_LOG_COLUMNS, _LOG_TYPES, strict=True))
    + ") ON CONFLICT DO NOTHING RETURNING id, event_id"
)


def _log_by_arrays(session: Session, rows: list[dict[str, Any]]) -> list[Any]:
    """PostgreSQL, fewer rows than COPY pays for (a webhook group): one array per column.

    The statement's text never changes, so psycopg parses it once and PostgreSQL prepares it
    once per connection; a VALUES list changes with its length, and psycopg parses such long
    statements again at every execution (about a tenth of a busy server's time). The arrays go
    in the binary format: the raw bodies are not escaped.
    """
    columns = {name: [row[name] for row in rows] for name in _LOG_COLUMNS}
    return list(session.connection().exec_driver_sql(_BY_ARRAYS, columns))


_LOGGED = table_of(EventLog).c
_LAST_LOG_ID = select(func.max(_LOGGED.id))
_LOGGED_AFTER = select(_LOGGED.id, _LOGGED.event_id).where(_LOGGED.id > bindparam("after"))
_REJECTED_OF = select(_LOGGED.id, _LOGGED.event_id).where(
    _LOGGED.source == bindparam("source"),
    _LOGGED.event_id.in_(bindparam("ids", expanding=True)),
    _LOGGED.status == "rejected",
)  # built once: this runs in every transaction that meets a duplicate
_TAKE_OVER = update(EventLog).where(_LOGGED.id == bindparam("log_id"))  # SET: each row's values


def _take_over_rejected(
    session: Session,
    conflicts: list[_Received],
    source: str,
    received_at: datetime,
    queued: bool = False,
) -> dict[str, int]:
    """Let a resent event replace an earlier rejected delivery of the same id (after a fix)."""
    by_id = {e.event_id: e for e in conflicts if e.event_id is not None}
    retried: dict[str, int] = {}
    connection = session.connection()
    for part in chunks(sorted(by_id)):
        for log_id, event_id in connection.execute(
            _REJECTED_OF, {"source": source, "ids": list(part)}
        ):
            assert log_id is not None and event_id is not None
            retried[event_id] = log_id
    if retried:
        # One statement for all the rows, on the connection: an ORM update per row was matched
        # against every object the session held, and built anew each time (a replay of 5,000
        # events spent minutes there).
        rows = [
            {"log_id": log_id, **_log_row(by_id[event_id], source, received_at, queued)}
            for event_id, log_id in sorted(retried.items())
        ]
        connection.execute(_TAKE_OVER, rows)
    return retried


def ingest_in_batches(
    factory: sessionmaker[Session],
    items: Iterable[Any],
    *,
    config: IngestConfig,
    source: str = NATIVE_SOURCE,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    writer_lock: AbstractContextManager[Any] | None = None,
) -> IngestReport:
    """Ingest a stream of events in batches, one transaction each; rejection indexes are global.

    `writer_lock`, held around each transaction, lets processes sharing a single-writer store
    (SQLite) hand it over at once instead of polling for it, and prepare a batch while they wait.

    A batch that fails because of its events (a value the database cannot hold, a bug one of them
    triggers) is stored again event by event, so that one event cannot lose the others: the one
    that still fails alone is logged as rejected with the reason, to be replayed after a fix.
    """
    report = IngestReport()
    offset = 0
    for batch in batched(items, batch_size):
        ready = prepare(batch)  # parsing needs no transaction, nor the writer lock
        lock = writer_lock or nullcontext()
        try:
            with lock, session_scope(factory) as session:
                part = ingest_events(session, ready, config=config, source=source)
        except Exception as error:
            if not fault_of_the_events(error) or len(ready) == 1:
                raise
            part = IngestReport()
            for item in ready:
                part.add(
                    _ingest_alone(factory, item, config, source, lock), offset=len(part.outcomes)
                )
        report.add(part, offset=offset)
        offset += len(batch)
        if progress:
            progress(len(batch))
    return report


def _ingest_alone(
    factory: sessionmaker[Session],
    item: Prepared,
    config: IngestConfig,
    source: str,
    lock: AbstractContextManager[Any],
) -> IngestReport:
    """Store one event in its own transaction; if applying it fails because of it, log it as
    rejected with the failure as its reason (its body and id kept, for a replay)."""
    try:
        with lock, session_scope(factory) as session:
            return ingest_events(session, [item], config=config, source=source)
    except Exception as error:
        if not fault_of_the_events(error):
            raise
        entry = item.entry
        failed = Malformed(entry.body, could_not_apply(error), entry.event_id)
        with lock, session_scope(factory) as session:
            return ingest_events(session, [failed], config=config, source=source)


def could_not_apply(error: Exception) -> str:
    """Return the reason an event is rejected with when applying it alone failed with `error`."""
    cause = next(iter(str(error).strip().splitlines()), "")[:200]  # its first line
    return f"could not be applied ({type(error).__name__}: {cause}); replay it after a fix"


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Yield lists of `size` consecutive items (the last may be shorter)."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def read_json_lines(lines: Iterable[str | bytes]) -> Iterator[Any]:
    """Decode JSON Lines: one event per line (or a {"events": [...]} batch); blank lines skipped.

    Lines given as bytes are read as UTF-8, a byte-order mark at the start of the file (Notepad,
    PowerShell) skipped. A line that is not UTF-8, or not JSON, becomes a `Malformed` item, so it
    is logged and reported, not lost, nor stored with its text mangled.
    """
    for number, given in enumerate(lines, start=1):
        if isinstance(given, bytes):
            try:
                line = given.decode("utf-8")
            except UnicodeDecodeError as error:
                text = given.decode("utf-8", errors="replace").rstrip("\r\n")
                reason = f"line {number} is not UTF-8 (byte {error.start + 1}): save it as UTF-8"
                yield Malformed(text, reason)
                continue
        else:
            line = given
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as error:
            yield Malformed(line.rstrip("\n"), f"line {number} is not JSON: {error}")
            continue
        if (
            isinstance(value, dict)
            and isinstance(value.get("events"), list)
            and "type" not in value
        ):
            yield from value["events"]
        else:
            yield RawEvent(line.rstrip("\n"), value)
