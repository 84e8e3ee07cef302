"""The ASGI web application of `kpibot serve`: Slack, webhooks, `/healthz` and `/metrics`.

`POST /slack/events` takes Slack's commands, interactivity and events; Bolt verifies the signature
and dispatches in the thread pool, so a slow answer never stalls the event loop.

Every webhook route follows the rules of SPEC.md: a bad or stale signature is 401 with nothing
stored; over 1 MiB is 413; a body that is not JSON is 400; events that break the schema are kept as
rejected and answered 422 with their field paths; duplicates and unused types are 200; and a 2xx
is sent only after the events are committed: applied, for a group of 50 events or more; else to
the event log as `queued`, which the `ApplyWorker` applies a moment later, many groups together
(`bot/ingest_queue.py`, `bot/apply_worker.py`). Blocking work runs in the thread
pool. Webhook deliveries are the busiest requests by far: they are handled as plain ASGI, past
Starlette's middleware and router (`_WebApp`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot.apply_worker import ApplyWorker
from bot.dispatcher import OutboxDispatcher, ledger_warmer, make_notifier
from bot.ingest_queue import LOCK_WAIT_SECONDS, DatabaseBusy, IngestQueue
from bot.settings import Settings
from bot.slack_app import RECEIVED_AT, create_app, shutdown
from bot.stripe_api import StripeApiUnavailable, StripeDiscounts
from storage.db import (
    DatabaseFileGone,
    background_checkpoints,
    dumps,
    fault_of_the_events,
    make_session_factory,
    ping,
    read_only,
    waiting_at_most,
)
from storage.deferred import AppliedBatch
from storage.ingest import OUTCOMES, IngestReport, prepare
from storage.sources.base import Delivery, WebhookRejected, verify_any
from storage.sources.registry import get_source

MAX_BODY_BYTES = 1024 * 1024
# A body must arrive within this long: a sender that trickles one (or stops half way) holds its
# buffer and a connection, and is answered 408 instead. Providers send 1 MiB in well under a second.
BODY_SECONDS = 30.0
# The bytes of the bodies held at once (each until its delivery is answered), at most: a delivery
# that would pass it is answered 503 at once, so that unsigned senders (400 bodies of 1 MiB, each
# stopped before its last byte) cannot hold more memory than this. 96 batches of 1 MiB, or tens of
# thousands of single events.
BODY_BYTES_IN_FLIGHT = 96 * MAX_BODY_BYTES
SOON = ((b"retry-after", b"1"),)  # a 503's header: retry in a second
# A delivery cut by the server's stop: its group may have committed meanwhile (a resend then
# counts once), or not; the sender tries again after the restart.
STOPPING = (
    "the server is stopping: this delivery may not have been stored; send it again (a copy "
    "already stored counts once)"
)
STOPPING_HEADERS = ((b"retry-after", b"5"), (b"connection", b"close"))
log = logging.getLogger("kpibot.web")


class _Disconnected(Exception):
    """The sender closed the connection before its body arrived: nobody to answer."""


class _TooSlow(Exception):
    """The body did not arrive within `BODY_SECONDS`."""


@dataclass
class WebMetrics:
    """Prometheus counters of this application (one registry per app, so tests can count)."""

    registry: CollectorRegistry
    events: Counter
    deliveries: Counter
    latency: Histogram
    groups: Histogram
    fallbacks: Counter
    backlog: Gauge

    @classmethod
    def create(cls) -> WebMetrics:
        """Return fresh counters in their own registry."""
        registry = CollectorRegistry()
        return cls(
            registry,
            Counter(
                "kpibot_webhook_events",
                "Webhook events, by source and fate: queued (accepted), duplicate, ignored or "
                "rejected when received; applied or rejected when applied.",
                ["source", "outcome"],
                registry=registry,
            ),
            Counter(
                "kpibot_webhook_deliveries",
                "Webhook deliveries (HTTP requests), by source and status code.",
                ["source", "status"],
                registry=registry,
            ),
            Histogram(
                "kpibot_webhook_seconds",
                "Time to verify, store and answer a webhook delivery.",
                ["source"],
                registry=registry,
            ),
            Histogram(
                "kpibot_webhook_group_deliveries",
                "Deliveries stored together by one group commit.",
                ["source"],
                buckets=(1, 2, 4, 8, 16, 32, 64, 128),
                registry=registry,
            ),
            Counter(
                "kpibot_webhook_group_fallbacks",
                "Group commits that failed as a whole and were stored delivery by delivery.",
                ["source"],
                registry=registry,
            ),
            Gauge(
                "kpibot_webhook_backlog",
                "Webhook events accepted by this process and not applied yet.",
                registry=registry,
            ),
        )

    def __post_init__(self) -> None:
        # Label lookups cost more than the increments: each series is looked up once.
        self._series: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = metric.labels(*labels)
        return found

    def delivered(self, source: str, status: int, seconds: float) -> None:
        """Count one delivery of `source`, answered with `status` after `seconds`."""
        self._child(self.deliveries, source, str(status)).inc()
        self._child(self.latency, source).observe(seconds)

    def group(self, source: str, deliveries: int, fell_back: bool) -> None:
        """Count one group commit of `deliveries` (stored one by one when it `fell_back`)."""
        self.groups.labels(source).observe(deliveries)
        if fell_back:
            self.fallbacks.labels(source).inc()

    def count(self, source: str, report: IngestReport) -> None:
        """Add a delivery's events to the counters."""
        for outcome in OUTCOMES:
            amount = getattr(report, outcome)
            if amount:
                self._child(self.events, source, outcome).inc(amount)

    def applied(self, batch: AppliedBatch) -> None:
        """Add what the apply worker did with queued events to the counters."""
        for (source, outcome), amount in batch.counts.items():
            self._child(self.events, source, outcome).inc(amount)


