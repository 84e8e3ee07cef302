"""kpibot's Bolt app: built by `create_app`, listeners registered by module (`bot/listeners`).

The app serves HTTP through `bot.web` (`POST /slack/events`, Slack's signature verified by Bolt)
or Socket Mode (`start_socket_mode`). Listeners run in Bolt's thread pool; the one error handler
below turns typed errors into ephemeral replies and anything else into a reference id that is in
the log.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Access, NotAllowed
from bot.blocks import error_message, refusal_blocks, unexpected_error_message
from bot.settings import Settings, parse_user_list
from bot.slack_users import UserDirectory
from metrics.query import QueryError

log = logging.getLogger("kpibot.slack")
_SERVICES: WeakKeyDictionary[App, BotServices] = WeakKeyDictionary()

# Slack waits 3 s for the acknowledgement; an answer not ready this many seconds after the request
# arrived is sent later through the command's response_url, after an interim "working on it".
ANSWER_BUDGET_SECONDS = 1.0
ANSWER_WORKERS = 8
LISTENER_WORKERS = 32  # Bolt's own pool: listeners return quickly, slow answers wait elsewhere
WEB_API_TIMEOUT_SECONDS = 10
RECEIVED_AT = "kpibot_received_at"  # request context key: time.monotonic() at arrival


@dataclass
class BotServices:
    """What listeners need: settings, sessions, who may ask, users, a clock and a thread pool."""

    settings: Settings
    factory: sessionmaker[Session]
    access: Access
    users: UserDirectory
    answer_budget: float = ANSWER_BUDGET_SECONDS
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    answers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(ANSWER_WORKERS, thread_name_prefix="kpi-answer")
    )


def make_client(settings: Settings, *, with_token: bool = True) -> WebClient:
    """Return a Web API client on `SLACK_API_URL`, with the bot token unless told otherwise."""
    token = settings.slack_bot_token if with_token else None
    return WebClient(
        token=token.get_secret_value() if token else None,
        base_url=settings.slack_api_url,
        timeout=WEB_API_TIMEOUT_SECONDS,
    )


def create_app(
    settings: Settings,
    factory: sessionmaker[Session],
    *,
    client: WebClient | None = None,
    answer_budget: float = ANSWER_BUDGET_SECONDS,
) -> App:
    """Build the Bolt app on `factory` (read sessions), with its listeners and error handler.

    `answer_budget`: seconds an answer may take to be the acknowledgement itself; 0 always
    acknowledges first and answers through the response_url.
    """
    from bot.listeners import register_all

    client = client or make_client(settings)
    signing = settings.slack_signing_secret
    app = App(
        # Bolt's client carries no token: `authorize` hands it the bot token for each request,
        # with no `auth.test` call, so a Slack outage never stalls or garbles an answer.
        client=make_client(settings, with_token=False) if client.token else client,
        authorize=_authorize(client.token),
        # Socket Mode needs no signature: the WebSocket is authenticated by the app-level token.
        signing_secret=signing.get_secret_value() if signing else None,
        request_verification_enabled=settings.slack_mode == "http",
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(LISTENER_WORKERS, thread_name_prefix="bolt"),
        logger=log,
    )
    app.client.base_url = client.base_url
    services = BotServices(
        settings=settings,
        factory=factory,
        access=Access(parse_user_list(settings.allowed_users), parse_user_list(settings.admins)),
        users=UserDirectory(client),
        answer_budget=answer_budget,
    )
    register_all(app, services)
    app.error(_error_handler(services))
    _SERVICES[app] = services
    return app


def shutdown(app: App) -> None:
    """Stop the app's answer threads: queued answers are dropped, running ones finish."""
    services = _SERVICES.pop(app, None)
    if services is not None:
        services.answers.shutdown(wait=False, cancel_futures=True)


def _authorize(token: str | None) -> Callable[..., AuthorizeResult]:
    def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    return authorize


def reply_for_error(error: Exception, *, locale: str) -> dict[str, Any]:
    """Return the ephemeral reply to `error`: help, a refusal, or a reference id (logged)."""
    if isinstance(error, QueryError):
        message = error_message(error, locale=locale)
    elif isinstance(error, NotAllowed):
        message = refusal_message(error)
    else:
        reference = secrets.token_hex(4)
        log.error("unexpected error, reference %s", reference, exc_info=error)
        message = unexpected_error_message(reference, locale=locale)
    return {**message, "response_type": "ephemeral"}


def refusal_message(refused: NotAllowed) -> dict[str, Any]:
    """Return the message telling a user why they may not do this."""
    return {"text": refused.reason, "blocks": refusal_blocks(refused.reason)}


def _error_handler(services: BotServices) -> Callable[..., BoltResponse | None]:
    locale = services.settings.locale

    def handle_error(
        error: Exception, request: BoltRequest, response: BoltResponse | None
    ) -> BoltResponse | None:
        """Reply to the user who triggered `error`: help, a refusal, or a reference id."""
        payload = reply_for_error(error, locale=locale)
        acked = request.context.ack is not None and request.context.ack.response is not None
        if response is not None and not acked:
            # The listener failed before acknowledging: the reply is the HTTP response itself.
            return BoltResponse(
                status=200,
                body=json.dumps(payload),
                headers={"content-type": "application/json;charset=utf-8"},
            )
        respond = request.context.respond
        if respond is not None:
            respond(**payload)
        return None

    return handle_error


def start_socket_mode(app: App, settings: Settings) -> Any:
    """Connect to Slack over Socket Mode in the background, retrying until Slack answers.

    Returns the handler, to `close()`. A Slack outage at start never stops `serve`: webhooks,
    health and the outbox keep working while the connection is retried.
    """
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert settings.slack_app_token is not None
    handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
    closed = threading.Event()
    original_close = handler.close

    def connect() -> None:
        wait = 1.0
        while not closed.is_set():
            try:
                handler.connect()
                return
            except Exception as error:  # any failure to reach Slack: retry with backoff
                log.warning("Socket Mode: cannot connect (%s); retrying in %.0f s", error, wait)
                closed.wait(wait)
                wait = min(wait * 2, 60.0)

    def close() -> None:
        closed.set()
        original_close()

    handler.close = close  # type: ignore[method-assign]
    threading.Thread(target=connect, name="socket-mode", daemon=True).start()
    return handler
