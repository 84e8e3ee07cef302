"""What keeps a usage day the same whatever order its events arrive in

usage_day.reported_at: the time of the latest full report of the day (NULL: merges only);
usage_day.merged_at: each user merged after that report, with the latest time (JSON). Rows written
before have neither: `storage.apply.UsageDayState.stored` reads them as merges at their
`recorded_at`, and `kpibot rebuild` recomputes them exactly from the event log.

Revision ID: 8c1f5e2a9b3d
Revises: 6d2a8c4b9e1f
Create Date: 2026-12-07 03:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types


revision: str = '8c1f5e2a9b3d'
down_revision: str | None = '6d2a8c4b9e1f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('usage_day', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('reported_at', storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column('merged_at', sa.JSON(), server_default='{}', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('usage_day', schema=None) as batch_op:
        batch_op.drop_column('merged_at')
        batch_op.drop_column('reported_at')
