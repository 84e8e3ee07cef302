"""Offline mode end to end: `kpibot serve` without Slack prints what it would send and keeps it.

And the same outbox delivered to (a fake) Slack when the credentials are there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from storage.db import session_scope
from storage.outbox import enqueue
from storage.tables import OutboxMessage
from tests.fake_slack import FakeSlack
from tests.signing import TEST_SLACK_SIGNING_SECRET

MESSAGE = {
    "text": "Acme Corp: NPS 3",
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "Detractor at Acme Corp"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Score 3* &amp; a comment"}},
    ],
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _status(factory, row_id: int) -> str:
    with session_scope(factory) as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.id == row_id)).one()
        return row.status


def test_serve_without_slack_prints_every_queued_message_and_keeps_it(
    database_url, session_factory, tmp_path: Path
):
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KPIBOT_"))}
    environment.update(DATABASE_URL=database_url, KPIBOT_LOG_LEVEL="WARNING")
    server = subprocess.Popen(  # noqa: S603  (our own CLI)
        [sys.executable, "-m", "bot", "serve", f"--port={port}"],
        cwd=tmp_path,  # no .env there
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with session_scope(session_factory) as session:
            row = enqueue(
                session,
                kind="alert",
                target="ana@example.com",
                target_kind="email",
                message=MESSAGE,
            )
            assert row is not None
            row_id = row.id
        deadline = time.monotonic() + 15
        while _status(session_factory, row_id) != "printed" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _status(session_factory, row_id) == "printed"
    finally:
        server.terminate()
        server.wait(timeout=30)
        reader.join(timeout=5)
        server.stdout.close()  # type: ignore[union-attr]
    output = "".join(lines)
    assert "Slack: offline" in output
    assert "Detractor at Acme Corp" in output
    assert "Score 3 & a comment" in output  # readable: no mrkdwn stars or entities
    assert "ana@example.com" in output


def test_with_slack_the_dispatcher_delivers_the_outbox(web_server, session_factory):
    with FakeSlack() as slack:
        slack.add_user("ana@example.com", "U0ANA01", "ana")
        web_server(
            lifespan=True,
            slack_bot_token=slack.token,
            slack_signing_secret=TEST_SLACK_SIGNING_SECRET,
            slack_api_url=slack.base_url,
        )
        with session_scope(session_factory) as session:
            enqueue(
                session,
                kind="alert",
                target="ana@example.com",
                target_kind="email",
                message=MESSAGE,
            )
        [call] = slack.wait_for("chat.postMessage", timeout=10)
    assert call.args["channel"] == "U0ANA01"
    assert call.args["blocks"][0]["text"]["text"] == "Detractor at Acme Corp"
