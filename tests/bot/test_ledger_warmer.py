"""`kpibot serve` rebuilds the kept movements in the background after a change."""

from __future__ import annotations

import threading
import time
from itertools import pairwise

from sqlalchemy import text

from bot.dispatcher import Periodic, WarmerPace, ledger_warmer
from metrics import ledger, warming
from metrics.context import MetricConfig, MetricContext
from storage.db import session_scope
from storage.revisions import State
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
    warmer = ledger_warmer(engine, MetricConfig(), poll=0.05, pace=WarmerPace(settle=0.1))
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
    warmer = ledger_warmer(engine, MetricConfig(), poll=0.05)
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


def test_the_warmer_waits_for_a_stream_of_changes_to_settle(engine, session_factory, monkeypatch):
    """Every commit makes the copies stale: built during a stream, they would be stale before a
    question could read them (on the reference data such rounds took a quarter of a busy
    server's time from the webhooks). The warmer builds once the changes stop."""
    ledger.forget()
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05"))
    rounds: list[float] = []
    real_warm = warming.warm

    def counted(ctx: MetricContext) -> bool:
        rounds.append(time.monotonic())
        return real_warm(ctx)

    monkeypatch.setattr(warming, "warm", counted)
    pace = WarmerPace(settle=1.0, every=60, catch_up=60)
    warmer = ledger_warmer(engine, MetricConfig(), poll=0.05, pace=pace)
    warmer.start()
    try:
        assert _wait_until_warm(session_factory)  # the first round builds at once
        assert len(rounds) == 1
        for n in range(10):  # a change every 0.1 s for a second
            changed = change("acc-1", f"2026-03-{n + 1:02d}", amount=f"{150 + n}.00")
            ingest(session_factory, [changed])
            time.sleep(0.1)
        assert len(rounds) == 1
        stopped = time.monotonic()
        assert _wait_until_warm(session_factory)
        assert len(rounds) == 2
        assert rounds[1] - stopped >= 0.8  # once settled: a second after the last change
    finally:
        warmer.stop()


def _revisions(version: int) -> dict[str, State]:
    return {"stocks": State("t", version)}


def test_the_pace_of_rounds():
    pace = WarmerPace(settle=1.0, every=2.0, catch_up=30.0)
    assert pace.due(_revisions(1), now=0.0)  # the first poll: at once
    assert not pace.due(_revisions(1), now=0.5)  # nothing changed, a round 0.5 s ago
    assert pace.due(_revisions(1), now=2.0)  # nothing changed, but `every` has passed
    assert not pace.due(_revisions(2), now=2.5)  # changed: wait until it settles
    assert not pace.due(_revisions(2), now=3.4)
    assert pace.due(_revisions(2), now=3.5)
    assert not pace.due(_revisions(2), now=4.0)
    for n in range(60):  # a change at every poll: no round until `catch_up`
        now = 4.0 + n * 0.5
        assert pace.due(_revisions(3 + n), now=now) == (now - 3.5 >= 30.0)
