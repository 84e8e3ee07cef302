"""The outbox on both backends: dedupe by the database, claiming, backoff and giving up."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage.db import session_scope
from storage.outbox import (
    MAX_ATTEMPTS,
    backoff,
    claim_due,
    enqueue,
    list_messages,
    mark_printed,
    mark_retry,
    mark_sent,
    release,
)
from storage.tables import OutboxMessage

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MESSAGE = {"text": "Churn 2.1 %", "blocks": [{"type": "divider"}]}


def queue(factory: sessionmaker[Session], **overrides: object) -> OutboxMessage | None:
    """Enqueue one message (a channel post unless overridden) in its own transaction."""
    arguments: dict[str, object] = {
        "kind": "kpi",
        "target": "C0KPI",
        "target_kind": "channel",
        "message": MESSAGE,
        "now": T0,
    }
    arguments.update(overrides)
    with session_scope(factory) as session:
        return enqueue(session, **arguments)  # type: ignore[arg-type]


def test_a_queued_message_keeps_its_text_blocks_and_thread(session_factory):
    message = {"text": "hi", "blocks": [{"type": "divider"}], "thread_ts": "1700000000.000100"}
    row = queue(
        session_factory, message=message, kind="alert", target="a@example.com", target_kind="email"
    )
    assert row is not None and row.id is not None
    with session_scope(session_factory) as session:
        [stored] = list_messages(session)
    assert (stored.kind, stored.target, stored.target_kind) == ("alert", "a@example.com", "email")
    assert (stored.text, stored.blocks, stored.thread_ts) == (
        "hi",
        message["blocks"],
        message["thread_ts"],
    )
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("pending", 0, T0)
    assert stored.created_at == T0 and stored.sent_at is None


def test_the_same_dedupe_key_is_queued_once(session_factory):
    first = queue(session_factory, dedupe_key="alert:r1")
    second = queue(session_factory, dedupe_key="alert:r1", target="C0OTHER")
    assert first is not None and second is None
    queue(session_factory)  # messages without a key are never deduplicated
    queue(session_factory)
    with session_scope(session_factory) as session:
        rows = list_messages(session)
    assert len(rows) == 3
    assert [r.target for r in rows if r.dedupe_key] == ["C0KPI"]


def test_concurrent_enqueues_of_one_key_store_one_row(session_factory):
    results: list[OutboxMessage | None] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(queue(session_factory, dedupe_key="digest:weekly:2026-W48"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 1
    with session_scope(session_factory) as session:
        assert len(list_messages(session)) == 1


def test_bad_targets_are_refused(session_factory):
    with pytest.raises(ValueError, match="target_kind"):
        queue(session_factory, target_kind="team")
    with pytest.raises(ValueError, match="target"):
        queue(session_factory, target="")


def test_claims_take_due_rows_oldest_first_and_count_the_attempt(session_factory):
    later = queue(session_factory, now=T0 + timedelta(minutes=2))
    first = queue(session_factory, now=T0)
    second = queue(session_factory, now=T0)
    future = queue(session_factory, now=T0 + timedelta(hours=1))
    assert later and first and second and future
    with session_scope(session_factory) as session:
        claimed = claim_due(session, now=T0 + timedelta(minutes=5), limit=10)
    assert [r.id for r in claimed] == [first.id, second.id, later.id]
    assert all(r.attempts == 1 and r.status == "pending" for r in claimed)
    with session_scope(session_factory) as session:
        # Claimed rows are leased: not due again until the lease passes.
        assert claim_due(session, now=T0 + timedelta(minutes=6), limit=10) == []
    with session_scope(session_factory) as session:
        again = claim_due(session, now=T0 + timedelta(minutes=11), limit=10)
    # All three leases end together; ties go by age in the queue.
    assert [r.id for r in again] == [later.id, first.id, second.id]
    assert all(r.attempts == 2 for r in again)


def test_a_claim_respects_its_limit(session_factory):
    for _ in range(5):
        queue(session_factory)
    with session_scope(session_factory) as session:
        assert len(claim_due(session, now=T0, limit=2)) == 2
    with session_scope(session_factory) as session:
        assert len(claim_due(session, now=T0, limit=10)) == 3


def test_sent_and_printed_rows_are_never_claimed_again(session_factory):
    sent, printed = queue(session_factory), queue(session_factory)
    assert sent and printed
    with session_scope(session_factory) as session:
        [a, b] = claim_due(session, now=T0, limit=10)
    with session_scope(session_factory) as session:
        mark_sent(session, a, ts="1700000000.000100", channel="D0ANA", now=T0)
        mark_printed(session, b, now=T0)
    with session_scope(session_factory) as session:
        assert claim_due(session, now=T0 + timedelta(days=1), limit=10) == []
        assert [r.id for r in list_messages(session, status="sent")] == [sent.id]
        [row] = list_messages(session, status="printed")
        assert row.id == printed.id and row.sent_at == T0
        [done] = list_messages(session, status="sent")
    assert (done.slack_ts, done.slack_channel, done.sent_at) == ("1700000000.000100", "D0ANA", T0)


def test_backoff_doubles_from_two_seconds_and_stops_at_fifteen_minutes():
    assert [backoff(n).total_seconds() for n in range(1, 11)] == [
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        512,
        900,
    ]
    assert backoff(1000) == timedelta(minutes=15)


def test_each_failure_waits_longer(session_factory):
    queue(session_factory)
    now, waits = T0, []
    for _ in range(4):
        with session_scope(session_factory) as session:
            [row] = claim_due(session, now=now, limit=1)
            mark_retry(session, row, error="internal_error (HTTP 500)", now=now)
        waits.append((row.next_attempt_at - now).total_seconds())
        with session_scope(session_factory) as session:
            assert claim_due(session, now=row.next_attempt_at - timedelta(seconds=1), limit=1) == []
        now = row.next_attempt_at
    assert waits == [2, 4, 8, 16]
    with session_scope(session_factory) as session:
        [stored] = list_messages(session)
    assert (stored.status, stored.attempts, stored.last_error) == (
        "pending",
        4,
        "internal_error (HTTP 500)",
    )


def test_retry_after_is_obeyed_instead_of_the_backoff(session_factory):
    queue(session_factory)
    with session_scope(session_factory) as session:
        [row] = claim_due(session, now=T0, limit=1)
        mark_retry(session, row, error="ratelimited", now=T0, retry_after=timedelta(seconds=30))
    assert row.next_attempt_at == T0 + timedelta(seconds=30)
    with session_scope(session_factory) as session:
        assert claim_due(session, now=T0 + timedelta(seconds=29), limit=1) == []
        assert len(claim_due(session, now=T0 + timedelta(seconds=30), limit=1)) == 1


def test_a_permanent_error_fails_the_row_for_good(session_factory):
    queue(session_factory)
    with session_scope(session_factory) as session:
        [row] = claim_due(session, now=T0, limit=1)
        mark_retry(session, row, error="channel_not_found", now=T0, permanent=True)
    with session_scope(session_factory) as session:
        assert claim_due(session, now=T0 + timedelta(days=1), limit=1) == []
        [failed] = list_messages(session, status="failed")
    assert (failed.attempts, failed.last_error) == (1, "channel_not_found")


def test_the_last_allowed_attempt_fails_the_row(session_factory):
    queue(session_factory)
    now = T0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with session_scope(session_factory) as session:
            [row] = claim_due(session, now=now, limit=1)
            mark_retry(session, row, error="internal_error", now=now)
        assert row.attempts == attempt
        now = row.next_attempt_at
    assert row.status == "failed"
    with session_scope(session_factory) as session:
        assert claim_due(session, now=now + timedelta(days=1), limit=1) == []


def test_released_rows_come_back_at_the_given_time_without_spending_an_attempt(session_factory):
    queue(session_factory)
    with session_scope(session_factory) as session:
        rows = claim_due(session, now=T0, limit=5)
    with session_scope(session_factory) as session:
        release(session, rows, until=T0 + timedelta(seconds=3))
    with session_scope(session_factory) as session:
        assert claim_due(session, now=T0 + timedelta(seconds=2), limit=5) == []
        [row] = claim_due(session, now=T0 + timedelta(seconds=3), limit=5)
    assert row.attempts == 1


def test_list_messages_filters_by_status_newest_first(session_factory):
    ids = [row.id for row in (queue(session_factory) for _ in range(3)) if row]
    with session_scope(session_factory) as session:
        assert [r.id for r in list_messages(session, limit=2)] == ids[::-1][:2]
        assert list_messages(session, status="failed") == []
        with pytest.raises(ValueError, match="status"):
            list_messages(session, status="lost")


def test_concurrent_claimers_never_get_the_same_row(session_factory):
    for _ in range(60):
        queue(session_factory)
    claimed: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def claimer(index: int) -> None:
        barrier.wait()
        while True:
            with session_scope(session_factory) as session:
                rows = claim_due(session, now=T0, limit=3)
            if not rows:
                return
            claimed[index].extend(r.id or 0 for r in rows)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [row_id for ids in claimed for row_id in ids]
    assert len(everything) == 60 and len(set(everything)) == 60


def test_a_claim_never_takes_rows_another_open_claim_holds(session_factory, database_url):
    """PostgreSQL skips the locked rows (SKIP LOCKED); SQLite makes the second claimer wait."""
    for _ in range(4):
        queue(session_factory)
    others: list[int] = []

    def second_claimer() -> None:
        with session_scope(session_factory) as second:
            others.extend(row.id for row in claim_due(second, now=T0, limit=10))

    with session_scope(session_factory) as first:
        held = claim_due(first, now=T0, limit=2)  # still uncommitted: its rows stay locked
        thread = threading.Thread(target=second_claimer)
        thread.start()
        thread.join(timeout=2)  # PostgreSQL answers at once; SQLite waits for this commit
        answered_while_held = not thread.is_alive()
    thread.join(timeout=30)
    assert answered_while_held == database_url.startswith("postgresql")
    assert len(held) == 2 and len(others) == 2
    assert {r.id for r in held}.isdisjoint(others)
