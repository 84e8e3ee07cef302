"""Shared fixtures: a migrated database per test, on SQLite always and PostgreSQL when configured.

`TEST_DATABASE_URL` (e.g. postgresql://postgres@127.0.0.1:5432/test) names a server and a database
to connect to; the suite creates its own database per worker beside it and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storage.db import make_engine, make_session_factory, normalise_url
from storage.migrate import upgrade
from storage.tables import DERIVED_TABLES, ChangedAccount, DataRevision, EventLog, OutboxMessage

# Property tests assert behaviour, not speed (speed is `make bench`'s): no per-example deadline,
# which a loaded CI machine would turn into flaky failures.
settings.register_profile("kpibot", deadline=None)
settings.load_profile("kpibot")

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "kpibot.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    server = make_url(normalise_url(os.environ["TEST_DATABASE_URL"]))
    name = f"kpibot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """The URL of an empty, migrated database, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "kpibot.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    engine = make_engine(url)
    kept = (*DERIVED_TABLES, EventLog, OutboxMessage, DataRevision, ChangedAccount)
    tables = ", ".join(t.__tablename__ for t in kept)  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test database."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory on the test database."""
    return make_session_factory(engine)
