"""Engines and sessions: SQLite set up for concurrent use, PostgreSQL through psycopg 3."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.types import storable

SQLITE_BUSY_TIMEOUT_MS = 30_000
log = logging.getLogger("kpibot.db")
READ_ONLY_OPTION = "kpibot_read_only"
LOCK_WAIT_OPTION = "kpibot_lock_wait_ms"  # see `waiting_at_most`


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
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        if storable(encoded):
            return encoded
        return json.dumps(value, separators=(",", ":"), default=str)


class DatabaseFileGone(SQLAlchemyError):
    """The SQLite file was deleted or replaced while kpibot had it open: what is committed from
    now on would be lost with the old file, so nothing is (restart kpibot to use the new one)."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url`; SQLite files get WAL, a busy timeout, foreign keys and a
    check that the file is still the one opened first (`DatabaseFileGone`) before each commit;
    PostgreSQL connections give up after `CONNECT_TIMEOUT_S` (unless the URL says otherwise)."""
    url = normalise_url(url)
    kwargs.setdefault("json_serializer", dumps)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin)
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            watch = _FileWatch(path)
            event.listen(engine, "connect", watch.opened)
            event.listen(engine, "commit", watch.check)
            engine_file_watch[engine.url] = watch
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "connect_timeout" not in parsed.query:
        kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_S})
    engine = create_engine(url, **kwargs)
    event.listen(engine, "begin", _begin_postgresql)
    return engine


CONNECT_TIMEOUT_S = 10  # a PostgreSQL server that does not answer fails health checks this soon


class _FileWatch:
    """The identity (device, inode) of a SQLite file when this process first opened it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None

    def _current(self) -> tuple[int, int] | None:
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def opened(self, _dbapi_connection: Any, _record: Any) -> None:
        if self.identity is None:
            self.identity = self._current()
        else:
            self.check()

    def check(self, *_args: Any) -> None:
        """Raise `DatabaseFileGone` unless the file is still the one first opened."""
        if self.identity is not None and self._current() != self.identity:
            raise DatabaseFileGone(
                f"the database file {self.path} was deleted or replaced while kpibot ran: "
                "restart kpibot"
            )


engine_file_watch: dict[Any, _FileWatch] = {}  # by engine URL: what `ping` checks


def ping(engine: Engine) -> None:
    """Check that the database answers a read (never waiting for SQLite's write lock) and, for a
    SQLite file, that it is still the file kpibot opened; raise if not."""
    with read_only(engine).connect() as connection:
        connection.execute(text("SELECT 1"))
        connection.rollback()
    watch = engine_file_watch.get(engine.url)
    if watch is not None:
        watch.check()


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
    options = connection.get_execution_options()
    if options.get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
        return
    wait = options.get(LOCK_WAIT_OPTION)
    if wait is None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    # Once the lock is held nothing else waits for it: the connection's own timeout comes back.
    # (The PRAGMAs go straight to the driver: through SQLAlchemy they cost a webhook's
    # transaction 90 us, a tenth of a single event's time.)
    driver = connection.connection.dbapi_connection
    driver.execute(f"PRAGMA busy_timeout={int(wait)}")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _begin_postgresql(connection: Any) -> None:
    wait = connection.get_execution_options().get(LOCK_WAIT_OPTION)
    if wait is not None:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(wait)}")


def waiting_at_most(engine: Engine, seconds: float) -> Engine:
    """Return a view of `engine` whose transactions wait at most `seconds` for a lock (SQLite's
    write lock at BEGIN, PostgreSQL's row and advisory locks), then fail with an error that
    `transient` recognises, instead of the connection's default (30 s on SQLite, no limit on
    PostgreSQL): a webhook sender gives up after 10 to 30 s, and should hear 503 before."""
    return engine.execution_options(**{LOCK_WAIT_OPTION: round(seconds * 1000)})


class WalCheckpointer:
    """Checkpoints a SQLite store's write-ahead log from its own thread, so that commits don't.

    SQLite's default is to checkpoint inside the commit that takes the log past 1,000 pages: that
    commit copies the pages into the database file and syncs it. On a large store, whose pages lie
    scattered over a gigabyte, that took a third of a busy server's write transactions
    (`make bench`, webhooks on the reference data), each writer waiting behind it. `serve` turns
    that off (`background_checkpoints`) and this thread runs a PASSIVE checkpoint every
    `interval` seconds instead: it waits for no reader or writer, and SQLite works outside
    Python's lock meanwhile. A writer then starts the log over from its beginning, so it stays
    about as large as what is written between two checkpoints (its file is cut back to
    `WAL_SIZE_LIMIT` if a long reader made it grow). At `stop`, a last checkpoint empties it.
    """

    def __init__(self, engine: Engine, *, interval: float = 0.5) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (starting again does nothing)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="kpibot-wal", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy what the log holds into the database file, as far as readers allow (PASSIVE);
        TRUNCATE, once nothing else writes, also empties the log file."""
        connection = self.engine.raw_connection()  # no transaction: no BEGIN IMMEDIATE
        try:
            connection.cursor().execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        finally:
            connection.close()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                self.checkpoint("TRUNCATE" if stopping else "PASSIVE")
            except Exception as error:  # a failed checkpoint loses nothing: the next one retries
                log.warning("WAL checkpoint failed: %s", error)
            if stopping:
                return


def background_checkpoints(engine: Engine) -> WalCheckpointer | None:
    """Have `engine`'s commits leave checkpoints to a `WalCheckpointer` (returned, not started)
    when it is a SQLite file; None otherwise. Its pooled connections are replaced, so every one
    from now on is opened with the automatic checkpoint off."""
    if engine.dialect.name != "sqlite" or engine_file_watch.get(engine.url) is None:
        return None
    event.listen(engine, "connect", _no_automatic_checkpoint)
    engine.dispose()
    return WalCheckpointer(engine)


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the log file is cut back to when a writer restarts it


def _no_automatic_checkpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
    # A reader holding an old snapshot (a long question) keeps the log from restarting: it then
    # grows, and without a limit its file would keep that size for good.
    dbapi_connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")


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


def read_only_factory(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Return a factory of read-only sessions (`read_only`) on the engine of `factory`."""
    return make_session_factory(read_only(factory.kw["bind"]))


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
