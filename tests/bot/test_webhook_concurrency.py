"""Concurrent senders with duplicates and out-of-order events leave exactly the expected store."""

from __future__ import annotations

from bench.traffic import send, spread, unique_events
from storage.apply import IngestConfig
from storage.db import make_engine, make_session_factory
from storage.ingest import ingest_in_batches
from storage.migrate import upgrade
from tests.signing import TEST_WEBHOOK_SECRET
from tests.storage.test_rebuild import _snapshot


def test_eight_concurrent_senders_store_what_one_serial_ingestion_stores(web_server, tmp_path):
    server = web_server(webhook_secret=TEST_WEBHOOK_SECRET)
    events = unique_events(total=720, accounts=12, seed=11)
    plans = spread(events, senders=8, duplicate_share=0.1, seed=12)

    result = send(server.url, TEST_WEBHOOK_SECRET, plans)

    assert result.statuses == {200: sum(len(p) for p in plans)}
    assert result.counts["queued"] == len(events)  # single events: all queued, none inline
    assert result.counts["duplicate"] == sum(len(p) for p in plans) - len(events)

    server.settle()
    serial_engine = make_engine(f"sqlite:///{tmp_path / 'serial.db'}")
    upgrade(serial_engine)
    serial = make_session_factory(serial_engine)
    ingest_in_batches(serial, sorted(events, key=lambda e: e["id"]), config=IngestConfig())
    try:
        assert _snapshot(server.factory) == _snapshot(serial)
    finally:
        serial_engine.dispose()
