"""renewal.currency_given: whether the renewal's event named its currency

A renewal whose event gives no currency is in its account's currency (else the reporting currency),
and follows it when the account's currency changes, whatever order their events arrive in
(`storage.apply`). Existing rows keep the currency they were stored with (they count as given):
`kpibot rebuild` re-derives them from their events.

Revision ID: c4f6b8d0e2a1
Revises: b3e5a7c9d2f4
Create Date: 2026-12-07 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c4f6b8d0e2a1'
down_revision: str | None = 'b3e5a7c9d2f4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'renewal',
        sa.Column('currency_given', sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    with op.batch_alter_table('renewal', schema=None) as batch_op:
        batch_op.drop_column('currency_given')
