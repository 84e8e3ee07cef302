"""Group commit: concurrent deliveries share a transaction, yet each gets exactly its own answer."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import event, func, select, text

from bot import web
from storage.apply import IngestConfig, account_lock_key
from storage.db import session_scope
from storage.tables import EventLog, Invoice
from tests.builders import PausedRebuild, make_account, make_fx, make_invoice
from tests.signing import TEST_WEBHOOK_SECRET, standard_headers

WINDOW_MS = 400  # long enough that 20 requests sent at once land in one group
FIRST = 9  # the bad event whose id a good event of a later delivery shares


def _post_together(server: Any, payloads: list[Any]) -> list[httpx.Response]:
    """Post every payload at about the same moment, each from its own thread; the one at
    `FIRST` goes 100 ms ahead of the others (still well inside one group's window)."""
    ready = threading.Barrier(len(payloads))

    def post(position: int) -> httpx.Response:
        body = json.dumps(payloads[position]).encode()
        headers = standard_headers(body, secret=TEST_WEBHOOK_SECRET)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ready.wait()
            if position != FIRST:
                time.sleep(0.1)
            return client.post("/webhooks/kpibot", content=body, headers=headers)

    with ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(post, range(len(payloads))))


def _metric(server: Any, name: str) -> float:
    exposition = httpx.get(server.url + "/metrics").text
    found = re.search(rf'^{name}{{source="kpibot"}} ([0-9.e+]+)$', exposition, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _counts(response: httpx.Response) -> tuple[int, int, int, int]:
    answer = response.json()
    return answer["queued"], answer["duplicate"], answer["ignored"], answer["rejected"]


def _stored(server: Any) -> tuple[int, set[str]]:
    server.settle()  # what was queued is applied
    with session_scope(server.factory) as session:
        logged = session.scalar(select(func.count()).select_from(EventLog))
        invoices = set(session.scalars(select(Invoice.invoice_id)))
    return logged or 0, invoices


def _mixed_deliveries() -> tuple[list[Any], dict[str, Any]]:
    """20 deliveries: good single events, a batch with a bad event in the middle, an ignored
    type, the same event id in two deliveries, and a bad and a good event sharing one id."""
    singles = [make_invoice("2026-01-02", invoice_id=f"inv-{n}") for n in range(14)]
    bad = make_invoice("2026-01-03", invoice_id="inv-bad", amount="-5")
    batch = {
        "events": [
            make_invoice("2026-01-03", invoice_id="inv-b0"),
            bad,
            {
                "id": "t-1",
                "type": "ticket.created",
                "occurred_at": "2026-01-01T00:00:00Z",
                "data": {},
            },
            make_invoice("2026-01-03", invoice_id="inv-b1"),
        ]
    }
    twice = make_invoice("2026-01-04", invoice_id="inv-twice")
    broken = make_invoice("2026-01-05", invoice_id="inv-shared", amount="ten")
    fixed = {**broken, "data": {**broken["data"], "amount": "10.00"}}
    payloads = [*singles[:7], batch, twice, broken, *singles[7:], twice, fixed, make_account()]
    return payloads, {"singles": singles, "batch": batch, "bad": bad, "twice": twice}


def _check_answers(responses: list[httpx.Response], server: Any) -> None:
    by_position = dict(enumerate(responses))
    singles = [by_position[n] for n in (*range(7), *range(10, 17))]
    for response in singles:
        assert response.status_code == 200, response.text
        assert _counts(response) == (1, 0, 0, 0)
    batch = by_position[7]
    assert batch.status_code == 422
    assert _counts(batch) == (2, 0, 1, 1)
    [rejection] = batch.json()["rejections"]
    assert rejection["index"] == 1  # its place in its own body, not in the group
    assert rejection["reason"].startswith("data.amount:")
    first, second = _counts(by_position[8]), _counts(by_position[17])
    assert sorted([first, second]) == [(0, 1, 0, 0), (1, 0, 0, 0)]  # applied once
    broken, fixed = by_position[FIRST], by_position[18]
    assert broken.status_code == 422 and _counts(broken) == (0, 0, 0, 1)
    assert _counts(fixed) == (1, 0, 0, 0)  # a bad twin in an earlier delivery never loses it
    assert _counts(by_position[19]) == (1, 0, 0, 0)

    logged, invoices = _stored(server)
    assert logged == 14 + 4 + 1 + 1 + 1  # every distinct id once (the bad one as rejected)
    assert invoices == {f"inv-{n}" for n in range(14)} | {
        "inv-b0",
        "inv-b1",
        "inv-twice",
        "inv-shared",
    }


def test_twenty_concurrent_deliveries_each_get_their_own_answer(web_server):
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, webhook_group_window_ms=WINDOW_MS)
    payloads, _ = _mixed_deliveries()

    responses = _post_together(server, payloads)

    _check_answers(responses, server)
    groups = _metric(server, "kpibot_webhook_group_deliveries_count")
    assert groups < len(payloads)  # they were stored together, not one by one
    assert _metric(server, "kpibot_webhook_group_fallbacks_total") == 0


