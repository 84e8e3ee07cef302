"""Delivery through the outbox (bot/notifier.py) to a fake Slack over HTTP, and to the console."""

from __future__ import annotations

import io
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry import all_builtin_retry_handlers
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from bot.notifier import ConsoleNotifier, SlackNotifier
from storage.db import make_session_factory, session_scope, waiting_at_most
from storage.outbox import enqueue, list_messages
from storage.tables import OutboxMessage
from tests.fake_slack import FakeSlack

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Detractor at Acme"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Score 3/10* — call them today"}},
]
MESSAGE = {"text": "Detractor at Acme: 3/10", "blocks": BLOCKS}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A started fake Slack with Ana as a workspace member."""
    with FakeSlack() as fake:
        fake.add_user("ana@example.com", "U0ANA", "ana")
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    """A real WebClient on the fake, with slack_sdk's default retry handlers."""
    return WebClient(token=slack.token, base_url=slack.base_url, timeout=5)


def notifier(factory: sessionmaker[Session], client: WebClient, **options: Any) -> SlackNotifier:
    """A Slack notifier whose clock stands at T0."""
    return SlackNotifier(factory, client, clock=lambda: T0, **options)


def rows(factory: sessionmaker[Session]) -> list[OutboxMessage]:
    """Every outbox row, oldest first."""
    with session_scope(factory) as session:
        return list_messages(session, limit=1000)[::-1]


def test_a_sent_message_arrives_with_its_blocks_and_is_marked_sent(session_factory, slack, client):
    notifier(session_factory, client).send(
        kind="kpi", target="C0KPI", target_kind="channel", message=MESSAGE
    )
    [call] = slack.calls_to("chat.postMessage")
    assert call.args["channel"] == "C0KPI"
    assert call.args["blocks"] == BLOCKS and call.args["text"] == MESSAGE["text"]
    [row] = rows(session_factory)
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 1, T0, None)
    assert (row.slack_channel, row.slack_ts) == ("C0KPI", call.response["ts"])


def test_a_message_is_sent_once_per_dedupe_key(session_factory, slack, client):
    sender = notifier(session_factory, client)
    for _ in range(3):
        sender.send(
            kind="alert",
            target="C0KPI",
            target_kind="channel",
            message=MESSAGE,
            dedupe_key="alert:response-1",
        )
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert len(rows(session_factory)) == 1


def test_an_email_is_resolved_once_and_posted_as_a_direct_message(session_factory, slack, client):
    sender = notifier(session_factory, client)
    for _ in range(2):
        sender.send(kind="alert", target="Ana@Example.com", target_kind="email", message=MESSAGE)
    assert len(slack.calls_to("users.lookupByEmail")) == 1  # cached
    assert [c.args["channel"] for c in slack.calls_to("chat.postMessage")] == ["U0ANA", "U0ANA"]
    assert [(r.status, r.slack_channel) for r in rows(session_factory)] == [("sent", "D0ANA")] * 2


def test_a_user_id_is_posted_to_directly(session_factory, slack, client):
    notifier(session_factory, client).send(
        kind="digest", target="U0ANA", target_kind="user", message={**MESSAGE, "thread_ts": None}
    )
    [call] = slack.calls_to("chat.postMessage")
    assert call.args["channel"] == "U0ANA" and "thread_ts" not in call.args
    assert rows(session_factory)[0].slack_channel == "D0ANA"


def test_a_reply_goes_to_its_thread(session_factory, slack, client):
    message = {**MESSAGE, "thread_ts": "1700000000.000100"}
    notifier(session_factory, client).send(
        kind="alert", target="C0KPI", target_kind="channel", message=message
    )
    assert slack.calls_to("chat.postMessage")[0].args["thread_ts"] == "1700000000.000100"


