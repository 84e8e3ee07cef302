"""Dialect-aware bulk INSERT … ON CONFLICT, the way events are written idempotently.

On PostgreSQL, from `COPY_THRESHOLD` rows the rows are streamed with COPY into a temporary table
and inserted from it (`INSERT … SELECT … ON CONFLICT …`), in the same order and with the same
conflict rule as the plain multi-row statement: psycopg would otherwise send one statement per row
(or parse thousands of bound parameters out of one huge VALUES list when rows are returned).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from storage.tables import table_of
from storage.types import UTCDateTime

COPY_THRESHOLD = 50  # rows from which PostgreSQL is written through COPY
_ORDINAL = "copy_ordinal"  # the rows' order, so that COPY inserts (and locks) them in it
_COPY_TYPES = "kpibot_copy_types"  # connection info: temporary table → its columns' type oids


def _insert(dialect: str, table: Table) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@lru_cache(maxsize=256)
def _ignoring(dialect: str, table: Table, returning: tuple[str, ...]) -> Any:
    """The plain INSERT … ON CONFLICT DO NOTHING of `table`, built once (statements are fixed)."""
    return _returning(_insert(dialect, table).on_conflict_do_nothing(), table, returning)


@lru_cache(maxsize=256)
def _upserting(
    dialect: str,
    table: Table,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    version: str | None,
    returning: tuple[str, ...],
) -> Any:
    """The plain upsert of `table`, built once per shape: building `excluded` costs each time."""
    return _returning(
        _on_conflict(_insert(dialect, table), table, key, columns, version), table, returning
    )


def _on_conflict(
    statement: Any, table: Table, key: Sequence[str], columns: Sequence[str], version: str | None
) -> Any:
    where = None
    if version is not None:
        where = table.c[version] <= statement.excluded[version]
    return statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in key],
        set_={name: statement.excluded[name] for name in columns},
        where=where,
    )


def _returning(statement: Any, table: Table, returning: Sequence[str]) -> Any:
    if not returning:
        return statement
    return statement.returning(*(table.c[name] for name in returning))


def _by_copy(session: Session, rows: Sequence[dict[str, Any]]) -> bool:
    return len(rows) >= COPY_THRESHOLD and session.get_bind().dialect.name == "postgresql"


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
    table = table_of(model)
    if _by_copy(session, rows):
        statement = _insert_copied(session, table, rows).on_conflict_do_nothing()
        return _execute(session, _returning(statement, table, returning), returning)
    statement = _ignoring(_dialect(session), table, tuple(returning))
    return _execute(session, statement, returning, rows)


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
    # Rows are written in key order, so concurrent writers lock them in the same order (key
    # columns hold one type each, never NULL: their values compare).
    rows = sorted(rows, key=itemgetter(*key))
    table = table_of(model)
    columns = tuple(name for name in rows[0] if name not in key)
    if _by_copy(session, rows):
        copied = _insert_copied(session, table, rows)
        statement = _on_conflict(copied, table, key, columns, version)
        return _execute(session, _returning(statement, table, returning), returning)
    shape = (tuple(key), columns, version, tuple(returning))
    return _execute(session, _upserting(_dialect(session), table, *shape), returning, rows)


def _execute(
    session: Session,
    statement: Any,
    returning: Sequence[str],
    rows: Sequence[dict[str, Any]] | None = None,
) -> list[Any]:
    """Run a Core statement on the session's connection (the ORM's execution path, its events
    and identity map, costs more than the statement on small batches and serves nothing here)."""
    session.flush()  # what the ORM would have flushed before it: usually nothing, and free then
    connection = session.connection()
    sqlite_bulk = rows and not returning and connection.dialect.name == "sqlite"
    if sqlite_bulk and _execute_many_sqlite(connection, statement, rows or ()):
        return []
    parameters = None if rows is None else list(rows)
    if returning:
        return list(connection.execute(statement, parameters).all())
    connection.execute(statement, parameters)
    return []


def _execute_many_sqlite(
    connection: Connection, statement: Any, rows: Sequence[dict[str, Any]]
) -> bool:
    """SQLite: run `statement` once per row, with the DBAPI's own `executemany`.

    SQLAlchemy's `executemany` builds and processes each row's parameters one by one, which cost
    more than SQLite's work on a webhook group's thousands of rows; here the statement is compiled
    once per shape and each column's values go through its type's bind processing together (the
    same processing, so the stored values are the same).

    Returns False, having run nothing, for rows SQLAlchemy must complete or refuse itself: rows
    that leave out a column with a default, or that do not all give the same columns.
    """
    compiled = _compiled_many(statement, tuple(rows[0]), connection.dialect)
    if compiled is None:
        return False
    sql, names, processors = compiled
    columns = []
    for name, process in zip(names, processors, strict=True):
        try:
            values = [row[name] for row in rows]
        except KeyError:
            return False
        columns.append(values if process is None else _processed(values, process))
    connection.exec_driver_sql(sql, list(zip(*columns, strict=True)))
    return True


def _processed(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    """`process` each value, once per object: a batch's rows share many (the time it was
    received, say), and processing costs more than looking one up."""
    done: dict[int, Any] = {}
    out = []
    for value in values:
        key = id(value)
        if key not in done:
            done[key] = process(value)
        out.append(done[key])
    return out


@lru_cache(maxsize=256)
def _compiled_many(
    statement: Any, keys: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]] | None:
    """`statement`'s SQL for rows of `keys`, its parameters in order, and each one's processing
    (statements are built once, by `_ignoring` and `_upserting`: the cache is per statement).

    None when the SQL needs a value the rows do not give (a column's default, which SQLAlchemy
    fills in)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    names = tuple(compiled.positiontup or ())
    if not set(names) <= set(keys):
        return None
    table = statement.table
    processors = tuple(
        UTCDateTime.sqlite_text
        if isinstance(table.c[name].type, UTCDateTime)
        else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in names
    )
    return compiled.string, names, processors


