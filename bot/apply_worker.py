"""The thread that applies what the webhook routes accepted (see `storage.deferred`).

`IngestQueue` commits each group of deliveries to the event log as `queued` and hands the parsed
events here. This worker waits a moment after the first one arrives, then applies everything
handed meanwhile in one transaction, up to `batch_size` events. A batch costs about 14 ms plus
0.3 to 0.45 ms per event (PostgreSQL, 2 slow cores): the busier the server, the larger and cheaper
per event the batches should be. So the wait follows the rate events arrive at: 1 ms for each
event per second (0.1 s at 100 events/s), between 0.05 s (events come slowly: only latency
matters) and 0.5 s (500 events/s or more: the cost per event does).

Nothing is lost if the process stops: the rows stay `queued` in the database. A sweep reads back
queued rows that are not in this worker's hands (left by a stopped process or another replica)
and applies them the same way: at start all of them, then every `sweep_seconds` those older than
that; the claim in `apply_queued` makes sure each row is applied once.

Failures, by their cause:
- the database refuses the event's data (a value out of range, a constraint) or the code fails
  on it (a bug): the batch is applied again event by event, so that one event cannot hold back
  the others, and the event that still fails alone is marked rejected with the reason, to be
  replayed after a fix;
- the database itself (unreachable, a pool timeout, a lock it kept past the retries): the events
  stay queued, and the next sweep applies them once it can.

While `kpibot rebuild` runs (PostgreSQL: `storage.apply.hold_off_rebuild`), nothing can be
applied: the worker lets go of what it was handed (the rows stay queued, so memory stays flat
however long the rebuild takes), tries again every `retry_seconds`, and once the rebuild is over
sweeps every queued row, as at start.
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

from storage.apply import IngestConfig, RebuildRunning, hold_off_rebuild
from storage.db import fault_of_the_events, session_scope, transient
from storage.deferred import AppliedBatch, Queued, apply_queued, queued_rows, remap
from storage.deliveries import OptionsFor
from storage.ingest import mark_rejected

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
        retry_seconds: float = 1.0,
    ) -> None:
        self.factory = factory
        self.config = config
        self.options_for = options_for
        self.observe = observe
        self.batch_size = batch_size
        self.gather_seconds = gather_seconds
        self.sweep_seconds = sweep_seconds
        self.retry_seconds = retry_seconds
        self._waiting: deque[Queued] = deque()
        self._handed: set[int] = set()  # log ids waiting or being applied: not for the sweep
        self._busy = 0  # events taken from `_waiting` and not yet settled
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._rate = 0.0  # events per second handed, measured over the last batch's cycle
        self._rebuilding = False  # a rebuild was running at the last try: hand-offs are dropped
        self._set_aside = 0  # events let go of meanwhile (queued in the database)
        self._behind = True  # queued rows that only a sweep will apply (at start, after a rebuild)
        self._taken_at = time.monotonic()

    @property
    def backlog(self) -> int:
        """Return how many handed events are not applied yet."""
        with self._lock:
            return len(self._waiting) + self._busy + self._set_aside

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
            if self._rebuilding:  # they are queued in the database: the sweep after it takes them
                self._set_aside += len(queued)
            else:
                self._waiting.extend(queued)
                self._handed.update(q.item.log_id for q in queued)
                self._lock.notify_all()
        self.start()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every handed event is settled, and the sweep at start or after a rebuild
        is done; return False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._waiting or self._busy or (self._behind and self._running()):
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
        next_sweep = time.monotonic() + self.sweep_seconds
        sweep_from: datetime | None = datetime.now(UTC)  # at start: every leftover
        while True:
            if self._rebuilding:
                with self._lock:
                    if not self._stopping:
                        self._lock.wait(self.retry_seconds)
                    if self._stopping:
                        return  # the rows stay queued: the next start sweeps them
                if not self._rebuild_over():
                    continue
                with self._lock:
                    self._rebuilding = False
                log.info("kpibot rebuild is over: applying the events queued meanwhile")
                sweep_from = datetime.now(UTC)
            if sweep_from is not None:
                try:
                    self._sweep(received_before=sweep_from)
                except RebuildRunning:
                    self._rebuild_running()
                    continue
                except Exception:  # the database is out of reach, say: the next sweep retries
                    log.exception("sweeping queued events failed")
                else:
                    self._caught_up()
                sweep_from = None
            if time.monotonic() >= next_sweep:
                sweep_from = datetime.now(UTC) - timedelta(seconds=self.sweep_seconds)
                next_sweep = time.monotonic() + self.sweep_seconds
                continue
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
            except RebuildRunning:
                self._rebuild_running()
            except Exception:  # the thread must live on; the rows stay queued for a sweep
                log.exception("applying queued events failed; the next sweep retries them")
            finally:
                with self._lock:
                    self._busy = 0
                    self._handed.difference_update(q.item.log_id for q in batch)
                    self._lock.notify_all()

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _rebuild_running(self) -> None:
        """Let go of every hand-off until the rebuild is over (their rows stay queued)."""
        with self._lock:
            if not self._rebuilding:
                log.info("kpibot rebuild is running: queued events are applied once it is over")
            self._rebuilding = self._behind = True
            self._set_aside += len(self._waiting) + self._busy
            self._busy = 0
            self._waiting.clear()
            self._handed.clear()
            self._lock.notify_all()

    def _rebuild_over(self) -> bool:
        """Whether no rebuild holds the lock now (tried in a transaction of its own)."""
        try:
            with session_scope(self.factory) as session:
                return hold_off_rebuild(session, wait=False)
        except Exception:  # the database is out of reach, say: try again later
            log.exception("checking whether kpibot rebuild is over failed")
            return False

    def _caught_up(self) -> None:
        with self._lock:
            self._behind = False
            self._set_aside = 0
            self._lock.notify_all()

    def _gather_window(self) -> float:
        shortest, longest = self.gather_seconds
        return min(longest, max(shortest, self._rate / 1_000))

    def _measure(self, taken: int) -> None:
        now = time.monotonic()
        self._rate = taken / max(now - self._taken_at, 1e-3)
        self._taken_at = now

    def _sweep(self, *, received_before: datetime) -> None:
        """Apply the queued rows received before then that this worker does not hold, in pages
        by id: one pass, each row read once, however many fail."""
        after_id = 0
        while not self._stopping:
            with session_scope(self.factory) as session:
                rows = queued_rows(
                    session,
                    received_before=received_before,
                    after_id=after_id,
                    limit=self.batch_size,
                )
            if not rows:
                return
            after_id = rows[-1].id
            with self._lock:
                rows = [row for row in rows if row.id not in self._handed]
            queued, broken = remap(rows, self.options_for)  # outside any transaction
            if broken:
                read = {row.id: row for row in rows}
                with session_scope(self.factory) as session:
                    marked = [
                        read[log_id].source
                        for log_id, why in broken
                        if mark_rejected(
                            session,
                            [(log_id, why)],
                            still_queued=True,
                            received_at=read[log_id].received_at,
                        )
                    ]
                log.warning("%d queued events no longer map to an event: rejected", len(marked))
                self._observe_rejected(marked)
            if queued:
                log.info("applying %d events left queued", len(queued))
                self._apply(queued)

    def _apply(self, batch: list[Queued]) -> None:
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                with session_scope(self.factory) as session:
                    result = apply_queued(session, batch, config=self.config)
            except RebuildRunning:
                raise
            except Exception as error:
                if isinstance(error, DBAPIError) and transient(error) and attempt < APPLY_ATTEMPTS:
                    continue
                failure = error
                break
            else:
                if self.observe is not None:
                    self.observe(result)
                return
        if not fault_of_the_events(failure):
            log.warning(
                "%d queued events stay queued for the next sweep: the database failed (%s)",
                len(batch),
                type(failure).__name__,
            )
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
        reason = f"could not be applied ({type(failure).__name__}); replay it after a fix"
        log.error("queued event %s: %s", queued.item.log_id, reason, exc_info=failure)
        with session_scope(self.factory) as session:
            marked = mark_rejected(
                session,
                [(queued.item.log_id, reason)],
                still_queued=True,
                received_at=queued.received_at,
            )
        if marked:
            self._observe_rejected([queued.source])

    def _observe_rejected(self, sources: Sequence[str]) -> None:
        """Count events rejected outside `apply_queued`, one per source listed."""
        if self.observe is None or not sources:
            return
        result = AppliedBatch()
        for source in sources:
            result.counts[(source, "rejected")] += 1
        self.observe(result)