def create_web(settings: Settings, engine: Engine, **slack_options: Any) -> Starlette:
    """Build the web application on `engine`: webhooks, the Slack app (unless offline), health.

    `slack_options` go to `bot.slack_app.create_app` (a `client`, an `answer_budget`).
    """
    factory = make_session_factory(engine)
    metrics = WebMetrics.create()
    applier = ApplyWorker(
        factory,
        settings.ingest_config,
        options_for=settings.source_options,
        observe=metrics.applied,
    )
    metrics.backlog.set_function(lambda: applier.backlog)
    queue = IngestQueue(
        make_session_factory(waiting_at_most(engine, LOCK_WAIT_SECONDS)),
        settings.ingest_config,
        applier,
        limits=settings.group_limits,
        observe=metrics.group,
    )
    stripe_key = settings.stripe_api_key
    stripe_api = (
        StripeDiscounts(stripe_key.get_secret_value(), base_url=settings.stripe_api_url)
        if stripe_key
        else None
    )
    slack = None
    signing = settings.slack_signing_secret
    # Checked before Bolt parses anything: an unsigned body never reaches a parser or the log.
    verifier = SignatureVerifier(signing.get_secret_value()) if signing else None
    if settings.slack_mode != "offline":
        slack = create_app(settings, make_session_factory(read_only(engine)), **slack_options)

    in_flight = 0  # the bytes reserved by the deliveries being read or stored

    async def webhook(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal in_flight
        name = scope["path_params"]["source"]
        started = time.perf_counter()
        # What the body may hold: its declared length (the server reads no more), else the limit.
        reserved = min(_declared_length(scope) or MAX_BODY_BYTES, MAX_BODY_BYTES)
        if in_flight + reserved > BODY_BYTES_IN_FLIGHT:
            answer = _Answer(503, {"error": "too many deliveries at once: retry shortly"}, SOON)
        else:
            in_flight += reserved
            try:
                answer = await _webhook(scope, receive, name, settings, queue, metrics, stripe_api)
            except _Disconnected:
                return  # nothing was stored, and nobody to answer or to count as refused
            except asyncio.CancelledError:
                _cut_by_the_stop(f"webhook {name[:40]}")
                answer = _Answer(503, {"error": STOPPING}, STOPPING_HEADERS)
            except Exception:  # a bug: the sender retries, and /metrics counts the 500
                log.exception("webhook %s: the delivery failed", name[:40])
                answer = _error(500, "internal error: nothing was stored; retry later")
            finally:
                in_flight -= reserved
        if get_source(name) is not None:
            metrics.delivered(name, answer.status, time.perf_counter() - started)
        await answer.send(send)

    async def healthz(_request: Request) -> Response:
        try:
            await run_in_threadpool(ping, engine)
        except DatabaseFileGone as error:
            log.error("health check failed: %s", error)
            return JSONResponse({"status": "unavailable", "database": "file removed"}, 503)
        except Exception as error:  # any failure means "not healthy"; the log says which
            log.warning("health check failed: %s", type(error).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def slack_events(request: Request) -> Response:
        try:
            return await _slack_events(request)
        except asyncio.CancelledError:
            _cut_by_the_stop("slack")
            return _refused(503, "the server is stopping: try again in a moment")

    async def _slack_events(request: Request) -> Response:
        if slack is None or verifier is None or settings.slack_mode != "http":
            why = (
                "this server talks to Slack over Socket Mode"
                if settings.slack_mode == "socket"
                else "Slack is not configured here: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"
            )
            return _refused(404, why)
        try:
            body = await _receive_body(request.headers, request.receive)
        except (_Disconnected, _TooSlow):
            return _refused(408, "the body did not arrive")
        if body is None:
            return _refused(413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            if not verifier.is_valid_request(body, dict(request.headers)):
                return _refused(401, "the request is not signed by Slack (or is too old)")
            bolt_request = to_bolt_request(
                request, body, addition_context_properties={RECEIVED_AT: time.monotonic()}
            )
        except ValueError:  # UnicodeDecodeError, JSONDecodeError: not a payload Slack sends
            return _refused(400, "the body is not a Slack payload")
        bolt_response = await run_in_threadpool(slack.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    dispatcher = OutboxDispatcher(make_notifier(settings, factory))
    warmer = ledger_warmer(engine, settings.metric_config)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        checkpointer = background_checkpoints(engine)  # SQLite: commits leave them to a thread
        if checkpointer is not None:
            checkpointer.start()
        applier.start()
        dispatcher.start()
        warmer.start()
        try:
            yield
        finally:
            await queue.close()
            await run_in_threadpool(applier.close)
            warmer.stop()
            dispatcher.stop()
            if slack is not None:
                shutdown(slack)
            if checkpointer is not None:
                await run_in_threadpool(checkpointer.stop)

    app = _WebApp(
        webhook,
        lifespan=lifespan,
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/webhooks/{source}", _AsgiEndpoint(webhook), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
    )
    app.state.metrics = metrics
    app.state.session_factory = factory
    app.state.slack_app = slack
    app.state.dispatcher = dispatcher
    app.state.ingest_queue = queue
    app.state.apply_worker = applier
    return app


class _WebApp(Starlette):
    """The Starlette app, with one shortcut: `POST /webhooks/{source}`, the busiest route by far,
    goes straight to its handler, without the middleware stack, the router's matching and the
    request and response objects (a fifth of a busy server's time per delivery). Anything else,
    and any path the shortcut does not recognise, goes through Starlette, whose route for it
    calls the same handler."""

    def __init__(self, webhook: _Handler, **options: Any) -> None:
        super().__init__(**options)
        self._webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            # (A URL pasted with a trailing slash is the same route: senders follow no redirect.)
            source = scope["path"].removeprefix(WEBHOOK_PREFIX).removesuffix("/")
            if scope["path"].startswith(WEBHOOK_PREFIX) and source and "/" not in source:
                scope["path_params"] = {"source": source}
                await self._webhook(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


_Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
WEBHOOK_PREFIX = "/webhooks/"


class _AsgiEndpoint:
    """A plain ASGI handler as a Starlette route's endpoint (a class: Starlette calls it as is)."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


@dataclass(frozen=True)
class _Answer:
    """A JSON answer to a webhook delivery."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def send(self, send: Send) -> None:
        content = orjson.dumps(self.body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def _webhook(
    scope: Scope,
    receive: Receive,
    name: str,
    settings: Settings,
    queue: IngestQueue,
    metrics: WebMetrics,
    stripe_api: StripeDiscounts | None = None,
) -> _Answer:
    secrets = settings.source_secrets(name)
    source = get_source(name) if secrets else None
    if source is None:
        return _error(404, f"no webhook source '{name[:40]}' is configured here")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # signatures are made over the body as sent: unzipped
        return _error(415, f"the body is encoded ({encoding[:20]}): send it uncompressed")
    try:
        body = await _receive_body(headers, receive)
    except _TooSlow:
        return _error(408, f"the body did not arrive within {BODY_SECONDS:g} s")
    if body is None:
        return _error(413, f"the body is over {MAX_BODY_BYTES} bytes")
    delivery = Delivery(
        headers=headers,
        body=body,
        received_at=datetime.now(UTC),
        options=settings.source_options(name),
    )
    try:
        verify_any(source, delivery, secrets)
        try:
            # Strictly UTF-8 (RFC 8259): `json.loads` would guess UTF-16 or UTF-32 from bytes,
            # which the sources, reading the body as UTF-8 text, could not follow.
            payload = json.loads(body.decode())
        except UnicodeDecodeError:
            raise WebhookRejected(400, "the body is not UTF-8 JSON") from None
        except (ValueError, RecursionError) as error:
            raise WebhookRejected(400, f"the body is not JSON: {error}") from None
        if name == "stripe" and stripe_api is not None:
            # Discounts given as ids, read from Stripe's API; logged as read (see bot.stripe_api)
            expanded = await stripe_api.expand(payload)
            if expanded is not None:
                payload = expanded
                delivery = replace(delivery, body=dumps(expanded).encode())
        events = source.events(payload, delivery)
    except WebhookRejected as rejected:
        return _error(rejected.status, rejected.reason)
    except StripeApiUnavailable as unavailable:
        log.warning("webhook %s: %s; nothing was stored", name, unavailable)
        return _Answer(
            503,
            {"error": f"{unavailable}: nothing was stored; retry later"},
            ((b"retry-after", b"60"),),
        )
    # Parsed here, while the group before this one is being stored, not inside its transaction.
    items = prepare(e.item() for e in events)
    try:
        report = await queue.ingest(name, items, delivery.received_at)
    except DatabaseBusy:
        return _Answer(503, {"error": "the database is busy: retry shortly"}, SOON)
    except Exception as error:
        if fault_of_the_events(error):
            raise
        # Unreachable, or its file removed: nothing was stored, and a retry may get through.
        log.warning("webhook %s: the database is unavailable (%s)", name, type(error).__name__)
        return _Answer(
            503,
            {"error": "the database is unavailable: nothing was stored; retry later"},
            ((b"retry-after", b"5"),),
        )
    metrics.count(name, report)
    return _Answer(
        422 if report.rejected else 200,
        {
            **{outcome: getattr(report, outcome) for outcome in OUTCOMES},
            "rejections": [
                {"index": r.index, "id": r.event_id, "reason": r.reason} for r in report.rejections
            ],
        },
    )


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it gives a valid one."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _cut_by_the_stop(what: str) -> None:
    """Say that the server's stop cut this request, which is answered 503 and not re-raised.

    Once `kpibot serve`'s grace period is over, uvicorn cancels what still runs (a body still
    trickling in, an answer still being computed). Re-raised, the cancellation would make uvicorn
    log a traceback and answer 500, which say "a bug" to an operator, for a stop as planned.
    """
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # handled: an enclosing timeout or task group sees no cancellation
    log.warning("%s: cut by the server's stop; answered 503", what)


def _error(status: int, reason: str) -> _Answer:
    return _Answer(status, {"error": reason})


async def _receive_body(headers: Mapping[str, str], receive: Receive) -> bytes | None:
    """Read a request's body, stopping as soon as it passes the limit (None then); raise
    `_Disconnected` when the sender leaves first, `_TooSlow` after `BODY_SECONDS`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_SECONDS):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return None
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise _TooSlow from None


def _refused(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def describe_app(app: Any) -> list[str]:
    """Return the routes of `app`, for the start-up message."""
    return [f"{','.join(sorted(r.methods or []))} {r.path}" for r in app.routes]
