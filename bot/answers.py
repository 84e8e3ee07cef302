"""The `/kpi` service: checks who may ask, answers the text, and builds the Block Kit message.

Slack's listener and `kpibot kpi` share `metrics.ask`; this adds what only a Slack user has: an
identity (access lists), the choice to `share` in the channel, and the message itself. Problems
with the text raise `QueryError`, refusals raise `NotAllowed`: the app's error handler turns both
into an ephemeral reply.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.access import Access, EmailOf
from bot.blocks import MAX_TEXT, clip, context_block, escape, reply_message
from bot.home_blocks import account_message
from bot.settings import Settings
from metrics.accounts import AccountCard, SurveyAnswer
from metrics.ask import Reply, answer
from metrics.query import parse_command

Message = dict[str, Any]


@dataclass(frozen=True)
class SlashAnswer:
    """A reply to `/kpi`: the message, and whether it goes to the whole channel (`share`)."""

    message: Message
    public: bool = False

    def payload(self) -> dict[str, Any]:
        """Return the body Slack expects from a slash command's answer."""
        return {**self.message, "response_type": "in_channel" if self.public else "ephemeral"}


def answer_slash(
    text: str,
    *,
    user_id: str,
    factory: sessionmaker[Session],
    settings: Settings,
    access: Access,
    email_of: EmailOf,
    now: datetime,
) -> SlashAnswer:
    """Return the answer to `/kpi text` asked by `user_id`; raise QueryError or NotAllowed."""
    locale, config = settings.locale, settings.metric_config
    access.check_ask(user_id, email_of, locale=locale)
    command = parse_command(text, now=now, timezone=config.timezone, fiscal=config.fiscal)
    if command.kind == "digest":
        action = "gérer les digests" if locale.startswith("fr") else "manage digests"
        access.check_admin(user_id, email_of, action=action, locale=locale)
    with factory() as session:
        reply = answer(command, session=session, config=config, now=now, locale=locale)
    if reply.card is not None and not _sees_people(reply.card, user_id, access, email_of):
        reply = replace(reply, card=without_people(reply.card))
    share = command.query is not None and command.query.share
    return SlashAnswer(
        message_for(
            reply, locale=locale, timezone=settings.timezone, shared_by=user_id if share else None
        ),
        public=share,
    )


def without_people(card: AccountCard) -> AccountCard:
    """Return the card without comments, respondents and contacts (for people not its owner)."""

    def anonymous(answer: SurveyAnswer | None) -> SurveyAnswer | None:
        if answer is None:
            return None
        return replace(answer, comment=None, respondent_name=None, respondent_email=None)

    return replace(
        card,
        nps=anonymous(card.nps),
        previous_nps=anonymous(card.previous_nps),
        csat=anonymous(card.csat),
        contacts=(),
        contacts_total=0,
        people_hidden=True,
    )


def _sees_people(card: AccountCard, user_id: str, access: Access, email_of: EmailOf) -> bool:
    """Survey comments and contacts are for the account's owner and the admins (SPEC)."""
    if access.is_admin(user_id, email_of):
        return True
    email = email_of(user_id)
    return bool(email and card.owner_email and email.lower() == card.owner_email.lower())


def message_for(
    reply: Reply, *, locale: str, timezone: str, shared_by: str | None = None
) -> Message:
    """Return the Block Kit message of any reply: a KPI, an account card, help or a list."""
    if reply.card is None:
        return reply_message(reply, locale=locale, timezone=timezone, shared_by=shared_by)
    message = account_message(reply.card, locale=locale, timezone=timezone)
    if reply.lines:
        also = "Autres comptes trouvés" if locale.startswith("fr") else "Also matching"
        names = clip(", ".join(escape(line) for line in reply.lines), MAX_TEXT - len(also) - 2)
        message["blocks"].insert(-1, context_block([f"{also}: {names}"]))
    return message


def working_message(locale: str) -> Message:
    """Return the interim reply sent when an answer takes longer than Slack waits."""
    text = (
        ":hourglass_flowing_sand: Je calcule… la réponse arrive dans un instant."
        if locale.startswith("fr")
        else ":hourglass_flowing_sand: Working on it… the answer follows in a moment."
    )
    return {"text": text, "response_type": "ephemeral"}
