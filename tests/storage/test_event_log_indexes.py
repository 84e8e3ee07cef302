"""The event log's indexes and constraints: each one a query needs, and no other (each costs every
logged row)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect

from metrics.compute import data_as_of
from storage.apply import IngestConfig
from storage.db import session_scope
from storage.ingest import ingest_events
from tests.builders import make_invoice
from tests.query_plans import query_plan, statements_run


def test_the_freshness_of_the_figures_is_read_from_the_status_index(engine, session_factory):
    """Every answer says how fresh its data is: the latest applied event, over a million logged
    rows on the reference data. It must seek an index, not read the log."""
    with session_scope(session_factory) as session:
        ingest_events(
            session,
            [make_invoice(f"2026-01-{n + 1:02d}", invoice_id=f"i{n}") for n in range(20)],
            config=IngestConfig(),
        )
    with (
        statements_run(engine, lambda statement: "event_log" in statement) as statements,
        session_scope(session_factory) as session,
    ):
        assert data_as_of(session) == datetime(2026, 1, 20, 12, tzinfo=UTC)
    assert len(statements) == 1
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":  # a table this small would be read whole anyway
            connection.exec_driver_sql("SET enable_seqscan = off")
        plan = " ".join(query_plan(connection, *statements[0]))
    assert "ix_event_log_status_occurred_at" in plan, plan


def test_the_log_has_no_index_of_event_time_alone(engine):
    """No query reads the log by its events' time alone; such an index cost each logged row a
    third of its write on the reference data (SQLite)."""
    indexed = {tuple(index["column_names"]) for index in inspect(engine).get_indexes("event_log")}
    assert ("status", "occurred_at") in indexed
    assert ("occurred_at",) not in indexed


def test_no_table_references_the_log_by_a_foreign_key(engine):
    """Derived rows name the logged event that made them (`subscription_version.event_log_id`)
    without a foreign key: on PostgreSQL one cost each version written a trigger locking its log
    row, and on both databases each log row a replay deletes a scan of the referencing table."""
    inspector = inspect(engine)
    referencing = [
        (table, key["constrained_columns"])
        for table in inspector.get_table_names()
        for key in inspector.get_foreign_keys(table)
        if key["referred_table"] == "event_log"
    ]
    assert referencing == []
    assert "event_log_id" in {c["name"] for c in inspector.get_columns("subscription_version")}
