"""POST /webhooks/kpibot over real HTTP: every rule of SPEC.md's webhook section."""

from __future__ import annotations

import asyncio
import gzip
import json
import select as readiness  # (`select` is SQLAlchemy's here)
import socket
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.settings import Settings
from bot.web import create_web
from storage.db import make_engine, make_session_factory, session_scope
from storage.tables import Account, EventLog, Invoice, MrrMovement
from tests.builders import make_account, make_invoice, make_subscription
from tests.signing import TEST_WEBHOOK_SECRET, standard_headers


def post(
    server,
    payload,
    *,
    secret=TEST_WEBHOOK_SECRET,
    at=None,
    raw=None,
    path="/webhooks/kpibot",
    settle=True,
):
    """Post a signed body; by default, wait until what it queued is applied."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = standard_headers(body, secret=secret, at=at)
    response = httpx.post(server.url + path, content=body, headers=headers, timeout=30)
    if settle:
        server.settle()
    return response


def count(server, table, *where):
    with session_scope(server.factory) as session:
        return session.scalar(select(func.count()).select_from(table).where(*where))


@pytest.fixture
def server(web_server):
    return web_server(webhook_secret=TEST_WEBHOOK_SECRET)


def test_a_signed_event_is_answered_once_logged_then_applied(server):
    response = post(server, make_subscription("2026-01-01"), settle=False)
    assert response.status_code == 200, response.text
    assert response.json()["queued"] == 1
    assert count(server, EventLog) == 1  # committed before the answer
    server.settle()
    assert count(server, EventLog, EventLog.status == "applied") == 1
    assert count(server, MrrMovement) == 1


def test_a_batch_is_counted_event_by_event(server):
    batch = {
        "events": [make_account(), make_subscription("2026-01-01"), make_invoice("2026-01-02")]
    }
    assert post(server, batch).json() == {
        "applied": 0,
        "queued": 3,
        "duplicate": 0,
        "ignored": 0,
        "rejected": 0,
        "rejections": [],
    }


def test_a_batch_of_50_events_or_more_is_applied_before_the_answer(server):
    invoices = [make_invoice("2026-01-02", invoice_id=f"inv-b{n}") for n in range(60)]
    response = post(server, {"events": invoices}, settle=False)
    assert (response.json()["applied"], response.json()["queued"]) == (60, 0)
    assert count(server, Invoice) == 60  # applied in the group's own transaction
    assert count(server, EventLog, EventLog.status == "applied") == 60
    assert server.app.state.apply_worker.backlog == 0


def test_another_secret_is_refused_and_nothing_is_stored(server):
    other = "whsec_" + "b3RoZXItc2VjcmV0LW5vdC1rcGlib3Qtc2VjcmV0"
    response = post(server, make_subscription("2026-01-01"), secret=other)
    assert response.status_code == 401
    assert count(server, EventLog) == 0


def test_missing_signature_headers_are_refused(server):
    body = json.dumps(make_subscription("2026-01-01")).encode()
    response = httpx.post(server.url + "/webhooks/kpibot", content=body)
    assert response.status_code == 401
    assert count(server, EventLog) == 0


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_replayed_or_future_signature_is_refused(server, offset):
    response = post(server, make_subscription("2026-01-01"), at=datetime.now(UTC) + offset)
    assert response.status_code == 401
    assert count(server, EventLog) == 0


def test_a_tampered_body_is_refused(server):
    body = json.dumps(make_invoice("2026-01-01", amount="10.00")).encode()
    headers = standard_headers(body)
    forged = body.replace(b"10.00", b"99.00")
    response = httpx.post(server.url + "/webhooks/kpibot", content=forged, headers=headers)
    assert response.status_code == 401
    assert count(server, Invoice) == 0


def test_a_body_over_1_mib_is_413(server):
    event = make_account(attributes={"notes": "x" * (2 * 1024 * 1024)})
    response = post(server, event)
    assert response.status_code == 413
    assert count(server, EventLog) == 0


def test_malformed_json_is_400(server):
    response = post(server, None, raw=b'{"id": "e1", "type": ')
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]


def test_an_integer_past_64_bits_stays_exact(server):
    # Some JSON decoders turn such an integer into a float (orjson does, silently).
    event = make_account("acc-big", name="Big")
    event["data"]["attributes"] = {"seats_ever": 2**70 + 1}
    response = post(server, event)
    assert response.status_code == 200, response.text
    with session_scope(server.factory) as session:
        account = session.get(Account, "acc-big")
        assert account is not None and account.attributes == {"seats_ever": 2**70 + 1}


def test_a_schema_violation_is_422_with_the_path_and_kept_for_replay(server):
    response = post(server, make_invoice("2026-01-01", amount="-5"))
    assert response.status_code == 422
    [rejection] = response.json()["rejections"]
    assert rejection["reason"].startswith("data.amount:")
    assert count(server, EventLog, EventLog.status == "rejected") == 1


def test_a_rejected_event_sent_again_fixed_takes_its_place_and_is_applied(server):
    broken = make_invoice("2026-01-01", amount="-5", invoice_id="inv-fix")
    assert post(server, broken).status_code == 422
    fixed = {**broken, "data": {**broken["data"], "amount": "5.00"}}
    response = post(server, {"events": [fixed, make_invoice("2026-01-02")]})
    assert (response.status_code, response.json()["queued"]) == (200, 2)
    assert count(server, EventLog) == 2  # the fixed event took the rejected row's place
    assert count(server, EventLog, EventLog.status == "applied") == 2
    assert count(server, Invoice, Invoice.invoice_id == "inv-fix") == 1


def test_a_known_event_id_is_200_and_counted_once(server):
    event = make_invoice("2026-01-01", invoice_id="inv-9")
    assert post(server, event).json()["queued"] == 1
    again = post(server, event)
    assert again.status_code == 200 and again.json()["duplicate"] == 1
    assert count(server, Invoice) == 1


def test_an_unused_event_type_is_200_and_ignored(server):
    response = post(
        server,
        {"id": "t1", "type": "ticket.created", "occurred_at": "2026-01-01T00:00:00Z", "data": {}},
    )
    assert response.status_code == 200 and response.json()["ignored"] == 1
    assert count(server, EventLog, EventLog.status == "ignored") == 1


def test_out_of_order_deliveries_apply_by_event_time(server):
    post(server, make_subscription("2026-03-01", quantity=3))
    post(server, make_subscription("2026-01-01", quantity=1))
    with session_scope(server.factory) as session:
        kinds = session.execute(
            select(MrrMovement.kind, MrrMovement.amount).order_by(MrrMovement.day)
        ).all()
    assert [(k, str(a)) for k, a in kinds] == [("new", "50.00"), ("expansion", "100.00")]


def test_an_unconfigured_source_is_404(web_server):
    server = web_server()
    assert post(server, make_subscription("2026-01-01")).status_code == 404
    assert post(server, {}, path="/webhooks/nowhere").status_code == 404


def test_health_and_metrics(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok", "database": "ok"}
    post(server, make_subscription("2026-01-01"))
    post(
        server,
        make_subscription("2026-01-01"),
        secret="whsec_" + "d3JvbmctLXNlY3JldC0tMTIzNDU2Nzg5MA==",
    )
    exposition = httpx.get(server.url + "/metrics").text
    assert 'kpibot_webhook_events_total{outcome="queued",source="kpibot"} 1.0' in exposition
    assert 'kpibot_webhook_events_total{outcome="applied",source="kpibot"} 1.0' in exposition
    assert "kpibot_webhook_backlog 0.0" in exposition
    assert 'kpibot_webhook_deliveries_total{source="kpibot",status="401"} 1.0' in exposition
    assert "kpibot_webhook_seconds_count" in exposition


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(
    payload=st.one_of(
        JSON_VALUES, st.builds(lambda d: {"events": d}, st.lists(JSON_VALUES, max_size=3))
    )
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_hostile_signed_bodies_never_get_a_500(server, payload):
    response = post(server, payload)
    assert response.status_code in (200, 400, 422), response.text


def test_other_methods_and_paths_go_through_starlette_routing(server):
    """Only `POST /webhooks/<source>` takes the shortcut past Starlette; the rest is routed."""
    assert httpx.get(server.url + "/webhooks/kpibot").status_code == 405
    nested = post(server, make_subscription("2026-01-01"), path="/webhooks/kpibot/extra")
    assert nested.status_code == 404
    assert count(server, EventLog) == 0


def test_served_under_a_prefix_the_route_calls_the_same_handler(database_url):
    """Behind a proxy that mounts kpibot under a path (ASGI `root_path`), the shortcut steps
    aside and Starlette's own route for webhooks answers the same."""
    settings = Settings(
        _env_file=None, database_url=database_url, webhook_secret=TEST_WEBHOOK_SECRET
    )
    engine = make_engine(database_url)
    app = create_web(settings, engine)
    body = json.dumps(make_subscription("2026-01-01")).encode()

    async def deliver() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, root_path="/kpibot")
        async with httpx.AsyncClient(transport=transport, base_url="http://kpibot") as client:
            return await client.post(
                "/kpibot/webhooks/kpibot", content=body, headers=standard_headers(body)
            )

    try:
        response = asyncio.run(deliver())
        assert response.status_code == 200, response.text
        assert response.json()["queued"] == 1
        assert app.state.apply_worker.wait_idle(20)
        with session_scope(make_session_factory(engine)) as session:
            assert session.scalar(select(func.count()).select_from(MrrMovement)) == 1
    finally:
        app.state.apply_worker.close()
        engine.dispose()


