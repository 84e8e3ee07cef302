"""Concurrent senders with duplicates and out-of-order events leave exactly the expected store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bench.traffic import send, spread, unique_events
from storage.apply import IngestConfig
from storage.db import make_engine, make_session_factory
from storage.ingest import ingest_in_batches
from storage.migrate import upgrade
from tests.signing import TEST_WEBHOOK_SECRET
from tests.storage.test_rebuild import _snapshot


@pytest.mark.parametrize(("batch", "late_share"), [(1, None), (60, 0.1)])
def test_eight_concurrent_senders_store_what_one_serial_ingestion_stores(
    web_server, tmp_path, batch, late_share
):
    """In random order, one event per request (all queued, applied by the worker); and as a
    live stream comes, in time order with a tenth sent late, in batches (applied inline, but
    for groups too small: a sender's last batch may be alone)."""
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    events = unique_events(total=720, accounts=12, seed=11)
    plans = spread(
        events, senders=8, duplicate_share=0.1, seed=12, late_share=late_share, block=batch
    )

    result = send(server.url, TEST_WEBHOOK_SECRET, plans, batch=batch)

    assert result.statuses == {200: result.requests}
    assert result.counts["applied"] + result.counts["queued"] == len(events)
    if batch == 1:
        assert result.counts["queued"] == len(events)
    assert result.counts["duplicate"] == sum(len(p) for p in plans) - len(events)

    server.settle()
    assert _snapshot(server.factory) == _serial_snapshot(events, tmp_path)


@pytest.mark.parametrize("batch", [1, 60])
def test_two_replicas_on_one_database_apply_each_event_once(web_server, tmp_path, batch):
    """Two servers on one database, four senders each, the duplicates dealt across both: one
    event per request (queued, applied by each server's worker, the sweeps beside them) and
    batches of 60 (applied before the answer, concurrently on PostgreSQL)."""
    first = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    second = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    events = unique_events(total=720, accounts=12, seed=13)
    plans = spread(events, senders=8, duplicate_share=0.1, seed=14)

    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda pair: send(pair[0].url, TEST_WEBHOOK_SECRET, pair[1], batch=batch),
                [(first, plans[:4]), (second, plans[4:])],
            )
        )

    sent = sum(len(p) for p in plans)
    counts = results[0].counts + results[1].counts
    assert results[0].statuses + results[1].statuses == {200: sum(r.requests for r in results)}
    assert counts["applied"] + counts["queued"] == len(events)
    assert counts["duplicate"] == sent - len(events)
    first.settle()
    second.settle()
    assert _snapshot(first.factory) == _serial_snapshot(events, tmp_path)


def _serial_snapshot(events: list[Any], tmp_path: Any) -> Any:
    """The derived tables one serial ingestion of `events` leaves."""
    serial_engine = make_engine(f"sqlite:///{tmp_path / 'serial.db'}")
    upgrade(serial_engine)
    try:
        serial = make_session_factory(serial_engine)
        ingest_in_batches(serial, sorted(events, key=lambda e: e["id"]), config=IngestConfig())
        return _snapshot(serial)
    finally:
        serial_engine.dispose()
