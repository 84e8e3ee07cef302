"""Engines and maintenance: durable SQLite commits; statistics refreshed during a bulk load."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from storage.db import fault_of_the_events, make_engine, refresh_statistics
from tests.builders import ingest, make_account


def _analyses(engine: Engine) -> int:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            query = "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'account'"
        else:
            query = "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
        return int(connection.scalar(text(query)) or 0)


def test_statistics_are_refreshed_on_postgresql_and_sqlite_is_left_alone(engine, session_factory):
    ingest(session_factory, [make_account(f"acc-{n}") for n in range(20)])
    before = _analyses(engine)
    refresh_statistics(engine)
    expected = before + 1 if engine.dialect.name == "postgresql" else 0
    assert _analyses(engine) == expected


def test_a_sqlite_commit_survives_a_power_cut(tmp_path):
    # WAL with synchronous=NORMAL may lose the last commits on a power cut or an OS crash; a
    # webhook answered 2xx must not be lost, so every connection syncs at commit (FULL = 2).
    engine = make_engine(f"sqlite:///{tmp_path / 'durable.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("error", "theirs"),
    [
        (psycopg.OperationalError("connection lost"), False),
        (sqlite3.OperationalError("database is locked"), False),
        (OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error")), False),
        (psycopg.errors.NumericValueOutOfRange("numeric field overflow"), True),
        (sqlite3.IntegrityError("NOT NULL constraint failed"), True),
        (ValueError("a bug the events trigger"), True),
    ],
)
def test_a_database_failure_is_not_blamed_on_the_events(error, theirs):
    # Statements on the drivers' own cursors (COPY) raise the drivers' errors: a lost connection
    # must leave the events queued for a retry, not reject them.
    assert fault_of_the_events(error) is theirs
