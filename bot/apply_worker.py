"""The thread that applies what the webhook routes accepted (see `storage.deferred`).

`IngestQueue` commits each group of deliveries to the event log as `queued` and hands the parsed
events here. This worker waits a moment after the first one arrives, then applies everything
handed meanwhile in one transaction, up to `batch_size` events. A batch costs about 14 ms plus
0.3 to 0.45 ms per event (PostgreSQL, 2 slow cores): the busier the server, the larger and cheaper
per event the batches should be. So the wait follows the rate events arrive at: 1 ms per 1,000
events a second, between 0.05 s (events come slowly: only latency matters) and 0.5 s (500 a second
or more: the cost per event does).

Nothing is lost if the process stops: the rows stay `queued` in the database. A sweep, at start
and every `sweep_seconds`, reads back queued rows older than `sweep_seconds` (left by a stopped
process or another replica) and applies them the same way; the claim in `apply_queued` makes sure
each row is applied once.

When a batch fails as a whole, it is retried (transient errors), then split and applied event by
event, so one bad event cannot hold back the others. An event that fails alone for a reason other
than the database (a bug) is marked rejected with that reason, to be replayed after the fix. If
the database itself is out of reach, the events stay queued and the sweep applies them later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from storage.apply import IngestConfig
from storage.db import session_scope, transient
from storage.deferred import AppliedBatch, Queued, apply_queued, queued_rows, reject
from storage.deliveries import OptionsFor

APPLY_ATTEMPTS = 3
log = logging.getLogger("kpibot.apply_worker")

BatchObserver = Callable[[AppliedBatch], None]


class ApplyWorker:
    """Applies handed (and left-over) queued events in its own thread; see the module docstring."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        config: IngestConfig,
        *,
        options_for: OptionsFor,
        observe: BatchObserver | None = None,
        batch_size: int = 2_000,
        gather_seconds: tuple[float, float] = (0.05, 0.5),
        sweep_seconds: float = 5.0,
    ) -> None:
        self.factory = factory
        self.config = config
        self.options_for = options_for
        self.observe = observe
        self.batch_size = batch_size
        self.gather_seconds = gather_seconds
        self.sweep_seconds = sweep_seconds
        self._waiting: deque[Queued] = deque()
        self._busy = 0  # events taken from `_waiting` and not yet settled
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._rate = 0.0  # events per second handed, measured over the last batch's cycle
        self._taken_at = time.monotonic()

    @property
    def backlog(self) -> int:
        """Return how many handed events are not applied yet."""
        with self._lock:
            return len(self._waiting) + self._busy

    def start(self) -> None:
        """Start the thread (it sweeps leftovers first); starting again does nothing."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="kpibot-apply", daemon=True)
                self._thread.start()

    def hand(self, queued: Sequence[Queued]) -> None:
        """Take events just committed as queued; they are applied in the next batch."""
        if not queued:
            return
        with self._lock:
            self._waiting.extend(queued)
            self._lock.notify_all()
        self.start()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every handed event is settled; return False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._waiting or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Apply what was handed, then stop the thread (at shutdown)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        next_sweep = 0.0  # sweep at once: a previous process may have left events queued
        while True:
            if time.monotonic() >= next_sweep:
                try:
                    self._sweep()
                except Exception:  # the database is out of reach, say: the next sweep retries
                    log.exception("sweeping queued events failed")
                next_sweep = time.monotonic() + self.sweep_seconds
            with self._lock:
                while not self._waiting and not self._stopping:
                    remaining = next_sweep - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
                # Let more deliveries join: one batch of many costs far less than many of few.
                gather_until = time.monotonic() + self._gather_window()
                while len(self._waiting) < self.batch_size and not self._stopping:
                    remaining = gather_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
                batch = [
                    self._waiting.popleft() for _ in range(min(self.batch_size, len(self._waiting)))
                ]
                self._busy = len(batch)
                self._measure(len(batch))
                if not batch and self._stopping:
                    return
            if not batch:
                continue
            try:
                self._apply(batch)
            except Exception:  # the thread must live on; the rows stay queued for a sweep
                log.exception("applying queued events failed; the next sweep retries them")
            finally:
                with self._lock:
                    self._busy = 0
                    self._lock.notify_all()

    def _gather_window(self) -> float:
        shortest, longest = self.gather_seconds
        return min(longest, max(shortest, self._rate / 1_000))

    def _measure(self, taken: int) -> None:
        now = time.monotonic()
        self._rate = taken / max(now - self._taken_at, 1e-3)
        self._taken_at = now

    def _sweep(self) -> None:
        """Apply queued rows older than one sweep period, a batch at a time."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.sweep_seconds)
        while True:
            with session_scope(self.factory) as session:
                queued, broken = queued_rows(
                    session,
                    received_before=cutoff,
                    limit=self.batch_size,
                    options_for=self.options_for,
                )
                reject(session, broken)
            if broken:
                log.warning("%d queued events no longer map to an event: rejected", len(broken))
            if queued:
                log.info("applying %d events left queued", len(queued))
                self._apply(queued)
            if len(queued) + len(broken) < self.batch_size:
                return

    def _apply(self, batch: list[Queued]) -> None:
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                with session_scope(self.factory) as session:
                    result = apply_queued(session, batch, config=self.config)
            except DBAPIError as error:
                if transient(error) and attempt < APPLY_ATTEMPTS:
                    continue
                failure: Exception = error
                break
            except Exception as error:  # a bug: find the event that triggers it
                failure = error
                break
            else:
                if self.observe is not None:
                    self.observe(result)
                return
        if len(batch) > 1:
            log.warning(
                "a batch of %d queued events failed (%s); applying them one by one",
                len(batch),
                type(failure).__name__,
            )
            for queued in batch:
                self._apply([queued])
            return
        self._give_up(batch[0], failure)

    def _give_up(self, queued: Queued, failure: Exception) -> None:
        if isinstance(failure, DBAPIError):  # the database, not the event: a sweep retries it
            log.warning("queued event %s stays queued: %s", queued.item.log_id, type(failure))
            return
        reason = f"could not be applied ({type(failure).__name__}); replay it after a fix"
        log.error("queued event %s: %s", queued.item.log_id, reason, exc_info=failure)
        with session_scope(self.factory) as session:
            reject(session, [(queued.item.log_id, reason)])
        if self.observe is not None:
            result = AppliedBatch()
            result.counts[(queued.source, "rejected")] += 1
            result.rejections.append((queued.item.log_id, reason))
            self.observe(result)
