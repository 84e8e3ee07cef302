"""When the database or the code fails: health checks, 503s a sender retries, counted 500s."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text

from storage.db import make_engine, session_scope
from storage.migrate import upgrade
from storage.sources.native import NativeSource
from storage.tables import EventLog
from tests.builders import make_subscription
from tests.signing import TEST_WEBHOOK_SECRET, standard_headers


def post(url: str, body: bytes) -> httpx.Response:
    headers = standard_headers(body, secret=TEST_WEBHOOK_SECRET)
    return httpx.post(url + "/webhooks/kpibot", content=body, headers=headers, timeout=30)


def event_body(day: str = "2026-01-01") -> bytes:
    return json.dumps(make_subscription(day)).encode()


def test_health_answers_at_once_while_a_writer_holds_the_database(
    web_server: Any, engine: Engine
) -> None:
    """A long import or rebuild holds SQLite's write lock: the probe must not wait for it (30 s,
    then "unreachable": a load balancer would take a healthy server out)."""
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with engine.begin() as connection:  # BEGIN IMMEDIATE on SQLite: the write lock
            connection.execute(text("DELETE FROM event_log"))
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        answer = httpx.get(server.url + "/healthz", timeout=5)
        assert answer.status_code == 200, answer.text
    finally:
        release.set()
        thread.join()


def test_a_removed_sqlite_file_fails_health_and_refuses_deliveries(
    web_server: Any, tmp_path: Path
) -> None:
    """Deleting the file under a running server: events committed to it would vanish with it,
    so none is acknowledged, and the health check tells the orchestrator to restart kpibot."""
    path = tmp_path / "doomed.db"
    upgrade(make_engine(f"sqlite:///{path}"))
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, database=f"sqlite:///{path}")
    assert post(server.url, event_body("2026-01-01")).status_code == 200
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    for leftover in tmp_path.glob("doomed.db*"):
        leftover.unlink()
    health = httpx.get(server.url + "/healthz", timeout=5)
    assert health.status_code == 503
    assert health.json()["database"] == "file removed"
    refused = post(server.url, event_body("2026-02-01"))
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "5"


def test_an_unreachable_database_is_a_503_to_retry_not_a_500(web_server: Any) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:1/kpibot?connect_timeout=2"
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, database=nowhere)
    refused = post(server.url, event_body())
    assert refused.status_code == 503, refused.text
    assert "nothing was stored" in refused.json()["error"]
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 503


def test_a_bug_is_a_500_that_metrics_count(web_server: Any, monkeypatch: Any) -> None:
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)

    def broken(*_args: Any) -> Any:
        raise RuntimeError("a bug in a mapping")

    monkeypatch.setattr(NativeSource, "events", broken)
    failed = post(server.url, event_body())
    assert failed.status_code == 500
    assert "nothing was stored" in failed.json()["error"]
    exposition = httpx.get(server.url + "/metrics").text
    assert 'kpibot_webhook_deliveries_total{source="kpibot",status="500"} 1.0' in exposition
    with session_scope(server.factory) as session:
        assert session.scalars(select(EventLog)).first() is None


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_body_in_another_unicode_encoding_is_a_400(web_server: Any, encoding: str) -> None:
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    refused = post(server.url, json.dumps(make_subscription("2026-01-01")).encode(encoding))
    assert refused.status_code == 400, refused.text
    assert "UTF-8" in refused.json()["error"]


def test_a_delivery_cut_by_the_servers_stop_is_a_503_to_send_again_not_a_500(
    web_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender still sending its body when the grace period ends gets a 503 (providers send
    again), and the operator's log says so in one line, without a traceback nor a 500."""
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET, shutdown_grace=0.3)
    body = event_body()
    headers = standard_headers(body, secret=TEST_WEBHOOK_SECRET)
    answer = server.stopped_while_sending("/webhooks/kpibot", headers, body)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 503 Service Unavailable", answer
    head_lines, _, payload = rest.partition(b"\r\n\r\n")
    assert b"retry-after: 5" in head_lines.lower()
    assert json.loads(payload)["error"].startswith("the server is stopping")
    assert "cut by the server's stop; answered 503" in caplog.text
    assert "timeout graceful shutdown exceeded" in caplog.text  # (uvicorn's: the log is seen)
    assert not any(r.exc_info for r in caplog.records) and "Exception in ASGI" not in caplog.text
    with session_scope(server.factory) as session:
        assert session.scalars(select(EventLog)).first() is None


def test_a_delivery_still_waiting_for_its_group_at_the_stop_is_not_stored_after_its_503(
    web_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Answered 503 means: send it again. The group it waited for is not stored afterwards by
    the stop's own flush of the waiting groups (the app's shut-down, as `kpibot serve` runs)."""
    server = web_server(
        webhook_secret=TEST_WEBHOOK_SECRET,
        shutdown_grace=0.3,
        lifespan=True,
        webhook_group_window_ms=1_000,  # the first group waits this long for others
    )
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(post, server.url, event_body())
        server.wait_in_flight()
        time.sleep(0.1)  # read, parsed, and waiting for its group (a second)
        server.stop()
        answer = sent.result(timeout=10)
    assert answer.status_code == 503, answer.text
    assert "cut by the server's stop; answered 503" in caplog.text
    time.sleep(1.5)  # past the group's window: it would have been stored by now
    with session_scope(server.factory) as session:
        assert session.scalars(select(EventLog)).first() is None
