"""Events logged as `queued` (`ingest_events(defer=True)`), applied later (`storage.deferred`)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from storage import revisions
from storage.apply import IngestConfig
from storage.db import session_scope
from storage.deferred import Queued, apply_queued, queued_rows, remap
from storage.deliveries import list_events, replay_rejected
from storage.ingest import IngestReport, ingest_events, mark_rejected
from storage.revisions import STOCKS
from storage.tables import EventLog, Invoice
from tests.builders import make_fx, make_invoice, make_subscription, movements
from tests.query_plans import query_plan, statements_run

CONFIG = IngestConfig()


def accept(factory: Any, events: list[Any]) -> IngestReport:
    """What the webhook routes do: log the events as queued, in one transaction."""
    with session_scope(factory) as session:
        return ingest_events(session, events, config=CONFIG, defer=True)


def handed(factory: Any, report: IngestReport) -> list[Queued]:
    """What the webhook routes hand the apply worker: each event with the instant it was logged."""
    ids = [item.log_id for item in report.deferred]
    with session_scope(factory) as session:
        logged = dict(
            session.execute(
                select(EventLog.id, EventLog.received_at).where(EventLog.id.in_(ids))  # type: ignore[union-attr]
            ).all()
        )
    return [Queued("kpibot", item, logged[item.log_id]) for item in report.deferred]


def apply(factory: Any, queued: IngestReport | list[Queued]) -> Any:
    if isinstance(queued, IngestReport):
        queued = handed(factory, queued)
    with session_scope(factory) as session:
        return apply_queued(session, queued, config=CONFIG)


def statuses(factory: Any) -> dict[str, str]:
    with session_scope(factory) as session:
        return {e.event_id or "": e.status for e in list_events(session)}


def test_accepted_events_are_logged_as_queued_and_change_nothing_yet(session_factory):
    subscription = make_subscription("2026-02-10")
    with session_scope(session_factory) as session:
        before = revisions.state(session, STOCKS)
    unused = {
        "id": "odd",
        "type": "thing.unused",
        "occurred_at": "2026-02-10T00:00:00Z",
        "data": {},
    }
    report = accept(session_factory, [subscription, unused])

    assert (report.queued, report.ignored, report.applied) == (1, 1, 0)
    assert [item.event.event_id for item in report.deferred] == [subscription["id"]]
    assert statuses(session_factory) == {subscription["id"]: "queued", "odd": "ignored"}
    assert movements(session_factory) == []
    with session_scope(session_factory) as session:
        assert revisions.state(session, STOCKS) == before


def test_applying_marks_each_row_applied_and_renews_what_readers_watch(session_factory):
    subscription = make_subscription("2026-02-10")
    report = accept(session_factory, [subscription])
    with session_scope(session_factory) as session:
        before = revisions.state(session, STOCKS)

    result = apply(session_factory, report)

    assert result.applied == 1 and result.counts[("kpibot", "applied")] == 1
    assert statuses(session_factory) == {subscription["id"]: "applied"}
    assert movements(session_factory) == [("2026-02-10", "new", "50.00")]
    with session_scope(session_factory) as session:
        assert revisions.state(session, STOCKS) != before


def test_a_row_is_applied_once_even_when_handed_twice(session_factory):
    report = accept(session_factory, [make_subscription("2026-02-10")])
    assert apply(session_factory, report).applied == 1
    again = apply(session_factory, report)
    assert (again.applied, again.skipped) == (0, 1)
    assert movements(session_factory) == [("2026-02-10", "new", "50.00")]


def test_a_row_another_transaction_is_applying_is_applied_once(session_factory):
    """Two transactions reach for the same queued row at once (two replicas): the second waits
    for the first (PostgreSQL: the account's lock, taken before the claim as `ingest_events`
    takes it; SQLite: the single writer), then finds the row applied and leaves it."""
    report = accept(session_factory, [make_subscription("2026-02-10")])
    queued = handed(session_factory, report)
    first_claimed, release = threading.Event(), threading.Event()
    results: list[Any] = []

    def first() -> None:
        with session_scope(session_factory) as session:
            results.append(apply_queued(session, queued, config=CONFIG))
            first_claimed.set()
            release.wait(10)

    def second() -> None:
        with session_scope(session_factory) as session:
            results.append(apply_queued(session, queued, config=CONFIG))

    holder = threading.Thread(target=first)
    holder.start()
    assert first_claimed.wait(10)
    follower = threading.Thread(target=second)
    follower.start()
    time.sleep(0.3)
    assert follower.is_alive()  # it waits for the first
    release.set()
    holder.join(10)
    follower.join(10)
    assert [(r.applied, r.skipped) for r in results] == [(1, 0), (0, 1)]
    assert movements(session_factory) == [("2026-02-10", "new", "50.00")]


def test_a_missing_rate_rejects_the_row_with_its_reason_for_a_replay(session_factory):
    euro = make_subscription("2026-02-10", currency="EUR", amount="100.00")
    dollars = make_invoice("2026-02-11")
    result = apply(session_factory, accept(session_factory, [euro, dollars]))

    assert result.counts == {("kpibot", "applied"): 1, ("kpibot", "rejected"): 1}
    assert statuses(session_factory) == {euro["id"]: "rejected", dollars["id"]: "applied"}
    with session_scope(session_factory) as session:
        [row] = list_events(session, status="rejected")
    assert "no exchange rate EUR→USD" in (row.reason or "")

    accept_and_apply = accept(session_factory, [make_fx("2026-02-01", "1.10")])
    apply(session_factory, accept_and_apply)
    replayed = replay_rejected(session_factory, config=CONFIG, ids=[row.id])
    assert (replayed.applied, replayed.rejected) == (1, 0)
    assert movements(session_factory) == [("2026-02-10", "new", "110.00")]


def test_leftover_rows_are_read_back_mapped_again_and_applied(session_factory):
    # Ids in log order whatever the builders' counter is at (rows are logged in id order).
    invoice = {**make_invoice("2026-02-11"), "id": "leftover-1"}
    other = {**make_invoice("2026-02-12"), "id": "leftover-2"}
    accept(session_factory, [invoice, other])  # handed to nobody: a process that stopped
    with session_scope(session_factory) as session:
        session.execute(  # a body that no longer maps to its event (edited by hand, say)
            update(EventLog).where(EventLog.event_id == other["id"]).values(body="{}")
        )
    later = datetime.now(UTC) + timedelta(seconds=1)

    with session_scope(session_factory) as session:
        too_recent = queued_rows(
            session, received_before=later - timedelta(hours=1), after_id=0, limit=10
        )
        rows = queued_rows(session, received_before=later, after_id=0, limit=10)
        after_first = queued_rows(session, received_before=later, after_id=rows[0].id, limit=10)
    assert too_recent == []  # still in the hands of the process that accepted them
    assert [row.event_id for row in rows] == [invoice["id"], other["id"]]
    assert [row.event_id for row in after_first] == [other["id"]]

    queued, broken = remap(rows, lambda _source: {})
    assert [q.item.event.event_id for q in queued] == [invoice["id"]]
    assert [reason for _log_id, reason in broken] == [
        "id: Field required; type: Field required; occurred_at: Field required; "
        "data: Field required"
    ]
    with session_scope(session_factory) as session:
        assert mark_rejected(session, broken, still_queued=True) == 1
        apply_queued(session, queued, config=CONFIG)
        assert session.scalars(select(Invoice.invoice_id)).all() == [invoice["data"]["invoice_id"]]
        assert (
            mark_rejected(session, broken, still_queued=True) == 0
        )  # rejected already: left as is
    assert statuses(session_factory) == {invoice["id"]: "applied", other["id"]: "rejected"}


def test_an_earlier_delivery_still_held_never_takes_the_row_of_its_fixed_resend(session_factory):
    """Two replicas: A holds a queued event in memory; B's sweep applies that row first and
    rejects it (no exchange rate); the sender resends it fixed, which takes its place. When A
    gets to what it holds, it must neither apply it nor reject the fixed resend."""
    euro = make_subscription("2026-02-10", currency="EUR", amount="100.00")
    held = handed(session_factory, accept(session_factory, [euro]))  # what replica A holds
    swept = apply(session_factory, held)  # replica B's sweep, with the same row
    assert swept.counts == {("kpibot", "rejected"): 1}
    fixed = {**euro, "data": {**euro["data"], "currency": "USD"}}
    resent = accept(session_factory, [fixed])
    assert resent.queued == 1 and resent.deferred[0].log_id == held[0].item.log_id

    late = apply(session_factory, held)  # replica A, at last

    assert late.counts == {} and late.skipped == 1
    assert statuses(session_factory) == {euro["id"]: "queued"}
    with session_scope(session_factory) as session:  # A giving up on what it holds
        stale = [(held[0].item.log_id, "could not be applied")]
        when = held[0].received_at
        assert mark_rejected(session, stale, still_queued=True, received_at=when) == 0
    apply(session_factory, resent)
    assert statuses(session_factory) == {euro["id"]: "applied"}
    assert movements(session_factory) == [("2026-02-10", "new", "100.00")]


def test_the_sweep_reads_queued_rows_by_their_own_index_whatever_the_statistics(
    engine, session_factory
):
    """Statistics taken while every row is applied say a status matches every row: the sweep
    (every few seconds) must not read the whole log then, nor `webhooks list --status rejected`.
    The plan is the database's own, for the statements these functions run."""
    with session_scope(session_factory) as session:
        ingest_events(
            session,
            [make_invoice("2026-01-02", invoice_id=f"i{n}") for n in range(50)],
            config=CONFIG,
        )
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        if engine.dialect.name == "sqlite":  # as on the reference data: a million applied rows
            connection.exec_driver_sql(
                "UPDATE sqlite_stat1 SET stat = '1000000 1000000 6' "
                "WHERE idx = 'ix_event_log_status_occurred_at'"
            )
            connection.exec_driver_sql("ANALYZE sqlite_schema")  # read the statistics again
        connection.commit()
    with (
        statements_run(engine, _reads_the_log_by_status) as statements,
        session_scope(session_factory) as session,
    ):
        assert queued_rows(session, received_before=datetime.now(UTC), after_id=0, limit=10) == []
        assert list_events(session, status="rejected") == []
    assert len(statements) == 2
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":  # a table this small would be read whole anyway
            connection.exec_driver_sql("SET enable_seqscan = off")
        for (statement, parameters), index in zip(
            statements, ("ix_event_log_queued", "ix_event_log_rejected"), strict=True
        ):
            plan = " ".join(query_plan(connection, statement, parameters))
            assert index in plan, plan


def _reads_the_log_by_status(statement: str) -> bool:
    return "FROM event_log" in statement and "status" in statement
