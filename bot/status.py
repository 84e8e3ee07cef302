"""A readable report of the store, printed when kpibot starts."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings
from storage.db import session_scope
from storage.stats import store_stats


def store_status(factory: sessionmaker[Session], settings: Settings) -> str:
    """Return a few lines saying where the store is and what it holds."""
    with session_scope(factory) as session:
        stats = store_stats(session)
    events = ", ".join(f"{n} {status}" for status, n in sorted(stats.events_by_status.items()))
    latest = stats.latest_event_at.isoformat() if stats.latest_event_at else "no events yet"
    return "\n".join(
        [
            f"kpibot store: {make_url(settings.database_url).render_as_string(hide_password=True)}",
            f"  events: {events or 'none'} (latest {latest})",
            f"  accounts: {stats.accounts}, paying customers: {stats.customers}, "
            f"survey responses: {stats.responses}",
            f"  MRR: {stats.mrr:,.2f} {settings.currency} (days counted in {settings.timezone})",
        ]
    )
