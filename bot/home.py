"""The App Home tab: a CSM's own book of accounts, or the team's headline KPIs for everyone else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.access import Access, EmailOf, NotAllowed
from bot.blocks import refusal_blocks
from bot.home_blocks import home_view
from bot.settings import Settings
from metrics.accounts import book, team_headlines


def build_home(
    user_id: str,
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    access: Access,
    email_of: EmailOf,
    now: datetime,
) -> dict[str, Any]:
    """Return the Home view of a Slack user (found by their email), or why they may not see it."""
    try:
        access.check_ask(user_id, email_of, locale=settings.locale)
    except NotAllowed as refused:
        return {"type": "home", "blocks": refusal_blocks(refused.reason)}
    return home_for(email_of(user_id), factory=factory, settings=settings, now=now)


def home_for(
    email: str | None, *, factory: sessionmaker[Session], settings: Settings, now: datetime
) -> dict[str, Any]:
    """Return the Home view for `email`: their book if they own accounts, else the team's KPIs."""
    config, locale, timezone = settings.metric_config, settings.locale, settings.timezone
    with factory() as session:
        if email:
            owned = book(session, owner_email=email, config=config, now=now)
            if owned.total_accounts:
                return home_view(book=owned, locale=locale, timezone=timezone)
        headlines = team_headlines(session, config=config, now=now, locale=locale)
    return home_view(headlines=headlines, locale=locale, timezone=timezone)
