"""event_log: partial indexes of the queued and of the rejected rows, by id

The apply worker's sweep reads queued rows in id order, and `kpibot webhooks list|replay` the
rejected ones. SQLite's statistics, taken while every row is applied, say a status matches every
row, so it read the whole log in id order instead of using ix_event_log_status_occurred_at: 0.2 s
and more at each sweep on the reference data (a million rows). These indexes hold only the few rows
of each status. Creating them reads the log once (about 0.2 s per million rows on SQLite).

Revision ID: 4f8b2d6a1e93
Revises: 9d1c6e3b2a57
Create Date: 2026-12-07 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '4f8b2d6a1e93'
down_revision: str | None = '9d1c6e3b2a57'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ('queued', 'rejected')


def upgrade() -> None:
    for status in STATUSES:
        where = sa.text(f"status = '{status}'")
        op.create_index(
            f'ix_event_log_{status}',
            'event_log',
            ['id'],
            unique=False,
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    for status in STATUSES:
        op.drop_index(f'ix_event_log_{status}', table_name='event_log')
