"""Per-account change marks (changed_account) and a version counter on data_revision

Usage changes all day long (every product event), so its readers keep it per account and reload
only the accounts marked since the version they hold; see storage/revisions.py.

Revision ID: 6d2a8c4b9e1f
Revises: 5b0c3f1e7a2d
Create Date: 2026-11-23 17:20:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '6d2a8c4b9e1f'
down_revision: str | None = '5b0c3f1e7a2d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('data_revision', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('version', sa.BigInteger(), server_default='0', nullable=False)
        )
    op.create_table('changed_account',
    sa.Column('family', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('family', 'account_id')
    )
    with op.batch_alter_table('changed_account', schema=None) as batch_op:
        batch_op.create_index('ix_changed_account_version', ['family', 'version'], unique=False)
    revisions = sa.table(
        'data_revision',
        sa.column('name'),
        sa.column('token'),
        sa.column('changed_at', storage.types.UTCDateTime(timezone=True)),
    )
    op.bulk_insert(
        revisions, [{'name': 'usage', 'token': uuid.uuid4().hex, 'changed_at': datetime.now(UTC)}]
    )


def downgrade() -> None:
    op.execute("DELETE FROM data_revision WHERE name = 'usage'")
    with op.batch_alter_table('changed_account', schema=None) as batch_op:
        batch_op.drop_index('ix_changed_account_version')
    op.drop_table('changed_account')
    with op.batch_alter_table('data_revision', schema=None) as batch_op:
        batch_op.drop_column('version')