def test_a_home_view_is_published(session_factory, slack, client):
    view = {"type": "home", "blocks": BLOCKS}
    notifier(session_factory, client).send(
        kind="home", target="ana@example.com", target_kind="email", message=view
    )
    [call] = slack.calls_to("views.publish")
    assert call.args["user_id"] == "U0ANA" and call.args["view"]["blocks"] == BLOCKS
    assert slack.calls_to("chat.postMessage") == []
    assert (rows(session_factory)[0].status, rows(session_factory)[0].slack_channel) == (
        "sent",
        "U0ANA",
    )


def test_a_429_waits_for_retry_after_then_sends(session_factory, slack, client):
    slack.fail_next("chat.postMessage", retry_after=3)
    sender = notifier(session_factory, client)
    sender.send(kind="alert", target="C0KPI", target_kind="channel", message=MESSAGE)
    [row] = rows(session_factory)
    assert (row.status, row.last_error) == ("pending", "ratelimited (HTTP 429)")
    assert row.next_attempt_at == T0 + timedelta(seconds=3)

    assert sender.deliver_due(T0 + timedelta(seconds=2)) == 0
    assert len(slack.calls_to("chat.postMessage")) == 1  # Retry-After obeyed: no call before
    assert sender.deliver_due(T0 + timedelta(seconds=3)) == 1
    first, second = slack.calls_to("chat.postMessage")
    assert (first.status, second.response["ok"]) == (429, True)
    [row] = rows(session_factory)
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_429_holds_back_the_rest_of_the_batch(session_factory, slack, client):
    with session_scope(session_factory) as session:
        for number in range(3):
            enqueue(
                session,
                kind="kpi",
                target="C0KPI",
                target_kind="channel",
                message={"text": f"message {number}"},
                now=T0,
            )
    slack.fail_next("chat.postMessage", retry_after=5)
    sender = notifier(session_factory, client)
    assert sender.deliver_due(T0) == 0
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert [(r.attempts, r.next_attempt_at) for r in rows(session_factory)] == [
        (1, T0 + timedelta(seconds=5)),
        (0, T0 + timedelta(seconds=5)),
        (0, T0 + timedelta(seconds=5)),
    ]
    assert sender.deliver_due(T0 + timedelta(seconds=5)) == 3
    texts = [c.args["text"] for c in slack.calls_to("chat.postMessage")[1:]]
    assert texts == ["message 0", "message 1", "message 2"]


def test_a_500_is_retried_after_a_backoff(session_factory, slack, client):
    slack.fail_next("chat.postMessage", status=500)
    sender = notifier(session_factory, client)
    sender.send(kind="alert", target="C0KPI", target_kind="channel", message=MESSAGE)
    [row] = rows(session_factory)
    assert (row.status, row.last_error) == ("pending", "internal_error (HTTP 500)")
    assert row.next_attempt_at == T0 + timedelta(seconds=2)
    assert sender.deliver_due(T0 + timedelta(seconds=1)) == 0
    assert sender.deliver_due(T0 + timedelta(seconds=2)) == 1
    assert rows(session_factory)[0].status == "sent"


def test_an_unreachable_server_is_retried(session_factory):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # No connection retry inside slack_sdk: the outbox's own retry is what is tested.
    client = WebClient(
        token="xoxb-test-token", base_url=f"http://127.0.0.1:{port}/", retry_handlers=[]
    )
    notifier(session_factory, client).send(
        kind="alert", target="C0KPI", target_kind="channel", message=MESSAGE
    )
    [row] = rows(session_factory)
    assert row.status == "pending" and (row.last_error or "").startswith("URLError")
    assert "xoxb" not in (row.last_error or "")


