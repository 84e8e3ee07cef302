"""kpibot's Bolt app: built by `create_app`, listeners registered by module (`bot/listeners`).

The app serves HTTP through `bot.web` (`POST /slack/events`, Slack's signature verified by Bolt)
or Socket Mode (`start_socket_mode`). Listeners run in Bolt's thread pool; the one error handler
below turns typed errors into ephemeral replies and anything else into a reference id that is in
the log.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.access import Access, NotAllowed
from bot.blocks import error_message, unexpected_error_message
from bot.settings import Settings, parse_user_list
from bot.slack_users import UserDirectory
from metrics.query import QueryError

log = logging.getLogger("kpibot.slack")

# Slack waits 3 s for the acknowledgement; an answer not ready after this many seconds is sent
# later through the command's response_url, after an interim "working on it".
ANSWER_BUDGET_SECONDS = 1.0
ANSWER_WORKERS = 8


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


def make_client(settings: Settings) -> WebClient:
    """Return a Web API client with the bot token, on `SLACK_API_URL`."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url)


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
        client=client,
        # Socket Mode needs no signature: the WebSocket is authenticated by the app-level token.
        signing_secret=signing.get_secret_value() if signing else None,
        request_verification_enabled=settings.slack_mode == "http",
        token_verification_enabled=False,  # no auth.test at start: the bot starts without Slack
        process_before_response=False,
        logger=log,
    )
    services = BotServices(
        settings=settings,
        factory=factory,
        access=Access(parse_user_list(settings.allowed_users), parse_user_list(settings.admins)),
        users=UserDirectory(client),
        answer_budget=answer_budget,
    )
    register_all(app, services)
    app.error(_error_handler(services))
    return app


def _error_handler(services: BotServices) -> Callable[..., BoltResponse | None]:
    locale = services.settings.locale

    def handle_error(
        error: Exception, request: BoltRequest, response: BoltResponse | None
    ) -> BoltResponse | None:
        """Reply to the user who triggered `error`: help, a refusal, or a reference id."""
        if isinstance(error, QueryError):
            message = error_message(error, locale=locale)
        elif isinstance(error, NotAllowed):
            message = {"text": error.reason, "blocks": _refusal_blocks(error.reason)}
        else:
            reference = secrets.token_hex(4)
            log.error("unexpected error, reference %s", reference, exc_info=error)
            message = unexpected_error_message(reference, locale=locale)
        payload = {**message, "response_type": "ephemeral"}
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


def _refusal_blocks(reason: str) -> list[dict[str, Any]]:
    from bot.blocks import escape

    # Admin mentions (<@U…>) are the only markup a refusal carries; the rest is escaped.
    text = re.sub(r"&lt;@([UW][A-Z0-9]+)&gt;", r"<@\1>", escape(reason))
    return [{"type": "section", "text": {"type": "mrkdwn", "text": f":no_entry: {text}"}}]


def start_socket_mode(app: App, settings: Settings) -> Any:
    """Connect to Slack over Socket Mode (non-blocking); returns the handler, to `close()`."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert settings.slack_app_token is not None
    handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
    handler.connect()
    return handler
