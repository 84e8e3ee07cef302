"""The outbox: every message kpibot sends on its own initiative is written here, then delivered.

A row is `pending` until it is `sent` (to Slack), `printed` (offline mode) or `failed` for good.

Delivery claims due rows with a lease instead of holding a transaction open across network calls:
`claim_due` counts the attempt and moves `next_attempt_at` past the lease in a short transaction
(PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows; SQLite: the
write lock taken at BEGIN IMMEDIATE serialises claimers), commits, and the deliverer then records
the outcome in another short transaction. A deliverer that dies mid-send leaves its rows to be
claimed again once the lease has passed, so a message is retried, not lost. Deliverers poll with
`any_due` first, a read that takes no lock, and claim only when a row is due.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.tables import OutboxMessage
from storage.upsert import insert_ignoring_conflicts

TARGET_KINDS = ("channel", "user", "email")
STATUSES = ("pending", "sent", "printed", "failed")
MAX_ATTEMPTS = 20  # with the 15-minute cap: about three and a half hours of retrying
MAX_BACKOFF = timedelta(minutes=15)
CLAIM_LEASE = timedelta(minutes=5)  # longer than any Slack call with its own timeouts
MAX_ERROR = 500


def enqueue(
    session: Session,
    *,
    kind: str,
    target: str,
    target_kind: str,
    message: Mapping[str, Any],
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> OutboxMessage | None:
    """Queue `message` (text, blocks, thread_ts) for `target`; None if `dedupe_key` is taken."""
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"target_kind must be one of {', '.join(TARGET_KINDS)}: {target_kind!r}")
    if not target:
        raise ValueError("a message needs a target")
    now = now or datetime.now(UTC)
    row = {
        "created_at": now,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "target": target,
        "target_kind": target_kind,
        "text": str(message.get("text") or ""),
        "blocks": list(message.get("blocks") or []),
        "thread_ts": message.get("thread_ts"),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }
    inserted = insert_ignoring_conflicts(session, OutboxMessage, [row], returning=["id"])
    if not inserted:
        return None
    return session.get(OutboxMessage, inserted[0].id)


def any_due(session: Session, *, now: datetime) -> bool:
    """Tell whether a pending row is due at `now`: a read, for a read-only session, so that a
    deliverer polling an empty outbox takes no lock (`claim_due` is a write: on SQLite it takes
    the one write lock, which every webhook and import also needs, and waits for it during a
    rebuild)."""
    due = (
        select(col(OutboxMessage.id))
        .where(col(OutboxMessage.status) == "pending", col(OutboxMessage.next_attempt_at) <= now)
        .limit(1)
    )
    return session.scalar(due) is not None


def claim_due(
    session: Session, *, now: datetime, limit: int, lease: timedelta = CLAIM_LEASE
) -> list[OutboxMessage]:
    """Claim up to `limit` pending rows due at `now`, oldest due first, for one delivery attempt."""
    query = (
        select(OutboxMessage)
        .where(col(OutboxMessage.status) == "pending", col(OutboxMessage.next_attempt_at) <= now)
        .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
        .limit(limit)
        .with_for_update(skip_locked=True)  # SQLite renders no locking clause: BEGIN IMMEDIATE
    )
    rows = list(session.scalars(query))
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + lease
    session.flush()
    return rows


def release(session: Session, rows: Sequence[OutboxMessage], *, until: datetime) -> None:
    """Give claimed rows back unattempted, due again at `until` (e.g. after a rate limit)."""
    for row in rows:
        session.add(row)
        row.attempts = max(row.attempts - 1, 0)
        row.next_attempt_at = until
    session.flush()


def mark_sent(
    session: Session, row: OutboxMessage, *, ts: str | None, channel: str, now: datetime
) -> None:
    """Record that Slack accepted `row` as message `ts` in `channel` (no ts for a home view)."""
    session.add(row)
    row.status, row.sent_at, row.slack_ts, row.slack_channel = "sent", now, ts, channel
    row.last_error = None
    session.flush()


def mark_printed(session: Session, row: OutboxMessage, *, now: datetime) -> None:
    """Record that `row` was printed to the console instead of sent (offline mode)."""
    session.add(row)
    row.status, row.sent_at, row.last_error = "printed", now, None
    session.flush()


def mark_retry(
    session: Session,
    row: OutboxMessage,
    *,
    error: str,
    now: datetime,
    retry_after: timedelta | None = None,
    permanent: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
) -> None:
    """Schedule another attempt of `row` after a failure, or fail it for good.

    The wait is `retry_after` when the other side said so (Slack's Retry-After), else
    `backoff(attempts)`. A `permanent` error, or the `max_attempts`-th failure, ends it as failed.
    """
    session.add(row)
    row.last_error = error[:MAX_ERROR]
    if permanent or row.attempts >= max_attempts:
        row.status = "failed"
        row.next_attempt_at = now
    else:
        wait = retry_after if retry_after is not None else backoff(row.attempts)
        row.next_attempt_at = now + max(wait, timedelta(0))
    session.flush()


def backoff(attempts: int) -> timedelta:
    """Return the wait after the `attempts`-th failure: 2^attempts seconds, at most 15 minutes."""
    if attempts >= 10:  # 2^10 s is past the cap; no need to build huge numbers
        return MAX_BACKOFF
    return min(timedelta(seconds=2 ** max(attempts, 0)), MAX_BACKOFF)


def list_messages(
    session: Session, *, status: str | None = None, limit: int = 50
) -> list[OutboxMessage]:
    """Return the latest outbox rows, newest first, optionally of one status."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}: {status!r}")
    query = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
    if status is not None:
        query = query.where(col(OutboxMessage.status) == status)
    return list(session.scalars(query))
