"""account.versions: the time of the event that set each field, attribute and domain

Segment's group calls only carry the traits that changed, so they are merges: they set what they
give and keep the rest. Applying merges and full account events in any arrival order with the
result of event time order needs each part's time (see storage/account_state.py). Existing rows
get '{}', read as "everything dates from updated_at".

Revision ID: 9d1c6e3b2a57
Revises: 7b4e2f9a0c61
Create Date: 2026-12-07 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '9d1c6e3b2a57'
down_revision: str | None = '7b4e2f9a0c61'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('versions', sa.JSON(), server_default='{}', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('versions')