LONE_SURROGATE = "\\ud800"  # valid JSON escape, but no UTF-8 text can hold what it decodes to


@pytest.mark.parametrize(
    "raw",
    [
        '{"id":"e-%s","type":"invoice.paid","occurred_at":"2026-01-01T00:00:00Z","data":{}}',
        '{"events":[{"id":"e-%s","type":"x.y","occurred_at":"2026-01-01T00:00:00Z","data":{}}]}',
        '{"events":[{"id":"e-1","type":"survey.responded","occurred_at":"2026-01-01T00:00:00Z",'
        '"data":{"response_id":"r-1","kind":"nps","score":3,"comment":"bad %s"}}]}',
        '{"events":[{"id":"e-2","type":"x.y","occurred_at":"2026-01-01T00:00:00Z",'
        '"data":{"note":"%s"}}]}',
    ],
)
def test_a_lone_surrogate_anywhere_is_never_a_500(server, raw):
    """JSON may escape half of a surrogate pair, which no database text can store: the event is
    refused (or, where kpibot reads nothing, kept escaped), never a 500."""
    response = post(server, None, raw=(raw % LONE_SURROGATE).encode())
    assert response.status_code in (200, 422), response.text
    assert count(server, EventLog) <= 1


# Senders that misbehave: what they cost the server, and what they are answered


