"""Re-deriving some accounts' MRR movements reads their rows only, never the store's whole tables:
each webhook group does it for the accounts it touches, so a whole-table read would grow with the
store (on PostgreSQL it hashed every version and movement: 20 ms a group on the reference data)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from storage.apply import Applier, IngestConfig
from storage.db import analyze, session_scope
from storage.tables import MrrMovement, SubscriptionVersion, table_of
from tests.query_plans import query_plan, statements_run

ACCOUNTS = 2_000
DERIVED = 400  # what a webhook group of the benchmark touches
TABLES = ("subscription_version", "mrr_movement")


def _store(engine: Engine) -> None:
    """Three versions and a movement per account, as `analyze`d statistics say they are."""
    start = datetime(2024, 1, 1, 9, tzinfo=UTC)
    versions, movements = [], []
    for n in range(ACCOUNTS):
        account = f"acc-{n:05d}"
        for k in range(3):
            versions.append(
                {
                    "subscription_id": f"sub-{n:05d}",
                    "account_id": account,
                    "effective_at": start + timedelta(days=30 * k + n % 30),
                    "status": "active",
                    "amount": Decimal("49.00"),
                    "currency": "USD",
                    "interval": "month",
                    "interval_count": 1,
                    "quantity": k + 1,
                    "mrr": Decimal(49 * (k + 1)),
                }
            )
        movements.append(
            {
                "account_id": account,
                "day": date(2024, 1, 1) + timedelta(days=n % 30),
                "occurred_at": start + timedelta(days=n % 30),
                "kind": "new",
                "amount": Decimal("49.00"),
                "mrr_before": Decimal("0.00"),
                "mrr_after": Decimal("49.00"),
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(table_of(SubscriptionVersion)), versions)
        connection.execute(insert(table_of(MrrMovement)), movements)
    analyze(engine)


def _reads_the_tables(statement: str) -> bool:
    return statement.lstrip().upper().startswith(("WITH", "SELECT")) and any(
        t in statement for t in TABLES
    )


def _whole_table_reads(engine: Engine, statement: str, parameters: Any) -> list[str]:
    """The plan's steps that read one of `TABLES` whole."""
    with engine.connect() as connection:
        plan = query_plan(connection, statement, parameters)
    if engine.dialect.name == "sqlite":
        # SQLite names each table by its alias: any SCAN but of the bound rows (json_each) or
        # of a subquery's materialised result reads a table whole.
        return [
            step
            for step in plan
            if step.startswith("SCAN ")
            and "VIRTUAL TABLE" not in step
            and step.split()[1] not in {"owned", "start"}
        ]
    return [step for step in plan if any(f"Seq Scan on {t}" in step for t in TABLES)]


def test_deriving_some_accounts_reads_only_their_rows(engine, session_factory):
    _store(engine)
    since = {f"acc-{n:05d}": date(2024, 2, 15) for n in range(0, ACCOUNTS, ACCOUNTS // DERIVED)}
    with (
        statements_run(engine, _reads_the_tables) as statements,
        session_scope(session_factory) as session,
    ):
        Applier(session, IngestConfig()).derive_movements(since)
    assert len(statements) >= 2  # the versions in force and since, the movements since
    for statement, parameters in statements:
        assert _whole_table_reads(engine, statement, parameters) == [], statement
