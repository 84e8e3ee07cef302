"""event_log: drop ix_event_log_occurred_at, which no query needs

Nothing reads the log by its events' time alone: the freshness of the figures (the latest applied
event) seeks ix_event_log_status_occurred_at. Every logged event still paid for this index: on the
reference data (a million rows) it was a third of the cost of writing a row on SQLite.

Revision ID: b3e5a7c9d2f4
Revises: 4f8b2d6a1e93
Create Date: 2026-12-07 16:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = 'b3e5a7c9d2f4'
down_revision: str | None = '4f8b2d6a1e93'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_event_log_occurred_at', table_name='event_log')


def downgrade() -> None:
    op.create_index('ix_event_log_occurred_at', 'event_log', ['occurred_at'], unique=False)
