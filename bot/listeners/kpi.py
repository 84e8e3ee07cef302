"""`/kpi`: answer within Slack's 3 seconds, in one round trip when the answer is quick.

The answer is computed in the services' thread pool. Ready within the budget (counted from the
request's arrival), it *is* the acknowledgement: no second request. Otherwise an interim "working on
it" acknowledges, and the answer (or the reply to its error) follows through the command's
response_url from the answer's own thread, so Bolt's listener threads are never held by a slow
answer. Errors before the acknowledgement propagate to the app's error handler.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any

from bot.answers import SlashAnswer, answer_slash, working_message
from bot.slack_app import RECEIVED_AT, reply_for_error

if TYPE_CHECKING:
    from slack_bolt import Ack, App, BoltContext, Respond

    from bot.slack_app import BotServices

log = logging.getLogger("kpibot.slack")


def register(app: App, services: BotServices) -> None:
    """Register the `/kpi` command."""

    @app.command("/kpi")
    def kpi_command(
        ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext
    ) -> None:
        received = context.get(RECEIVED_AT) or time.monotonic()
        future = services.answers.submit(
            answer_slash,
            str(command.get("text") or ""),
            user_id=str(command.get("user_id") or ""),
            factory=services.factory,
            settings=services.settings,
            access=services.access,
            email_of=services.users.email_of,
            now=services.clock(),
        )
        if services.answer_budget > 0:  # 0: always acknowledge first
            wait([future], timeout=max(0.0, services.answer_budget - (time.monotonic() - received)))
            if future.done():
                ack(**future.result().payload())  # an error here reaches the app's error handler
                return
        ack(**working_message(services.settings.locale))
        locale = services.settings.locale
        future.add_done_callback(lambda done: _send_late(done, respond, locale))


def _send_late(future: Future[SlashAnswer], respond: Respond, locale: str) -> None:
    """Send a deferred answer, or the reply to its error, to the command's response_url."""
    try:
        payload = future.result().payload()
    except Exception as error:  # after the ack the error handler cannot reply: this does
        payload = reply_for_error(error, locale=locale)
    for attempt in (1, 2):
        try:
            response = respond(**payload)
        except Exception as error:  # the network: try once more, then leave a trace
            log.warning("response_url post failed (attempt %d): %s", attempt, type(error).__name__)
            continue
        if response.status_code == 200:
            return
        log.warning(
            "response_url refused the answer (attempt %d): HTTP %s %s",
            attempt,
            response.status_code,
            str(response.body)[:200],
        )
    log.error("a deferred /kpi answer could not be delivered")
