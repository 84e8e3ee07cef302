"""Engines and maintenance: durable SQLite commits; statistics refreshed during a bulk load."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from storage.db import (
    background_checkpoints,
    fault_of_the_events,
    make_engine,
    read_only,
    refresh_statistics,
    transient,
    waiting_at_most,
)
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


def _wal_growth(tmp_path, *, checkpointer: bool) -> int:
    """The WAL file's size after 40 commits of 128 KiB each, made 20 ms apart."""
    path = tmp_path / ("background.db" if checkpointer else "none.db")
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE blob (data BLOB)")
        background = background_checkpoints(engine)
        assert background is not None
        if checkpointer:
            background.interval = 0.01
            background.start()
        with engine.connect() as connection:  # commits no longer checkpoint: the thread does
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        for _ in range(40):
            with engine.begin() as connection:
                connection.exec_driver_sql("INSERT INTO blob VALUES (randomblob(131072))")
            time.sleep(0.02)
        wal = Path(f"{path}-wal")
        size = wal.stat().st_size
        if checkpointer:
            background.stop()
            assert wal.stat().st_size == 0  # the last checkpoint empties the log file
        return size
    finally:
        engine.dispose()


def test_sqlite_commits_leave_checkpoints_to_a_thread_that_keeps_the_log_small(tmp_path):
    """5 MiB are written; without the thread nothing checkpoints and the log holds them all.
    With it, a writer starts the log over after each checkpoint: it stays a few commits long."""
    mib = 1024 * 1024
    assert _wal_growth(tmp_path, checkpointer=False) > 5 * mib
    assert _wal_growth(tmp_path, checkpointer=True) < 2 * mib


def test_background_checkpoints_are_for_sqlite_files_only(engine):
    if engine.dialect.name == "postgresql":
        assert background_checkpoints(engine) is None
    memory = make_engine("sqlite://")
    try:
        assert background_checkpoints(memory) is None
    finally:
        memory.dispose()


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


def test_a_waiting_view_gives_up_on_a_taken_lock_in_its_own_time(engine):
    """`waiting_at_most` bounds a transaction's wait for a lock (webhooks must answer before
    their senders give up); the error is one `transient` knows, and the pooled connection keeps
    the default wait for everyone else (the apply worker, the command line)."""
    quick = waiting_at_most(engine, 0.2)
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as holder:
        if sqlite:
            holder.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
            holder.commit()
            holder.exec_driver_sql("INSERT INTO t VALUES (1)")  # holds the write lock
        else:
            holder.exec_driver_sql("SELECT pg_advisory_xact_lock(42)")
        started = time.monotonic()
        with pytest.raises(DBAPIError) as refused, quick.begin() as waiting:
            waiting.exec_driver_sql("SELECT 1" if sqlite else "SELECT pg_advisory_xact_lock(42)")
        assert time.monotonic() - started < 5
        assert transient(refused.value)
        holder.rollback()
    reader = read_only(engine)  # (two writers' BEGIN IMMEDIATE would wait for each other)
    with reader.connect() as first, reader.connect() as second:  # the pool's two connections
        for connection in (first, second):
            if sqlite:
                assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            else:
                assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