def _open_upload(server, declared: int, sent: bytes) -> socket.socket:
    """A connection whose request declares `declared` body bytes and has sent only `sent`."""
    host, port = server.url.removeprefix("http://").split(":")
    link = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /webhooks/kpibot HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {declared}\r\n\r\n"
    )
    link.sendall(head.encode() + sent)
    return link


def test_a_url_with_a_trailing_slash_is_the_same_route(server):
    """Senders follow no redirect: Stripe or Zapier given `/webhooks/kpibot/` must not get a 307."""
    response = post(server, make_subscription("2026-01-01"), path="/webhooks/kpibot/")
    assert response.status_code == 200, response.text
    assert count(server, EventLog) == 1


def test_a_sender_that_leaves_before_its_body_is_not_counted_as_refused(server):
    link = _open_upload(server, 1_000, b'{"id": ')
    link.close()
    time.sleep(0.3)
    exposition = httpx.get(server.url + "/metrics").text
    assert 'status="401"' not in exposition  # (a wrong secret would be; see above)
    assert post(server, make_subscription("2026-01-01")).status_code == 200  # still serving
    assert count(server, EventLog) == 1


def test_a_body_that_does_not_arrive_in_time_is_408(server, monkeypatch):
    monkeypatch.setattr("bot.web.BODY_SECONDS", 0.5)
    with _open_upload(server, 1_000, b'{"id": ') as link:
        answer = link.recv(4096)  # sent once the time is up, whatever the sender does
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert count(server, EventLog) == 0


