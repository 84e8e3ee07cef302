"""The ApplyWorker: hand-off, batches, leftovers of a stopped process, failures."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot.apply_worker import ApplyWorker
from storage.apply import Applier, IngestConfig
from storage.db import session_scope
from storage.deferred import AppliedBatch, Queued
from storage.deliveries import list_events
from storage.ingest import ingest_events
from tests.builders import PausedRebuild, event, make_invoice, make_subscription, movements

CONFIG = IngestConfig()


def accept(factory: Any, events: list[Any]) -> list[Queued]:
    received_at = datetime.now(UTC)
    with session_scope(factory) as session:
        report = ingest_events(session, events, config=CONFIG, received_at=received_at, defer=True)
    return [Queued("kpibot", item, received_at) for item in report.deferred]


def ingest_events_now(factory: Any, events: list[Any]) -> None:
    with session_scope(factory) as session:
        ingest_events(session, events, config=CONFIG)


def statuses(factory: Any) -> dict[str, tuple[str, str | None]]:
    with session_scope(factory) as session:
        return {e.event_id or "": (e.status, e.reason) for e in list_events(session)}


def until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not get there in time")
        time.sleep(0.02)


@pytest.fixture
def worker(session_factory: Any) -> Any:
    made: list[ApplyWorker] = []

    def make(**options: Any) -> ApplyWorker:
        seen: list[AppliedBatch] = []
        worker = ApplyWorker(
            session_factory,
            CONFIG,
            options_for=lambda _source: {},
            observe=seen.append,
            **options,
        )
        worker.seen = seen  # type: ignore[attr-defined]
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def test_handed_events_are_applied_together_in_one_batch(session_factory, worker):
    apply = worker(gather_seconds=(0.2, 0.2))
    first = accept(session_factory, [make_subscription("2026-02-10")])
    second = accept(session_factory, [make_invoice("2026-02-11"), make_invoice("2026-02-12")])
    apply.hand(first)
    apply.hand(second)

    assert apply.wait_idle(20)
    assert [batch.applied for batch in apply.seen] == [3]
    assert {status for status, _ in statuses(session_factory).values()} == {"applied"}
    assert movements(session_factory) == [("2026-02-10", "new", "50.00")]
    assert apply.backlog == 0


def test_what_a_stopped_process_left_queued_is_applied_at_start(session_factory, worker):
    accept(session_factory, [make_subscription("2026-02-10")])  # handed to nobody
    apply = worker(sweep_seconds=3600)  # no periodic sweep within this test: only the start's
    apply.start()
    until(lambda: movements(session_factory) == [("2026-02-10", "new", "50.00")])
    assert {status for status, _ in statuses(session_factory).values()} == {"applied"}


def test_the_sweep_leaves_alone_what_this_worker_holds(session_factory, worker):
    held = accept(session_factory, [make_subscription("2026-02-10")])
    apply = worker(sweep_seconds=3600, gather_seconds=(3.0, 3.0))
    apply.hand(held)  # starts the thread: its start sweep must not take the held event
    time.sleep(0.5)
    assert statuses(session_factory)[held[0].item.event.event_id] == ("queued", None)
    assert apply.wait_idle(20)
    assert [batch.applied for batch in apply.seen] == [1]


def test_an_event_that_breaks_the_applier_is_rejected_and_the_others_applied(
    session_factory, worker, monkeypatch
):
    bad, good = make_invoice("2026-02-11"), make_invoice("2026-02-12")
    invoices = Applier._invoices

    def breaking(self: Applier, items: list[Any]) -> None:
        if any(item.event.event_id == bad["id"] for item in items):
            raise RuntimeError("a bug")
        invoices(self, items)

    monkeypatch.setattr(Applier, "_invoices", breaking)
    apply = worker()
    apply.hand(accept(session_factory, [bad, good, make_subscription("2026-02-10")]))
    assert apply.wait_idle(20)

    found = statuses(session_factory)
    assert found[bad["id"]] == (
        "rejected",
        "could not be applied (RuntimeError); replay it after a fix",
    )
    assert found[good["id"]] == ("applied", None)
    assert movements(session_factory) == [("2026-02-10", "new", "50.00")]


def test_events_stay_queued_while_the_database_fails_and_a_later_sweep_applies_them(
    session_factory, worker, monkeypatch
):
    apply_batch = Applier.apply

    def failing(self: Applier, items: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(Applier, "apply", failing)
    first = worker(sweep_seconds=3600)
    subscription, invoice = make_subscription("2026-02-10"), make_invoice("2026-02-11")
    first.hand(accept(session_factory, [subscription, invoice]))
    assert first.wait_idle(20)
    found = statuses(session_factory)
    assert found[subscription["id"]] == found[invoice["id"]] == ("queued", None)
    assert first.seen == []  # not split event by event, nothing rejected: the database failed

    monkeypatch.setattr(Applier, "apply", apply_batch)
    later = worker(sweep_seconds=3600)  # a restart: its start sweep finds them
    later.start()
    until(lambda: statuses(session_factory)[subscription["id"]] == ("applied", None))
    assert movements(session_factory) == [("2026-02-10", "new", "50.00")]


def test_a_value_the_database_refuses_rejects_that_event_only(session_factory, worker):
    """An amount the store cannot hold once converted (10^12 EUR at 10^9 USD each) is refused
    by the database (PostgreSQL: numeric out of range) or the driver (SQLite: integer overflow):
    that event is rejected with the reason, the others are applied."""
    rate = event(
        "fx.rate",
        "2026-01-01",
        {"base": "EUR", "quote": "USD", "rate": "1000000000", "on": "2026-01-01"},
    )
    ingest_events_now(session_factory, [rate])
    huge = make_invoice("2026-02-11", currency="EUR", amount="1000000000000")
    fine = make_invoice("2026-02-12")
    apply = worker()
    apply.hand(accept(session_factory, [huge, fine]))
    assert apply.wait_idle(20)

    found = statuses(session_factory)
    status, reason = found[huge["id"]]
    assert (
        status == "rejected" and reason is not None and reason.startswith("could not be applied (")
    )
    assert found[fine["id"]] == ("applied", None)
    assert sum(b.counts[("kpibot", "rejected")] for b in apply.seen) == 1


def test_events_handed_during_a_rebuild_are_applied_after_it(session_factory, worker, caplog):
    """On PostgreSQL webhooks are still accepted during a rebuild: the worker lets go of what it
    holds (still counted in its backlog), checks every `retry_seconds` whether the rebuild is
    over, and then applies every queued row. On SQLite the rebuild is the one writer: the worker
    waits for it, then applies."""
    postgresql = session_factory.kw["bind"].dialect.name == "postgresql"
    ingest_events_now(session_factory, [make_subscription("2026-02-10")])
    apply = worker(sweep_seconds=3600, retry_seconds=0.1, gather_seconds=(0.05, 0.05))
    first = accept(session_factory, [make_invoice("2026-02-11")])
    later = make_subscription("2026-03-01", account_id="acc-2", subscription_id="sub-2")
    with caplog.at_level("INFO", logger="kpibot.apply_worker"):
        with PausedRebuild(session_factory, CONFIG) as paused:
            apply.hand(first)
            if postgresql:
                until(lambda: "rebuild is running" in caplog.text)
                apply.hand(accept(session_factory, [later]))  # set aside: queued in the log
            time.sleep(0.5)  # several checks whether the rebuild is over
            assert not apply.wait_idle(0.1)  # not settled while rows wait for the rebuild
            if postgresql:  # (SQLite: reading takes the writer's lock too)
                found = statuses(session_factory)
                assert sorted(s for s, _ in found.values()) == ["applied", "queued", "queued"]
                assert apply.backlog == 2
            paused.resume()
        if not postgresql:
            assert apply.wait_idle(20)
            apply.hand(accept(session_factory, [later]))
        assert apply.wait_idle(20)
    assert {status for status, _ in statuses(session_factory).values()} == {"applied"}
    assert movements(session_factory) == [
        ("2026-02-10", "new", "50.00"),
        ("2026-03-01", "new", "50.00"),
    ]
    assert apply.backlog == 0
    assert caplog.text.count("rebuild is running") == postgresql  # once, not at every check
    assert sum(b.applied for b in apply.seen) == 2