def test_batches_that_share_identical_events_are_stored_together_and_apply_each_once(web_server):
    """Concurrent batches that resend the same events (the sender's retries, or several senders
    of one stream) share a transaction: each shared event is applied once, and every other copy
    of it is answered as a duplicate, as when the batches come one after the other."""
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, webhook_group_window_ms=WINDOW_MS)
    shared = [make_invoice("2026-01-02", invoice_id=f"inv-shared-{n}") for n in range(3)]
    payloads = [
        {
            "events": [
                *shared,
                *(make_invoice("2026-01-03", invoice_id=f"inv-{k}-{n}") for n in range(8)),
            ]
        }
        for k in range(8)
    ]

    responses = _post_together(server, payloads)

    answers = [response.json() for response in responses]
    assert all(response.status_code == 200 for response in responses), answers
    assert sum(a["applied"] + a["queued"] for a in answers) == 3 + 8 * 8
    assert sum(a["duplicate"] for a in answers) == 7 * 3
    assert _metric(server, "kpibot_webhook_group_deliveries_count") <= 3  # not one per batch
    assert _stored(server) == (
        3 + 8 * 8,
        {f"inv-shared-{n}" for n in range(3)}
        | {f"inv-{k}-{n}" for k in range(8) for n in range(8)},
    )


def test_deliveries_that_share_an_id_with_different_bodies_are_stored_apart(web_server):
    """Only an identical valid copy is safe to drop as a duplicate inside a group: a different
    copy of the id could be the fix of a first copy that applying refuses, so it waits."""
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, webhook_group_window_ms=WINDOW_MS)
    first = make_invoice("2026-01-02", invoice_id="inv-x", amount="10.00")
    second = {**first, "data": {**first["data"], "amount": "12.00"}}

    responses = _post_together(server, [first, second])

    assert sorted(_counts(r) for r in responses) == [(0, 1, 0, 0), (1, 0, 0, 0)]
    assert _metric(server, "kpibot_webhook_group_deliveries_count") == 2
    assert _stored(server) == (1, {"inv-x"})


def test_a_failed_group_is_stored_again_delivery_by_delivery(web_server):
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, webhook_group_window_ms=WINDOW_MS)
    payloads, _ = _mixed_deliveries()
    failed: list[int] = []

    def fail_groups(_connection, _cursor, statement, parameters, context, _many):
        # A database failure that strikes every transaction storing more than one delivery.
        if statement.lstrip().upper().startswith("INSERT INTO EVENT_LOG") and (
            _rows(parameters, context) > 4  # the largest delivery has 4 events
        ):
            failed.append(_rows(parameters, context))
            raise RuntimeError("injected failure of a grouped transaction")

    event.listen(server.engine, "before_cursor_execute", fail_groups)
    try:
        responses = _post_together(server, payloads)
    finally:
        event.remove(server.engine, "before_cursor_execute", fail_groups)

    assert failed  # the grouped transaction did fail
    _check_answers(responses, server)
    assert _metric(server, "kpibot_webhook_group_fallbacks_total") >= 1


def test_without_grouping_each_delivery_is_its_own_transaction(web_server):
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, webhook_group_max_events=1)
    payloads, _ = _mixed_deliveries()

    responses = _post_together(server, payloads)

    _check_answers(responses, server)
    assert _metric(server, "kpibot_webhook_group_deliveries_count") == len(payloads)


def _rows(parameters: Any, context: Any) -> int:
    """How many event log rows one INSERT writes: one array per column on PostgreSQL, one
    parameter set per row on SQLite."""
    if isinstance(parameters, dict) and isinstance(parameters.get("event_id"), list):
        return len(parameters["event_id"])
    if context.compiled is None:  # SQL run as text (SQLite's bulk writes): a tuple per row
        return len(parameters) if isinstance(parameters, list) else 1
    return len(context.compiled_parameters)


def _lock_error(engine: Any) -> Exception:
    """The error each database raises when a transaction cannot get past a lock."""
    if engine.dialect.name == "postgresql":
        import psycopg

        return psycopg.errors.DeadlockDetected("deadlock detected (injected)")
    import sqlite3

    return sqlite3.OperationalError("database is locked")


def _fail_event_log_inserts(server: Any, times: int) -> list[int]:
    failed: list[int] = []

    def fail(_connection, _cursor, statement, _parameters, _context, _many):
        if statement.lstrip().upper().startswith("INSERT INTO EVENT_LOG") and len(failed) < times:
            failed.append(1)
            raise _lock_error(server.engine)

    event.listen(server.engine, "before_cursor_execute", fail)
    return failed


