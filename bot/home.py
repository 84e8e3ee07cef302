"""The App Home tab: a CSM's own book of accounts, or the team's headline KPIs for everyone else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.access import EmailOf
from bot.settings import Settings


def build_home(
    user_id: str,
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    email_of: EmailOf,
    now: datetime,
) -> dict[str, Any]:
    """Return the Home view of `user_id`: their own book, or the team's KPIs if they own none."""
    from bot.home_blocks import home_view
    from metrics.accounts import book, team_headlines

    config, locale = settings.metric_config, settings.locale
    email = email_of(user_id)
    with factory() as session:
        owned = book(session, owner_email=email, config=config, now=now) if email else None
        if owned is not None and owned.total_accounts:
            return home_view(book=owned, locale=locale, timezone=settings.timezone)
        headlines = team_headlines(session, config=config, now=now, locale=locale)
    return home_view(headlines=headlines, locale=locale, timezone=settings.timezone)
