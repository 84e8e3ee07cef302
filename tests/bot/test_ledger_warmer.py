"""`kpibot serve` rebuilds the kept movements in the background after a change."""

from __future__ import annotations

import threading
import time
from itertools import pairwise

from sqlalchemy import text

from bot.dispatcher import Periodic, ledger_warmer
from metrics import ledger, warming
from metrics.context import MetricConfig, MetricContext
from storage.db import session_scope
from tests.builders import change, ingest, paying_accounts


def _is_warm(factory) -> bool:
    with session_scope(factory) as session:
        return ledger.is_warm(MetricContext(session, MetricConfig()))


def _wait_until_warm(factory, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _is_warm(factory):
            return True
        time.sleep(0.02)
    return False


def test_the_warmer_rebuilds_after_each_change(engine, session_factory):
    ledger.forget()
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05"))
    assert not _is_warm(session_factory)
    warmer = ledger_warmer(engine, MetricConfig(), interval=0.05)
    warmer.start()
    try:
        assert _wait_until_warm(session_factory)
        ingest(session_factory, [change("acc-1", "2026-03-01", amount="150.00")])
        assert not _is_warm(session_factory)  # a new revision: what is kept is for the old one
        assert _wait_until_warm(session_factory)
    finally:
        warmer.stop()


def test_a_round_lets_writers_commit_while_it_reads(engine, session_factory, monkeypatch):
    """A round takes a second on the reference data: on SQLite, were it a writer's transaction,
    it would hold the one write lock that long, and no webhook could commit meanwhile."""
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05"))
    reading, finish = threading.Event(), threading.Event()

    def slow_round(ctx: MetricContext) -> bool:
        ctx.session.execute(text("SELECT count(*) FROM account")).scalar()  # its first read
        reading.set()
        finish.wait(6)
        return False

    monkeypatch.setattr(warming, "warm", slow_round)
    warmer = ledger_warmer(engine, MetricConfig(), interval=0.05)
    warmer.start()
    try:
        assert reading.wait(5)
        started = time.monotonic()
        ingest(session_factory, [change("acc-1", "2026-03-01", amount="150.00")])
        assert time.monotonic() - started < 3  # not after the round
        assert not finish.is_set()
    finally:
        finish.set()
        warmer.stop()


def test_rounds_take_at_most_their_share_of_the_time():
    """A round of 50 ms at a share of 20 % rests 200 ms: at most 5 rounds a second, where
    back-to-back rounds would make 20 (the warmer must leave the server to webhooks)."""
    rounds: list[float] = []

    def task() -> None:
        rounds.append(time.monotonic())
        time.sleep(0.05)

    periodic = Periodic("test", task, interval=0.0, share=0.2)
    periodic.start()
    time.sleep(1.0)
    periodic.stop()
    assert 2 <= len(rounds) <= 6
    assert min(b - a for a, b in pairwise(rounds)) >= 0.24
