"""subscription_version.event_log_id: kept, no longer a foreign key

The column says which logged event made the version; the event log is append-only and versions are
written in the transaction that logs their event, so the constraint guarded nothing the code does
not. It cost every version written on PostgreSQL a trigger that locks its log row (about half the
cost of inserting the version on the reference data), and, with no index on the column, every log
row a replay deletes a scan of the whole version table on both databases (4.5 ms a row on SQLite's
reference data, growing with the store).

Revision ID: d5a7c9e1f3b4
Revises: c4f6b8d0e2a1
Create Date: 2026-12-07 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = 'd5a7c9e1f3b4'
down_revision: str | None = 'c4f6b8d0e2a1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL's own name for the initial schema's unnamed constraint; SQLite's has none, and
# batch mode names it by this convention to drop it.
NAME = 'subscription_version_event_log_id_fkey'
CONVENTION = {'fk': '%(table_name)s_%(column_0_name)s_fkey'}


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(NAME, 'subscription_version', type_='foreignkey')
        return
    with op.batch_alter_table('subscription_version', naming_convention=CONVENTION) as batch_op:
        batch_op.drop_constraint(NAME, type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('subscription_version') as batch_op:
        batch_op.create_foreign_key(NAME, 'event_log', ['event_log_id'], ['id'])
