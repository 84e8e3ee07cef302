"""Engines and sessions: SQLite set up for concurrent use, PostgreSQL through psycopg 3."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.types import storable

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_OPTION = "kpibot_read_only"


def normalise_url(url: str) -> str:
    """Return `url` with the psycopg 3 driver made explicit for PostgreSQL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def dumps(value: Any) -> str:
    """Serialise `value` as compact JSON (orjson; the standard library for >64-bit integers,
    and for text holding half of a surrogate pair, which it writes as its `\\u` escape)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        if storable(text):
            return text
        return json.dumps(value, separators=(",", ":"), default=str)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url`; SQLite files get WAL, a busy timeout and foreign keys."""
    url = normalise_url(url)
    kwargs.setdefault("json_serializer", dumps)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off so that `_begin_immediate` decides:
    # a writer takes the lock at BEGIN and waits for it, instead of failing mid-transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A webhook is answered 2xx once its commit is durable: in WAL mode, NORMAL survives a crash
    # of the process but may lose the last commits on a power cut or an OS crash. FULL syncs the
    # WAL at each commit; group commit makes that one sync per group (no change on `make bench`).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _begin(connection: Any) -> None:
    # Readers never block writers in WAL mode; a writer takes the write lock up front.
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def read_only(engine: Engine) -> Engine:
    """Return a view of `engine` for read-only work (on SQLite: a deferred, non-locking BEGIN)."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def analyze(engine: Engine) -> None:
    """Refresh the planner's statistics after a bulk load (and, on PostgreSQL, vacuum it).

    Without it a freshly loaded PostgreSQL database reads the heap behind every index-only scan
    until autovacuum comes by, and both planners guess row counts.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def refresh_statistics(engine: Engine) -> None:
    """On PostgreSQL, sample fresh planner statistics (ANALYZE) while a bulk load goes on.

    A table that was never analyzed has no column statistics: the planner then takes a lookup of
    a few accounts (`account_id IN (…)`) for a large share of the table and scans all of it, so
    each batch of a load costs more than the one before. SQLite needs nothing (its plans here
    follow the indexes without statistics), and its ANALYZE would hold the write lock.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# The drivers' own errors, for statements run on their cursors (COPY) when SQLAlchemy does not
# wrap what they raise: their data and constraint errors, and all of them.
_DRIVER_DATA_ERRORS = (
    sqlite3.DataError,
    sqlite3.IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
)
_DRIVER_ERRORS = (sqlite3.Error, psycopg.Error)


def fault_of_the_events(error: Exception) -> bool:
    """Whether a failure comes from the events (their data, or a bug they trigger) rather than
    from the database being unavailable (which retrying later gets past)."""
    if isinstance(error, (DataError, IntegrityError, *_DRIVER_DATA_ERRORS)):
        return True  # a value out of range, a constraint
    # connection, pool timeout, lock: the database
    return not isinstance(error, (SQLAlchemyError, *_DRIVER_ERRORS))


def transient(error: DBAPIError) -> bool:
    """A failure that the same transaction, run again, can get past (deadlock, lock timeout)."""
    code = getattr(error.orig, "sqlstate", None)  # psycopg
    if code in ("40P01", "40001", "55P03"):  # deadlock, serialization failure, lock unavailable
        return True
    return "database is locked" in str(error.orig)  # SQLite past its busy timeout
