"""Loading the demo in parallel slices stores exactly what one serial ingestion stores."""

from __future__ import annotations

from datetime import date

from storage.apply import IngestConfig
from storage.db import make_engine, make_session_factory
from storage.demo import generate_demo_events
from storage.demo_load import DemoRequest, load_demo
from storage.ingest import ingest_in_batches
from storage.migrate import upgrade
from tests.storage.test_rebuild import _snapshot

ARGS = {"accounts": 30, "years": 1, "seed": 5, "until": date(2026, 11, 1)}


def test_two_workers_store_what_one_serial_ingestion_stores(database_url, tmp_path):
    config = IngestConfig(reporting_currency="USD", timezone="UTC")
    report = load_demo(DemoRequest(database_url, config, **ARGS), workers=2)
    assert report.rejected == 0 and report.duplicate == 0

    serial_engine = make_engine(f"sqlite:///{tmp_path / 'serial.db'}")
    upgrade(serial_engine)
    events = list(generate_demo_events(**ARGS))
    serial_report = ingest_in_batches(make_session_factory(serial_engine), events, config=config)
    assert report.applied == serial_report.applied == len(events)

    parallel_engine = make_engine(database_url)
    try:
        parallel = _snapshot(make_session_factory(parallel_engine))
        serial = _snapshot(make_session_factory(serial_engine))
    finally:
        parallel_engine.dispose()
        serial_engine.dispose()
    assert parallel.keys() == serial.keys()
    for table in serial:
        assert parallel[table] == serial[table], table
