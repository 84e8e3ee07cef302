"""Load the demo history through the ingestion service, with one worker process per core.

Exchange rates go in first, so that every worker can convert from its first batch on; then each
worker ingests its own slice of the accounts, exactly as concurrent webhook senders would.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from storage.apply import IngestConfig
from storage.db import analyze, make_engine, make_session_factory, refresh_statistics
from storage.demo import generate_demo_events
from storage.ingest import BATCH_SIZE, IngestReport, ingest_in_batches

FIRST_REFRESH = 20_000  # events loaded before planner statistics are first refreshed, then at ×2


@dataclass(frozen=True)
class DemoRequest:
    """What to generate and where to ingest it."""

    database_url: str
    config: IngestConfig
    accounts: int
    years: int
    seed: int
    until: date


def load_demo(
    request: DemoRequest,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Generate and ingest the demo history; return the combined report."""
    workers = workers or min(4, os.cpu_count() or 1)
    rates = [
        event
        for event in generate_demo_events(**_arguments(request, (0, 1)), accounts=0)
        if event["type"] == "fx.rate"
    ]
    engine = make_engine(request.database_url)
    try:
        report = ingest_in_batches(make_session_factory(engine), rates, config=request.config)
    finally:
        engine.dispose()
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    engine = make_engine(request.database_url)
    lock = context.Lock() if engine.dialect.name == "sqlite" else None  # one writer at a time
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_share, initargs=(counter, lock)
        ) as pool:
            futures = [pool.submit(_load_shard, request, (k, workers)) for k in range(workers)]
            reported, refresh_at = 0, FIRST_REFRESH
            while not all(f.done() for f in futures):
                time.sleep(0.2)
                reported = _advance(counter, reported, progress)
                if reported >= refresh_at:  # each time the tables have doubled
                    refresh_statistics(engine)
                    refresh_at = 2 * reported
            _advance(counter, reported, progress)
            for future in futures:
                report.add(future.result())
        analyze(engine)
    finally:
        engine.dispose()
    return report


def _arguments(request: DemoRequest, shard: tuple[int, int]) -> dict[str, Any]:
    return {
        "years": request.years,
        "seed": request.seed,
        "until": request.until,
        "currency": request.config.reporting_currency,
        "shard": shard,
    }


def _advance(counter: Any, reported: int, progress: Callable[[int], None] | None) -> int:
    current = int(counter.value)
    if progress and current > reported:
        progress(current - reported)
    return current


_counter: Any = None
_writer_lock: Any = None


def _share(counter: Any, writer_lock: Any) -> None:
    global _counter, _writer_lock  # one per worker process, set by the pool initializer
    _counter, _writer_lock = counter, writer_lock


def _count(n: int) -> None:
    with _counter.get_lock():
        _counter.value += n


def _load_shard(request: DemoRequest, shard: tuple[int, int]) -> IngestReport:
    engine = make_engine(request.database_url)
    try:
        events = generate_demo_events(**_arguments(request, shard), accounts=request.accounts)
        return ingest_in_batches(
            make_session_factory(engine),
            (event for event in events if event["type"] != "fx.rate"),  # already applied
            config=request.config,
            batch_size=BATCH_SIZE,
            progress=_count,
            writer_lock=_writer_lock,
        )
    finally:
        engine.dispose()