def test_channel_not_found_sends_the_message_to_the_fallback_channel(
    session_factory, slack, client
):
    slack.missing_channels.add("C0GONE")
    sender = notifier(session_factory, client, fallback_channel="C0FALLBACK")
    sender.send(
        kind="alert",
        target="C0GONE",
        target_kind="channel",
        message=MESSAGE,
        dedupe_key="alert:response-1",
    )
    gone, fallback = slack.calls_to("chat.postMessage")
    assert gone.response["error"] == "channel_not_found"
    assert fallback.args["channel"] == "C0FALLBACK" and fallback.args["blocks"] == BLOCKS
    original, copy = rows(session_factory)
    assert original.status == "failed" and original.attempts == 1
    assert (
        original.last_error
        == f"channel_not_found; sent to the fallback channel as outbox #{copy.id}"
    )
    assert (copy.status, copy.target, copy.kind) == ("sent", "C0FALLBACK", "alert")
    assert sender.deliver_due(T0 + timedelta(days=1)) == 0  # never retried, never sent twice
    assert len(slack.calls_to("chat.postMessage")) == 2


def test_channel_not_found_without_a_fallback_fails_for_good(session_factory, slack, client):
    slack.fail_next("chat.postMessage", error="channel_not_found")
    sender = notifier(session_factory, client)
    sender.send(kind="kpi", target="C0KPI", target_kind="channel", message=MESSAGE)
    [row] = rows(session_factory)
    assert (row.status, row.last_error) == ("failed", "channel_not_found")
    assert sender.deliver_due(T0 + timedelta(days=1)) == 0
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_an_unknown_email_goes_to_the_fallback_channel(session_factory, slack, client):
    sender = notifier(session_factory, client, fallback_channel="C0FALLBACK")
    sender.send(kind="alert", target="left@example.com", target_kind="email", message=MESSAGE)
    [call] = slack.calls_to("chat.postMessage")
    assert call.args["channel"] == "C0FALLBACK"
    original, copy = rows(session_factory)
    assert original.status == "failed" and (original.last_error or "").startswith("users_not_found")
    assert copy.status == "sent"


def test_an_unknown_email_without_a_fallback_fails_for_good(session_factory, slack, client):
    notifier(session_factory, client).send(
        kind="alert", target="left@example.com", target_kind="email", message=MESSAGE
    )
    assert slack.calls_to("chat.postMessage") == []
    [row] = rows(session_factory)
    assert (row.status, row.last_error) == ("failed", "users_not_found")


def test_a_missing_fallback_channel_fails_without_looping(session_factory, slack, client):
    slack.missing_channels.update({"C0GONE", "C0FALLBACK"})
    notifier(session_factory, client, fallback_channel="C0FALLBACK").send(
        kind="alert", target="C0GONE", target_kind="channel", message=MESSAGE
    )
    assert [r.status for r in rows(session_factory)] == ["failed", "failed"]
    assert len(slack.calls_to("chat.postMessage")) == 2


def test_a_malformed_message_fails_for_good_without_a_fallback(session_factory, slack, client):
    slack.fail_next("chat.postMessage", error="invalid_blocks")
    notifier(session_factory, client, fallback_channel="C0FALLBACK").send(
        kind="kpi", target="C0KPI", target_kind="channel", message=MESSAGE
    )
    [row] = rows(session_factory)
    assert (row.status, row.last_error) == ("failed", "invalid_blocks")
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_two_replicas_deliver_each_queued_message_once(session_factory, slack, client):
    with session_scope(session_factory) as session:
        for number in range(30):
            enqueue(
                session,
                kind="alert",
                target="C0KPI",
                target_kind="channel",
                message={"text": f"alert {number}"},
                now=T0,
            )
    replicas = [notifier(session_factory, client, batch_size=4) for _ in range(2)]
    barrier = threading.Barrier(2)
    delivered: list[int] = []

    def run(replica: SlackNotifier) -> None:
        barrier.wait()
        delivered.append(replica.deliver_due(T0))

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    texts = sorted(c.args["text"] for c in slack.calls_to("chat.postMessage"))
    assert texts == sorted(f"alert {n}" for n in range(30))
    assert sum(delivered) == 30
    assert {r.status for r in rows(session_factory)} == {"sent"}


def test_a_client_that_would_hide_rate_limits_is_refused(session_factory, slack):
    client = WebClient(
        token=slack.token, base_url=slack.base_url, retry_handlers=all_builtin_retry_handlers()
    )
    with pytest.raises(ValueError, match="rate limits"):
        SlackNotifier(session_factory, client)


