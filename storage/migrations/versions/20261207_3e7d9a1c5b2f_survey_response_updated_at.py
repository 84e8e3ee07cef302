"""survey_response.updated_at: the stored version's time, apart from when the respondent answered

A response's later versions (Delighted's survey_response.updated when a comment is added) are
ordered by their own time, but the response keeps counting on the day it was answered
(`responded_at`, `day`). Existing rows: both were the event's time, so updated_at starts equal.

Revision ID: 3e7d9a1c5b2f
Revises: 8c1f5e2a9b3d
Create Date: 2026-12-07 03:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types


revision: str = '3e7d9a1c5b2f'
down_revision: str | None = '8c1f5e2a9b3d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('updated_at', storage.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute('UPDATE survey_response SET updated_at = responded_at')
    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.alter_column(
            'updated_at',
            existing_type=storage.types.UTCDateTime(timezone=True),
            nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
