"""`/kpi`: answer within Slack's 3 seconds, in one round trip when the answer is quick.

The answer is computed in the services' thread pool. Ready within the budget, it *is* the
acknowledgement (no second request); otherwise an interim "working on it" acknowledges and the
answer follows through the command's response_url. Errors propagate to the app's error handler.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as AnswerTimeout
from typing import TYPE_CHECKING, Any

from bot.answers import answer_slash, working_message

if TYPE_CHECKING:
    from slack_bolt import Ack, App, Respond

    from bot.slack_app import BotServices


def register(app: App, services: BotServices) -> None:
    """Register the `/kpi` command."""

    @app.command("/kpi")
    def kpi_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
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
        try:
            if services.answer_budget <= 0:
                raise AnswerTimeout
            answer = future.result(timeout=services.answer_budget)
        except AnswerTimeout:
            ack(**working_message(services.settings.locale))
            respond(**future.result().payload())
            return
        ack(**answer.payload())