def test_the_console_shows_each_message_once_and_keeps_it_printed(session_factory):
    stream = io.StringIO()
    console = ConsoleNotifier(session_factory, stream, width=60, clock=lambda: T0)
    for _ in range(2):
        console.send(
            kind="alert",
            target="ana@example.com",
            target_kind="email",
            message=MESSAGE,
            dedupe_key="alert:response-1",
        )
    heading, *body = stream.getvalue().split("\n")
    assert heading.startswith("── 2026-11-23 09:00:00 UTC · alert → ana@example.com ──")
    assert len(heading) == 60
    assert (
        "\n".join(body).strip()
        == "Detractor at Acme\n═════════════════\n\nScore 3/10 — call them today"
    )
    assert stream.getvalue().count("── 2026") == 1
    [row] = rows(session_factory)
    assert (row.status, row.sent_at, row.target_kind) == ("printed", T0, "email")


def test_the_console_names_channels_and_users_and_renders_home_views(session_factory):
    stream = io.StringIO()
    console = ConsoleNotifier(session_factory, stream, clock=lambda: T0)
    console.send(kind="kpi", target="C0KPI", target_kind="channel", message={"text": "MRR *up*"})
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}],
    }
    console.send(kind="home", target="U0ANA", target_kind="user", message=home)
    output = stream.getvalue()
    assert "· kpi → #C0KPI ─" in output and "\nMRR up\n" in output
    assert "· home → @U0ANA ─" in output and "\nHi\n" in output


def test_the_console_prints_messages_queued_elsewhere(session_factory):
    with session_scope(session_factory) as session:
        enqueue(
            session,
            kind="alert",
            target="C0KPI",
            target_kind="channel",
            message={"text": "queued with its survey response"},
            now=T0,
        )
    stream = io.StringIO()
    console = ConsoleNotifier(session_factory, stream, clock=lambda: T0)
    assert console.deliver_due() == 1
    assert console.deliver_due() == 0
    assert "queued with its survey response" in stream.getvalue()
    assert rows(session_factory)[0].status == "printed"


@pytest.mark.parametrize("kind", ["slack", "console"])
def test_a_poll_of_an_outbox_with_nothing_due_takes_no_lock(engine, slack, client, kind):
    """Deliverers poll every second. With nothing due, a poll must not wait for what claiming
    needs: SQLite's one write lock, held by a webhook group, an import or a rebuild for minutes.
    (On PostgreSQL claiming takes a table lock that nothing in kpibot blocks; the test blocks it
    with a stronger one, so that the check runs on both databases.)"""
    with session_scope(make_session_factory(engine)) as session:
        enqueue(session, kind="kpi", target="C0KPI", target_kind="channel", message=MESSAGE, now=T0)
    impatient = make_session_factory(waiting_at_most(engine, 0.3))
    deliverer = (
        notifier(impatient, client)
        if kind == "slack"
        else ConsoleNotifier(impatient, io.StringIO(), clock=lambda: T0)
    )
    later = T0 - timedelta(minutes=1)  # the queued row is not due yet then
    with _outbox_locked(engine):
        started = time.monotonic()
        assert deliverer.deliver_due(later) == 0
        assert time.monotonic() - started < 0.3
    assert deliverer.deliver_due(T0) == 1  # and once due, it is claimed and delivered
    assert [r.status for r in rows(impatient)] == ["sent" if kind == "slack" else "printed"]


@contextmanager
def _outbox_locked(engine: Engine) -> Iterator[None]:
    """Hold what claiming outbox rows needs, from another connection, until the block ends."""
    if engine.dialect.name == "sqlite":
        holder = sqlite3.connect(engine.url.database or "", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    with engine.connect() as connection:
        connection.execute(text("LOCK TABLE outbox IN EXCLUSIVE MODE"))  # reads pass
        try:
            yield
        finally:
            connection.rollback()