def test_a_transient_lock_is_retried_and_the_delivery_applied(web_server):
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    failed = _fail_event_log_inserts(server, times=1)

    [response] = _post_together(server, [make_invoice("2026-01-02", invoice_id="inv-r")])

    assert failed == [1]
    assert response.status_code == 200 and _counts(response) == (1, 0, 0, 0)
    assert _stored(server) == (1, {"inv-r"})


def test_a_database_that_stays_locked_answers_503_with_retry_after(web_server):
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    _fail_event_log_inserts(server, times=1_000)

    [response] = _post_together(server, [make_invoice("2026-01-02", invoice_id="inv-l")])

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert _stored(server) == (0, set())


def test_a_large_delivery_during_a_rebuild_is_answered_and_applied_once(web_server):
    """A group of 50 events or more is applied before its answer, except while `kpibot rebuild`
    runs on PostgreSQL: it is then queued, answered at once, and applied after the rebuild. On
    SQLite the rebuild is the one writer: the delivery waits for it, then is applied."""
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    postgresql = server.engine.dialect.name == "postgresql"
    [first] = _post_together(server, [make_invoice("2026-01-02", invoice_id="inv-0")])
    assert first.status_code == 200
    server.settle()
    batch = {"events": [make_invoice("2026-01-03", invoice_id=f"inv-{n}") for n in range(1, 61)]}
    body = json.dumps(batch).encode()
    headers = standard_headers(body, secret=TEST_WEBHOOK_SECRET)
    with ThreadPoolExecutor(1) as pool, PausedRebuild(server.factory, IngestConfig()) as paused:
        posted = pool.submit(
            httpx.post, server.url + "/webhooks/kpibot", content=body, headers=headers, timeout=60
        )
        if postgresql:
            answer = posted.result(10)  # while the rebuild still runs
            assert answer.json()["queued"] == 60
        else:
            time.sleep(0.5)
            assert not posted.done()
        assert paused.resume() == 1
        answer = posted.result(60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied" if not postgresql else "queued"] == 60
    assert _stored(server) == (61, {f"inv-{n}" for n in range(61)})


def test_a_large_delivery_with_an_amount_the_store_cannot_hold_loses_only_that_event(web_server):
    """10^12 EUR at 10^9 USD per EUR passes the schema but no money column holds it: the batch,
    applied before its answer, fails; it is queued instead and only that event is rejected."""
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    [rate] = _post_together(server, [make_fx("2026-01-01", "1000000000")])
    assert rate.status_code == 200
    good = [make_invoice("2026-01-02", invoice_id=f"inv-{n}") for n in range(60)]
    huge = make_invoice("2026-01-02", invoice_id="inv-huge", amount="1000000000000", currency="EUR")

    [answer] = _post_together(server, [{"events": [*good[:30], huge, *good[30:]]}])

    assert answer.status_code == 200, answer.text
    assert answer.json()["queued"] == 61
    assert _stored(server) == (1 + 61, {f"inv-{n}" for n in range(60)})
    with session_scope(server.factory) as session:
        status, reason = session.execute(
            select(EventLog.status, EventLog.reason).where(EventLog.event_id == huge["id"])
        ).one()
    assert status == "rejected" and reason.startswith("could not be applied")


def test_a_lock_that_stays_taken_is_answered_before_the_sender_gives_up(web_server, monkeypatch):
    """Providers wait 10 to 30 s for an answer. SQLite: another writer holds the store's one
    write lock (a rebuild, say); each delivery of a group must not wait 30 s per try, nor be
    tried again alone: every one is answered 503 within the bounded tries, and nothing is
    stored. PostgreSQL: another transaction holds the accounts of a large group; the group is
    queued instead of waiting, and applied once the accounts are free."""
    monkeypatch.setattr(web, "LOCK_WAIT_SECONDS", 0.3)
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    if server.engine.dialect.name == "sqlite":
        holder = sqlite3.connect(server.engine.url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            singles = [make_invoice("2026-01-02", invoice_id=f"inv-{n}") for n in range(3)]
            responses = _post_together(server, singles)
            waited = time.monotonic() - started
        finally:
            holder.rollback()
            holder.close()
        assert [r.status_code for r in responses] == [503] * 3
        assert {r.headers["retry-after"] for r in responses} == {"1"}
        assert waited < 5  # 3 tries of 0.3 s, where each delivery alone would wait 3 × 30 s
        assert _stored(server) == (0, set())
        [again] = _post_together(server, singles[:1])
        assert again.status_code == 200
        return
    batch = {"events": [make_invoice("2026-01-02", invoice_id=f"inv-{n}") for n in range(60)]}
    with server.engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": account_lock_key("acc-1")})
        started = time.monotonic()
        [response] = _post_together(server, [batch])
        waited = time.monotonic() - started
        assert response.status_code == 200 and _counts(response) == (60, 0, 0, 0)
        assert waited < 5
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": account_lock_key("acc-1")})
        holder.commit()
    assert _stored(server) == (60, {f"inv-{n}" for n in range(60)})