def _insert_copied(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> Any:
    """COPY `rows` into a temporary table; return an INSERT into `table` that selects them all.

    Values go through each column type's own bind processing (money in hundredths, UTC
    instants, JSON), exactly as they would as bound parameters.
    """
    names = list(rows[0])
    dialect = session.get_bind().dialect
    processors: list[Callable[[Any], Any] | None] = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    digest = hashlib.blake2b(",".join(names).encode(), digest_size=4).hexdigest()
    incoming = Table(
        f"copy_{table.name}_{digest}",
        MetaData(),
        *(Column(name, table.c[name].type) for name in names),
        Column(_ORDINAL, Integer),
    )
    quote = dialect.identifier_preparer.quote
    quoted = ", ".join(quote(name) for name in names)
    connection = session.connection()
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor:
        # Created once per connection, typed like the target's columns, emptied at each commit.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(incoming.name)} ON COMMIT DELETE ROWS "
            f"AS SELECT {quoted}, 0 AS {_ORDINAL} FROM {quote(table.name)} WITH NO DATA"
        )
        cursor.execute(f"DELETE FROM {quote(incoming.name)}")
        types = connection.info.setdefault(_COPY_TYPES, {}).get(incoming.name)
        if types is None:  # the columns' type oids, for the binary format (once per connection)
            cursor.execute(f"SELECT {quoted}, {_ORDINAL} FROM {quote(incoming.name)} LIMIT 0")
            types = [column.type_code for column in cursor.description or ()]
            connection.info[_COPY_TYPES][incoming.name] = types
        with cursor.copy(
            f"COPY {quote(incoming.name)} ({quoted}, {_ORDINAL}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(types)
            for ordinal, row in enumerate(rows):
                values = [
                    row[name] if process is None else process(row[name])
                    for name, process in zip(names, processors, strict=True)
                ]
                values.append(ordinal)
                copy.write_row(values)
    source = select(*(incoming.c[name] for name in names)).order_by(incoming.c[_ORDINAL])
    return postgresql.insert(table).from_select(names, source)


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
