"""Dialect-aware bulk INSERT … ON CONFLICT, the way events are written idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import SQLModel


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined]


def _insert(session: Session, table: Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignoring_conflicts(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    *,
    returning: Sequence[str] = (),
) -> list[Any]:
    """Insert `rows`, skipping those that hit a unique key; return `returning` of the new ones."""
    if not rows:
        return []
    table = _table(model)
    statement = _insert(session, table).on_conflict_do_nothing()
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
        return list(session.execute(statement, list(rows)).all())
    session.execute(statement, list(rows))
    return []


def upsert_newer(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    version: str | None = None,
    returning: Sequence[str] = (),
) -> list[Any]:
    """Insert `rows` or update the stored row with the same `key`.

    With `version`, a stored row is only replaced by a row whose `version` column is not older,
    so events applied out of order leave the newest state. Rows must be unique by `key`.
    Returns `returning` of the rows inserted or updated.
    """
    if not rows:
        return []
    # Rows are written in key order, so concurrent writers lock them in the same order.
    rows = sorted(rows, key=lambda row: tuple(str(row[name]) for name in key))
    table = _table(model)
    statement = _insert(session, table)
    columns = [name for name in rows[0] if name not in key]
    where = None
    if version is not None:
        where = table.c[version] <= statement.excluded[version]
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in key],
        set_={name: statement.excluded[name] for name in columns},
        where=where,
    )
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
        return list(session.execute(statement, list(rows)).all())
    session.execute(statement, list(rows))
    return []


def newest_by_key(
    rows: Sequence[dict[str, Any]], *, key: Sequence[str], version: str
) -> list[dict[str, Any]]:
    """Keep one row per `key`: the one with the greatest `version` (the later one on a tie)."""
    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        identity = tuple(row[name] for name in key)
        kept = newest.get(identity)
        if kept is None or kept[version] <= row[version]:
            newest[identity] = row
    return list(newest.values())
