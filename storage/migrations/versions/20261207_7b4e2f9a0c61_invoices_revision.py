"""A revision token for paid invoices (data_revision 'invoices')

CLV, net CLV and ARPU sum the period's invoices from a copy kept in memory per revision of the
invoices (metrics/invoices.py). Without a token nothing may be kept; the first token is given
here, so an upgraded store keeps its invoices before its next invoice event.

Revision ID: 7b4e2f9a0c61
Revises: 5a9e3c7d1f40
Create Date: 2026-12-07 05:00:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import storage.types


revision: str = '7b4e2f9a0c61'
down_revision: str | None = '5a9e3c7d1f40'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    revisions = sa.table(
        'data_revision',
        sa.column('name'),
        sa.column('token'),
        sa.column('changed_at', storage.types.UTCDateTime(timezone=True)),
    )
    op.bulk_insert(
        revisions,
        [{'name': 'invoices', 'token': uuid.uuid4().hex, 'changed_at': datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.execute("DELETE FROM data_revision WHERE name = 'invoices'")
