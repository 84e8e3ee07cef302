"""data_revision (tokens that change with derived data) and covering indexes for the metrics

Revision ID: 5b0c3f1e7a2d
Revises: 4e971d60ddbe
Create Date: 2026-11-23 14:40:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '5b0c3f1e7a2d'
down_revision: str | None = '4e971d60ddbe'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('data_revision',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('changed_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    # A store upgraded with data in it gets its first token now, so readers may cache at once.
    revisions = sa.table('data_revision', sa.column('name'), sa.column('token'), sa.column('changed_at'))
    op.bulk_insert(
        revisions,
        [
            {'name': name, 'token': uuid.uuid4().hex, 'changed_at': datetime.now(UTC)}
            for name in ('stocks', 'surveys')
        ],
    )


    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index('ix_invoice_day')
        batch_op.create_index(
            'ix_invoice_day_cover', ['day', 'account_id', 'amount_reporting'], unique=False
        )
    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.drop_index('ix_survey_response_kind_day')
        batch_op.create_index(
            'ix_survey_response_kind_day_cover',
            ['kind', 'day', 'account_id', 'score', 'scale_min', 'scale_max'],
            unique=False,
        )
        batch_op.create_index(
            'ix_survey_response_latest',
            ['kind', 'account_id', 'responded_at', 'response_id', 'day', 'score', 'scale_min',
             'scale_max'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('survey_response', schema=None) as batch_op:
        batch_op.drop_index('ix_survey_response_latest')
        batch_op.drop_index('ix_survey_response_kind_day_cover')
        batch_op.create_index('ix_survey_response_kind_day', ['kind', 'day'], unique=False)
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index('ix_invoice_day_cover')
        batch_op.create_index('ix_invoice_day', ['day'], unique=False)
    op.drop_table('data_revision')
