"""The ApplyWorker: hand-off, batches, leftovers of a stopped process, failures."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from bot.apply_worker import ApplyWorker
from storage.apply import Applier, IngestConfig
from storage.db import session_scope
from storage.deferred import AppliedBatch, Queued
from storage.deliveries import list_events
from storage.ingest import ingest_events
from tests.builders import make_invoice, make_subscription, movements

CONFIG = IngestConfig()


def accept(factory: Any, events: list[Any]) -> list[Queued]:
    with session_scope(factory) as session:
        report = ingest_events(session, events, config=CONFIG, defer=True)
    return [Queued("kpibot", item) for item in report.deferred]


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
    apply = worker(sweep_seconds=0.0)
    apply.start()
    until(lambda: movements(session_factory) == [("2026-02-10", "new", "50.00")])
    assert {status for status, _ in statuses(session_factory).values()} == {"applied"}


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


def test_events_stay_queued_while_the_database_fails_and_are_applied_later(
    session_factory, worker, monkeypatch
):
    apply_batch = Applier.apply
    failures = {"left": 2}  # the first try, then the first sweep

    def failing(self: Applier, items: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return apply_batch(self, items)

    monkeypatch.setattr(Applier, "apply", failing)
    apply = worker(sweep_seconds=0.3)
    subscription = make_subscription("2026-02-10")
    apply.hand(accept(session_factory, [subscription]))
    assert apply.wait_idle(20)
    assert statuses(session_factory)[subscription["id"]] == ("queued", None)

    until(lambda: statuses(session_factory)[subscription["id"]] == ("applied", None))
    assert movements(session_factory) == [("2026-02-10", "new", "50.00")]
