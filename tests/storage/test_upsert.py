"""Bulk upserts: the COPY path PostgreSQL takes for large batches writes what the plain one does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlalchemy import Engine, delete, event, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import StatementError

from storage import upsert
from storage.db import session_scope
from storage.tables import Account, Invoice, MrrMovement, Subscription, UsageDay
from storage.types import UTCDateTime
from storage.upsert import COPY_THRESHOLD, insert_ignoring_conflicts, upsert_newer

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
ROWS = COPY_THRESHOLD * 3  # every batch below is past the threshold


def _usage_day(n: int, *, hours: int, users: list[str]) -> dict[str, Any]:
    return {
        "account_id": f"acc-{n % 7}",
        "day": date(2026, 1, 1) + timedelta(days=n),
        "active_users": len(users),
        "user_ids": users,
        "recorded_at": T0 + timedelta(hours=hours),
    }


def _invoice(n: int, *, hours: int, cents: int) -> dict[str, Any]:
    return {
        "invoice_id": f"inv-{n:04d}",
        "account_id": f"acc-{n % 7}",
        "paid_at": T0 + timedelta(hours=hours),
        "day": date(2026, 3, 1),
        "amount": Decimal(cents) / 100,
        "currency": "EUR",
        "amount_reporting": Decimal(cents * 11) / 1000,  # half a cent: rounded when stored
    }


def _movement(n: int, *, cents: int) -> dict[str, Any]:
    return {
        "account_id": f"acc-{n:04d}",
        "day": date(2026, 3, 1),
        "occurred_at": T0,
        "kind": "new",
        "amount": Decimal(cents) / 100,
        "mrr_before": Decimal(0),
        "mrr_after": Decimal(cents) / 100,
    }


def _write_batches(session_factory) -> dict[str, Any]:
    """Stored rows, then a batch of older, newer and new versions of them; what came back."""
    with session_scope(session_factory) as session:
        upsert_newer(
            session,
            UsageDay,
            [_usage_day(n, hours=10, users=[f"u{n}"]) for n in range(ROWS)],
            key=("account_id", "day"),
            version="recorded_at",
        )
        upsert_newer(
            session,
            Invoice,
            [_invoice(n, hours=10, cents=1000 + n) for n in range(ROWS)],
            key=("invoice_id",),
            version="paid_at",
        )
        first = insert_ignoring_conflicts(
            session, MrrMovement, [_movement(n, cents=100) for n in range(ROWS)], returning=("id",)
        )
    # Even rows are older than the stored ones (kept out), odd rows newer, the last third new;
    # the same instant as the stored one counts as not older.
    usage = [
        _usage_day(n, hours=10 + (n % 2 or -1) * (n % 3), users=[f"v{n}", f"w{n}", "ü\"'\\,\t"])
        for n in range(ROWS // 3, ROWS + ROWS // 3)
    ]
    invoices = [
        _invoice(n, hours=10 + (n % 2 or -1) * (n % 3), cents=5000 + n)
        for n in range(ROWS // 3, ROWS + ROWS // 3)
    ]
    movements = [_movement(n, cents=200) for n in range(ROWS // 3, ROWS + ROWS // 3)]
    with session_scope(session_factory) as session:
        won_usage = upsert_newer(
            session,
            UsageDay,
            usage,
            key=("account_id", "day"),
            version="recorded_at",
            returning=("account_id", "day", "recorded_at"),
        )
        won_invoices = upsert_newer(
            session,
            Invoice,
            invoices,
            key=("invoice_id",),
            version="paid_at",
            returning=("invoice_id", "paid_at"),
        )
        added = insert_ignoring_conflicts(
            session, MrrMovement, movements, returning=("account_id", "amount")
        )
        # Without a version, every row replaces the stored one.
        upsert_newer(
            session,
            Account,
            [
                {
                    "account_id": f"acc-{n}",
                    "name": f"Acc {n}",
                    "domains": [],
                    "attributes": {},
                    "updated_at": T0 + timedelta(days=n % 2),
                }
                for n in range(ROWS)
            ],
            key=("account_id",),
        )
    with session_scope(session_factory) as session:
        return {
            "won_usage": sorted(tuple(r) for r in won_usage),
            "won_invoices": sorted(tuple(r) for r in won_invoices),
            "first_movements": len(first),
            "added_movements": sorted(tuple(r) for r in added),
            "usage": [
                (r.account_id, r.day, r.active_users, r.user_ids, r.recorded_at)
                for r in session.scalars(
                    select(UsageDay).order_by(UsageDay.account_id, UsageDay.day)
                )
            ],
            "invoices": [
                (r.invoice_id, r.paid_at, r.amount, r.amount_reporting)
                for r in session.scalars(select(Invoice).order_by(Invoice.invoice_id))
            ],
            "movements": [
                (r.account_id, r.amount)
                for r in session.scalars(select(MrrMovement).order_by(MrrMovement.account_id))
            ],
            "accounts": [
                (r.account_id, r.updated_at)
                for r in session.scalars(select(Account).order_by(Account.account_id))
            ],
        }


def _empty(session_factory) -> None:
    with session_scope(session_factory) as session:
        for table in (UsageDay, Invoice, MrrMovement, Account):
            session.execute(delete(table))


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


def test_a_large_upsert_writes_and_returns_what_the_plain_statement_does(
    engine, session_factory, monkeypatch
):
    statements = _statements(engine)
    monkeypatch.setattr(upsert, "COPY_THRESHOLD", 10**9)
    plain = _write_batches(session_factory)
    assert not any("copy_" in s for s in statements)
    _empty(session_factory)
    monkeypatch.undo()
    statements.clear()
    copied = _write_batches(session_factory)
    if engine.dialect.name == "postgresql":
        assert sum("FROM copy_" in s for s in statements) == 7
    assert copied == plain

    kept, stored = ROWS // 3, ROWS + ROWS // 3
    newer_or_same = [n for n in range(kept, ROWS) if n % 2 or n % 3 == 0]
    assert len(plain["won_usage"]) == len(newer_or_same) + kept
    assert len(plain["won_invoices"]) == len(newer_or_same) + kept
    assert len(plain["usage"]) == len(plain["invoices"]) == stored
    assert plain["first_movements"] == ROWS
    assert plain["added_movements"] == [
        (f"acc-{n:04d}", Decimal("2.00")) for n in range(ROWS, stored)
    ]
    invoices = {invoice_id: amount for invoice_id, _, amount, _ in plain["invoices"]}
    for n in range(stored):
        replaced = n >= ROWS or (n >= kept and n in newer_or_same)
        assert invoices[f"inv-{n:04d}"] == Decimal(5000 + n if replaced else 1000 + n) / 100
    usage = {(a, d): users for a, d, _, users, _ in plain["usage"]}
    assert usage[(f"acc-{ROWS % 7}", date(2026, 1, 1) + timedelta(days=ROWS))] == [
        f"v{ROWS}",
        f"w{ROWS}",
        "ü\"'\\,\t",
    ]
    assert [a for a in plain["accounts"] if a[0] == "acc-1"] == [("acc-1", T0 + timedelta(days=1))]


def test_an_upsert_sees_what_the_session_has_pending(session_factory):
    # Upserts run on the session's connection: what the session holds unflushed is written
    # first, as the ORM's autoflush would have, so the upsert meets the row instead of a
    # duplicate key at commit.
    with session_scope(session_factory) as session:
        session.add(Account(account_id="acc-pending", name="Before", updated_at=T0))
        won = upsert_newer(
            session,
            Account,
            [
                {
                    "account_id": "acc-pending",
                    "name": "After",
                    "domains": [],
                    "attributes": {},
                    "updated_at": T0 + timedelta(days=1),
                }
            ],
            key=("account_id",),
            version="updated_at",
            returning=("account_id",),
        )
        assert [tuple(row) for row in won] == [("acc-pending",)]
    with session_scope(session_factory) as session:
        names = list(session.scalars(select(Account.name)))
    assert names == ["After"]


def _raw_rows(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    """The values as the database holds them (no type processing on the way back)."""
    with engine.connect() as connection:
        return list(connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1, 2"))


def test_a_bulk_write_stores_what_sqlalchemys_own_statement_stores(engine, session_factory):
    # On SQLite, rows written without RETURNING go through the driver's executemany with each
    # column processed in one go (`upsert._execute_many_sqlite`); with RETURNING, through
    # SQLAlchemy. Both must store the very same values: instants in any zone with microseconds,
    # money, dates, JSON.
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
    usage = [
        {
            **_usage_day(n, hours=n, users=[f"u{n}", "ü\"'\\,\t"]),
            "recorded_at": datetime(2026, 3, 1, 23, 59, 59, n * 7919, tzinfo=zones[n % 3]),
        }
        for n in range(60)
    ]
    invoices = [
        {**_invoice(n, hours=n, cents=100_000 + n), "paid_at": usage[n]["recorded_at"]}
        for n in range(60)
    ]
    stored = {}
    for returning in (("account_id",), ()):
        with session_scope(session_factory) as session:
            upsert_newer(session, UsageDay, usage, key=("account_id", "day"), returning=returning)
            upsert_newer(
                session,
                Invoice,
                invoices,
                key=("invoice_id",),
                returning=("invoice_id",) if returning else (),
            )
        stored[returning] = _raw_rows(engine, "usage_day"), _raw_rows(engine, "invoice")
        _empty(session_factory)
    assert stored[("account_id",)] == stored[()]
    assert len(stored[()][0]) == len(stored[()][1]) == 60


@given(
    instant=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2999, 12, 30),
        timezones=st.one_of(
            st.timezones(),
            st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23))),
            st.just(TypeAdapter(datetime).validate_python("2026-03-01T09:00:00Z").tzinfo),
        ),
    )
)
@settings(max_examples=300, deadline=None)
def test_the_sqlite_text_of_an_instant_is_sqlalchemys(instant):
    dialect = sqlite.dialect()
    processed = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert UTCDateTime.sqlite_text(instant) == processed(instant)


class _NoOffset(tzinfo):
    """A time zone that gives no offset: its instants are as naive as those without one."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None