def test_bodies_past_the_memory_budget_are_503_until_they_are_done(server, monkeypatch):
    """Unsigned senders that stop before their last byte hold their buffers: past the budget,
    a delivery is refused at once (503, retry in a second) instead of growing the server."""
    monkeypatch.setattr("bot.web.BODY_BYTES_IN_FLIGHT", 2_000_000)  # the two below fill it
    holding = [_open_upload(server, 1_000_000, b"x" * 100_000) for _ in range(2)]
    time.sleep(0.3)
    refused = post(server, make_subscription("2026-01-01"), settle=False)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    for link in holding:
        link.close()
    time.sleep(0.3)
    assert post(server, make_subscription("2026-01-01")).status_code == 200


def test_a_header_without_end_is_431_and_its_connection_closed(server):
    """httptools keeps a header until it ends: one connection sending a header without end grew
    the server by a gigabyte. Past 64 KiB of head the request is refused, its connection closed."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as link:
        link.sendall(f"POST /webhooks/kpibot HTTP/1.1\r\nhost: {host}\r\nx-pad: ".encode())
        sent = 0
        # 8 KiB at a time, never ending the header, until the server answers (each piece read
        # by it before the next is sent: writing past its close would reset the connection
        # before its answer could be read).
        while sent < 2_000_000 and not readiness.select([link], [], [], 0.05)[0]:
            link.sendall(b"a" * 8192)
            sent += 8192
        answer = b""
        while chunk := link.recv(4096):
            answer += chunk
    assert sent < 400_000  # refused after 64 KiB and at most two reads more
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert answer.endswith(b"the request's line and headers are over 64 KiB")
    assert count(server, EventLog) == 0
    assert post(server, make_subscription("2026-01-01")).status_code == 200  # still serving


def test_a_sender_that_half_closes_after_its_request_is_answered(server):
    """Some scripts close their side once the request is sent: the events are stored, and the
    answer must reach them (else they send the events again, as duplicates)."""
    body = json.dumps(make_subscription("2026-01-01")).encode()
    host, port = server.url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in standard_headers(body).items())
    with socket.create_connection((host, int(port)), timeout=10) as link:
        link.sendall(
            f"POST /webhooks/kpibot HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n"
            f"{head}\r\n".encode()
            + body
        )
        link.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := link.recv(4096):  # until the server closes its side too
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in answer.lower()
    counts = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert counts["applied"] + counts["queued"] == 1 and counts["rejected"] == 0
    assert count(server, EventLog) == 1


def test_a_sender_that_half_closes_before_its_body_is_done_stores_nothing(server):
    with _open_upload(server, 1_000, b'{"id": ') as link:
        link.shutdown(socket.SHUT_WR)
        assert link.recv(4096) == b""  # closed at once: no 30 s wait for the rest
    time.sleep(0.3)
    assert count(server, EventLog) == 0
    assert post(server, make_subscription("2026-01-01")).status_code == 200  # still serving


def test_heads_under_the_limit_pass_request_after_request_on_one_connection(server):
    """The limit counts a head's bytes, not a connection's: large heads, and bodies far larger
    than the limit, pass one after the other over one kept-alive connection."""
    padding = {"x-pad": "a" * 60_000}  # just under the limit with the other headers
    with httpx.Client() as client:  # one connection, kept alive
        for n in range(3):
            body = json.dumps(
                {
                    "events": [
                        make_invoice("2026-01-02", invoice_id=f"i-{n}-{k}") for k in range(400)
                    ]
                }
            ).encode()  # ~100 KB
            assert len(body) > 64 * 1024
            headers = {**standard_headers(body), **padding}
            response = client.post(server.url + "/webhooks/kpibot", content=body, headers=headers)
            assert response.status_code == 200, response.text
    assert count(server, EventLog) == 1_200


def test_a_compressed_body_is_415_not_a_puzzling_400(server):
    body = gzip.compress(json.dumps(make_subscription("2026-01-01")).encode())
    headers = {**standard_headers(body), "content-encoding": "gzip"}
    response = httpx.post(server.url + "/webhooks/kpibot", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json() == {"error": "the body is encoded (gzip): send it uncompressed"}
    assert count(server, EventLog) == 0
