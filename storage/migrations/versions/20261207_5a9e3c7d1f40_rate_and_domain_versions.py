"""fx_rate.updated_at and account_domain.updated_at: the later event wins, whatever the arrival

A corrected rate of a pair's day, or a domain claimed by another account, is kept by event time
like every other derived row. Existing domains take their account's updated_at; existing rates,
whose event times were not kept, the epoch (any later event of their day replaces them, as before).

Revision ID: 5a9e3c7d1f40
Revises: 3e7d9a1c5b2f
Create Date: 2026-12-07 03:30:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import storage.types


revision: str = '5a9e3c7d1f40'
down_revision: str | None = '3e7d9a1c5b2f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def upgrade() -> None:
    for table in ('fx_rate', 'account_domain'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column('updated_at', storage.types.UTCDateTime(timezone=True), nullable=True)
            )
    op.execute(
        'UPDATE account_domain SET updated_at = (SELECT account.updated_at FROM account '
        'WHERE account.account_id = account_domain.account_id)'
    )
    epoch = sa.bindparam('epoch', value=_EPOCH, type_=storage.types.UTCDateTime(timezone=True))
    for table in ('fx_rate', 'account_domain'):
        op.execute(
            sa.text(f'UPDATE {table} SET updated_at = :epoch WHERE updated_at IS NULL').bindparams(
                epoch
            )
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                'updated_at',
                existing_type=storage.types.UTCDateTime(timezone=True),
                nullable=False,
            )


def downgrade() -> None:
    for table in ('account_domain', 'fx_rate'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('updated_at')