@pytest.mark.parametrize(
    "instant", [datetime(2026, 3, 1, 9), datetime(2026, 3, 1, 9, tzinfo=_NoOffset())]
)
def test_a_naive_instant_is_refused_by_both_sqlite_texts(instant):
    # (SQLAlchemy's way would take a zone without an offset for the machine's local time.)
    dialect = sqlite.dialect()
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime.sqlite_text(instant)
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(instant, dialect)


def _subscription(n: int, **leave_out: bool) -> dict[str, Any]:
    row = {
        "subscription_id": f"sub-{n}",
        "account_id": "acc-1",
        "status": "active",
        "amount": Decimal("10.00"),
        "currency": "USD",
        "interval": "month",
        "interval_count": 2,
        "quantity": 3,
        "mrr": Decimal("15.00"),
        "updated_at": T0,
    }
    return {name: value for name, value in row.items() if not leave_out.get(name)}


def test_a_bulk_write_leaving_out_a_column_with_a_default_gets_the_default(session_factory):
    # The columns' defaults are SQLAlchemy's to fill in: such rows take its own statement.
    rows = [_subscription(n, interval_count=True, quantity=True) for n in range(3)]
    with session_scope(session_factory) as session:
        upsert_newer(session, Subscription, rows, key=("subscription_id",))
    with session_scope(session_factory) as session:
        stored = session.execute(select(Subscription.interval_count, Subscription.quantity))
        assert list(stored) == [(1, 1)] * 3


def test_a_bulk_write_of_rows_giving_other_columns_is_refused_as_sqlalchemy_refuses_it(
    session_factory,
):
    rows = [_subscription(1), _subscription(2, mrr=True)]
    with pytest.raises(StatementError, match="mrr"), session_scope(session_factory) as session:
        upsert_newer(session, Subscription, rows, key=("subscription_id",))
