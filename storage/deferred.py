"""Applying the events that the webhook routes stored as `queued` (`ingest_events(defer=True)`).

A webhook delivery is answered as soon as its events are durably in the event log. Applying them
(the tables, the MRR movements, the revisions that readers watch) happens here, a moment later,
in batches that gather many deliveries. That is what lets many small deliveries share the costly
part: one account lock, one derivation per account, and one record of changes per batch.

Each batch first claims its rows, and only rows still `queued` are applied. The claim re-reads the
status under the row's lock: `FOR UPDATE SKIP LOCKED` on PostgreSQL, and the single writer on
SQLite. So a row is applied by exactly one transaction, even when two processes reach for it (two
replicas, or the sweep of leftovers beside the in-memory hand-off). The rows of an event that
cannot be applied (a missing exchange rate, a mapping that now fails) become `rejected` with
their reason, to be replayed after a fix like any rejected delivery.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from storage.apply import (
    Applicable,
    Applier,
    IngestConfig,
    RebuildRunning,
    accounts_of,
    chunks,
    hold_off_rebuild,
)
from storage.deliveries import LOGGED_ROW_COLUMNS, LoggedRow, OptionsFor, map_again
from storage.ingest import mark_rejected
from storage.revisions import Changes, record_changes
from storage.tables import EventLog, table_of

_LOGGED = table_of(EventLog).c


@dataclass(frozen=True)
class Queued:
    """A queued event, parsed, with the source it came from and the instant it was logged at.

    A row whose delivery was rejected is taken over by the sender's fixed resend, which logs
    its own `received_at`: a server still holding the earlier delivery then finds the row no
    longer its own, and leaves it to the resend's holder.
    """

    source: str
    item: Applicable
    received_at: datetime


@dataclass
class AppliedBatch:
    """What one call of `apply_queued` did."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, outcome) → n
    skipped: int = 0  # rows another transaction had applied or was applying

    @property
    def applied(self) -> int:
        """Return how many events were applied."""
        return sum(n for (_source, outcome), n in self.counts.items() if outcome == "applied")


def apply_queued(
    session: Session, queued: Sequence[Queued], *, config: IngestConfig
) -> AppliedBatch:
    """Claim these queued rows, apply the ones still queued and mark each applied or rejected.

    Runs in the caller's transaction, which should hold nothing else. Locks are taken in the
    order `ingest_events` takes them (the accounts, then event log rows, then the revisions), so
    that it never deadlocks with a CLI ingestion or a replay; the claim skips rows that another
    transaction holds instead of waiting for them.

    Raises `RebuildRunning`, having written nothing, while `kpibot rebuild` runs (PostgreSQL):
    the rows stay queued until it ends.
    """
    result = AppliedBatch()
    applier = Applier(session, config)
    if not hold_off_rebuild(session, wait=False):
        raise RebuildRunning("kpibot rebuild is running: queued events wait for it")
    applier.lock_accounts(accounts_of(q.item.event for q in queued))
    claimed = _claim(session, [q.item.log_id for q in queued])  # marked applied already
    mine = [q for q in queued if claimed.get(q.item.log_id) == q.received_at]
    taken_over = claimed.keys() - {q.item.log_id for q in mine}
    if taken_over:  # a later delivery's rows: they stay queued for it
        session.connection().execute(_UNCLAIM, {"ids": sorted(taken_over)})
    result.skipped = len(queued) - len(mine)
    if not mine:
        return result
    refused = applier.apply([q.item for q in mine])
    applied = [q for q in mine if q.item.log_id not in refused]
    mark_rejected(session, list(refused.items()))
    for q in mine:
        outcome = "rejected" if q.item.log_id in refused else "applied"
        result.counts[(q.source, outcome)] += 1
    record_changes(
        session,
        Changes({q.item.event.type for q in applied}, applier.marked()),
    )
    return result


def queued_rows(
    session: Session, *, received_before: datetime, after_id: int, limit: int
) -> list[LoggedRow]:
    """Read queued rows received before `received_before`, by id from `after_id` (excluded).

    These are the leftovers of a process that stopped before applying what it had accepted, or
    of another replica; `remap` turns them back into events.
    """
    rows = session.execute(
        select(*LOGGED_ROW_COLUMNS)
        .where(
            _LOGGED.status == "queued",
            _LOGGED.received_at < received_before,
            _LOGGED.id > after_id,
        )
        .order_by(_LOGGED.id)
        .limit(limit)
    )
    return [LoggedRow(*row) for row in rows]


def remap(
    rows: Sequence[LoggedRow], options_for: OptionsFor
) -> tuple[list[Queued], list[tuple[int, str]]]:
    """Map queued rows again from their stored bodies (`storage.deliveries.map_again`).

    Returns the events to apply and the rows that no longer map to a valid event, with the
    reason (for `storage.ingest.mark_rejected`).
    """
    mapped, broken = map_again(rows, options_for)
    events = [
        Queued(row.source, Applicable(row.id, event), row.received_at) for row, event in mapped
    ]
    return events, broken


# The claim marks the rows applied at once: the transaction that claims them applies them or
# rolls back, and `mark_rejected` re-marks the refused ones. On PostgreSQL the ids go as one
# array, in a statement of fixed text, parsed and prepared once (an IN list of hundreds of
# parameters is expanded and parsed again at each execution); rows another transaction holds
# are skipped.
_CLAIM_ARRAY = (
    "UPDATE event_log SET status = 'applied' WHERE id IN (SELECT id FROM event_log "
    "WHERE id = ANY(%(ids)s) AND status = 'queued' ORDER BY id FOR UPDATE SKIP LOCKED) "
    "RETURNING id, received_at"
)
_CLAIM = (
    update(EventLog)
    .where(_LOGGED.id.in_(bindparam("ids", expanding=True)), _LOGGED.status == "queued")
    .values(status="applied")
    .returning(_LOGGED.id, _LOGGED.received_at)
)
_UNCLAIM = (
    update(EventLog).where(_LOGGED.id.in_(bindparam("ids", expanding=True))).values(status="queued")
)


def _claim(session: Session, log_ids: list[int]) -> dict[int, datetime]:
    """Take the rows of these ids that are still queued (marking them applied), skipping rows
    other transactions hold; return the ids taken, with the instant each row was logged at."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return dict(connection.exec_driver_sql(_CLAIM_ARRAY, {"ids": sorted(log_ids)}).all())
    claimed: dict[int, datetime] = {}
    for part in chunks(sorted(log_ids)):  # SQLite: its single writer holds them all already
        claimed.update(connection.execute(_CLAIM, {"ids": list(part)}).all())
    return claimed
