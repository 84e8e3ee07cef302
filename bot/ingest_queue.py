"""Group commit of webhook deliveries: concurrent deliveries of one source share one transaction.

A group of fewer than `APPLY_INLINE_FROM` events only logs them (`ingest_events(defer=True)`):
valid new events are stored as `queued`, and handed after the commit to the `ApplyWorker`, which
applies many such groups together (see `storage.deferred`). A larger group is a batch already:
it is applied in its own transaction, as before, which spares its events a second write of their
log rows and a hand-off (unless `kpibot rebuild` is running: it is then queued too, rather than
wait for the rebuild; or applying it fails because of one of its events, a value the database
cannot hold: it is then queued, and the worker rejects only that event). Either way a delivery is
answered once its events are committed.

A delivery's events wait here, at most `GroupLimits.window_seconds`, while other deliveries of the
same source join them: until as many deliveries wait as the largest recent group held (senders
that were just answered tend to send again; a lone sender soon waits for nobody) or the group
holds `max_events`. The group is then stored by one `ingest_events` call in one transaction, in
the thread pool, and each delivery gets its own part of the report (its own counts, its
rejections indexed in its own body) only after that commit. While a group's transaction runs, the
next deliveries gather for the next group, so the busier the server, the fewer the commits.

What stays true per delivery:
- the same event sent twice concurrently is applied once and the other delivery sees it as a
  duplicate, exactly as if they had come one after the other: `ingest_events` keeps the first copy
  of an id. That holds only when both copies are the same valid event, so a delivery that shares
  an id with the group in any other way (a different body, or a copy that is rejected, which a
  later copy may fix and take the place of) waits for the next group. (One difference remains:
  when applying refuses such an event, for a missing exchange rate, the first copy is answered
  rejected and the other duplicate, where one after the other both would be rejected. The event
  is logged once, as rejected, for a replay either way);
- a delivery cut by the server's stop (uvicorn cancels what still runs once the grace period is
  over; the route answers it 503) is withdrawn if it still waits for its group, so it is not
  stored after that answer; only one whose group is already being stored may still be;
- when the grouped transaction fails as a whole (a database error, an unexpected exception),
  every delivery of the group is stored again alone, in its own transaction, so each gets the
  outcome it would have had alone (a transient error retried, `DatabaseBusy` when it persists).
  A lock that stays taken (SQLite's write lock during `kpibot rebuild`, say) is the same for every
  delivery: the group is then tried again as a whole, and every delivery of it is answered
  `DatabaseBusy` (503) when it persists. Each try waits at most `LOCK_WAIT_SECONDS` for a lock
  (the store's factory: `storage.db.waiting_at_most`), so a delivery is answered within about
  10 s, before its sender gives up (providers wait 10 to 30 s). On PostgreSQL, a large group that
  cannot get its accounts' locks in time is queued instead, as during a rebuild: the apply worker
  applies it once they are free.

Groups never mix sources, and one source has one group in flight at a time (SQLite has one writer
anyway; on PostgreSQL a group's size is what saves the commits).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from bot.apply_worker import ApplyWorker
from storage.apply import IngestConfig, hold_off_rebuild
from storage.db import fault_of_the_events, session_scope, transient
from storage.deferred import Queued
from storage.ingest import (
    IngestReport,
    Malformed,
    Prepared,
    RawEvent,
    ingest_events,
    item_event_id,
)

STORE_ATTEMPTS = 3
LOCK_WAIT_SECONDS = 3.0  # the longest one try waits for a lock (see the module's docstring)
# From this many events a group is applied in its own transaction: a batch costs about as much as
# 30 events on its own, so waiting for more gains little there.
APPLY_INLINE_FROM = 50
log = logging.getLogger("kpibot.ingest_queue")


@dataclass(frozen=True)
class GroupLimits:
    """How long a delivery waits for others to join its group, and how large a group may grow."""

    window_seconds: float = 0.010
    max_events: int = 10_000


class DatabaseBusy(Exception):
    """The database stayed locked through every attempt: the sender should retry shortly."""


GroupObserver = Callable[[str, int, bool], None]  # source, deliveries in the group, fell back


@dataclass(eq=False)  # one delivery is itself only, whatever it holds (`ingest` withdraws it)
class _Delivery:
    items: list[Any]
    received_at: datetime
    answer: asyncio.Future[IngestReport]
    # Each event id of the delivery, with the body of its first copy when that copy is a valid
    # parsed event (None otherwise): an identical valid copy elsewhere is only a duplicate.
    copies: dict[str, str | None]

    def may_join(self, group: dict[str, str | None]) -> bool:
        """Whether this delivery can join a group whose ids map to `group` (as `copies`): every
        id they share must be the same valid event on both sides."""
        return all(
            (body := self.copies[event_id]) is not None and group[event_id] == body
            for event_id in group.keys() & self.copies.keys()
        )


@dataclass
class _SourceQueue:
    loop: asyncio.AbstractEventLoop
    waiting: deque[_Delivery] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # How many deliveries a group waits for (at most the window): the largest recent group (its
    # senders, once answered, tend to send again), worn down by one per group; None before the
    # first group, which waits the whole window.
    expected: int | None = None


class IngestQueue:
    """Stores webhook deliveries through group commits (see the module's docstring).

    Workers start on demand in the running event loop, one per source with deliveries waiting,
    and end when their source has none, so the queue works with or without the app's lifespan;
    `close` (at shutdown) waits for the groups in flight.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        config: IngestConfig,
        applier: ApplyWorker,
        *,
        limits: GroupLimits | None = None,
        observe: GroupObserver | None = None,
    ) -> None:
        self.factory = factory
        self.config = config
        self.applier = applier
        self.limits = limits or GroupLimits()
        self.observe = observe
        self._sources: dict[str, _SourceQueue] = {}
        self._postgresql = factory.kw["bind"].dialect.name == "postgresql"

    async def ingest(
        self, source: str, items: Sequence[RawEvent | Malformed | Prepared], received_at: datetime
    ) -> IngestReport:
        """Store one delivery's items; return its own report once its group is committed.

        Raises `DatabaseBusy` when the database stayed locked, and whatever storing the delivery
        alone raised when it cannot be stored at all.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[IngestReport] = loop.create_future()
        copies: dict[str, str | None] = {}
        for item in items:
            if (event_id := item_event_id(item)) is not None and event_id not in copies:
                copies[event_id] = _valid_body(item)
        queue = self._sources.get(source)
        if queue is None or queue.loop is not loop:  # an app served again by a new event loop
            queue = self._sources[source] = _SourceQueue(loop)
        delivery = _Delivery(list(items), received_at, answer, copies)
        queue.waiting.append(delivery)
        queue.arrived.set()
        if queue.worker is None:
            queue.worker = asyncio.create_task(self._work(source, queue))
        try:
            return await answer
        except asyncio.CancelledError:
            # The server is stopping (uvicorn cancels what still runs once the grace period is
            # over) and the sender is answered 503: a delivery still waiting for its group is
            # withdrawn, not stored later by `close`. One whose group is being stored stays so.
            with suppress(ValueError):  # (no longer waiting: its group is being stored)
                queue.waiting.remove(delivery)
            raise

    async def close(self) -> None:
        """Wait for every group waiting or in flight to be stored and answered."""
        workers = [q.worker for q in self._sources.values() if q.worker is not None]
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, source: str, queue: _SourceQueue) -> None:
        group: list[_Delivery] = []
        try:
            while queue.waiting:
                await self._gather(queue)
                if not queue.waiting:  # withdrawn meanwhile (see `ingest`)
                    break
                group = self._take(queue)
                queue.expected = max(len(group), (queue.expected or 0) - 1)
                await self._store(source, group)
                group = []
        except BaseException as error:  # a bug here must not leave senders waiting forever
            for delivery in [*group, *queue.waiting]:
                if delivery.answer.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    delivery.answer.cancel()
                else:
                    delivery.answer.set_exception(error)
            queue.waiting.clear()
            raise
        finally:
            queue.worker = None

    async def _gather(self, queue: _SourceQueue) -> None:
        """Wait, at most the window, until as many deliveries wait as recent groups held, or the
        group would be full."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.window_seconds
        expected = sys.maxsize if queue.expected is None else queue.expected
        while len(queue.waiting) < expected and not self._full(queue):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            queue.arrived.clear()
            try:
                await asyncio.wait_for(queue.arrived.wait(), remaining)
            except TimeoutError:
                return

    def _full(self, queue: _SourceQueue) -> bool:
        return sum(len(d.items) for d in queue.waiting) >= self.limits.max_events

    def _take(self, queue: _SourceQueue) -> list[_Delivery]:
        """The next group: waiting deliveries in arrival order, up to `max_events` events (at
        least one delivery), leaving for later any that shares an id with the group other than
        as an identical valid copy (see the module's docstring)."""
        group: list[_Delivery] = []
        copies: dict[str, str | None] = {}  # the group's ids, as `_Delivery.copies`
        size = 0
        kept: deque[_Delivery] = deque()
        while queue.waiting:
            delivery = queue.waiting.popleft()
            if group and (
                size + len(delivery.items) > self.limits.max_events or not delivery.may_join(copies)
            ):
                kept.append(delivery)
                if size + len(delivery.items) > self.limits.max_events:
                    break
                continue
            group.append(delivery)
            for event_id, body in delivery.copies.items():
                copies.setdefault(event_id, body)
            size += len(delivery.items)
        kept.extend(queue.waiting)
        queue.waiting = kept
        return group

    async def _store(self, source: str, group: list[_Delivery]) -> None:
        if len(group) > 1:
            items = [item for delivery in group for item in delivery.items]
            received_at = min(delivery.received_at for delivery in group)
            try:
                report = await self._commit_retried(source, items, received_at)
            except DatabaseBusy as busy:  # a lock that stays taken: the same for each delivery
                for delivery in group:
                    if not delivery.answer.done():
                        delivery.answer.set_exception(busy)
                self._observe(source, len(group), fell_back=False)
                return
            except Exception as error:  # any other failure: each delivery gets its outcome alone
                log.warning(
                    "webhook %s: a group of %d deliveries failed (%s); storing each alone",
                    source,
                    len(group),
                    type(error).__name__,
                )
            else:
                start = 0
                for delivery in group:
                    stop = start + len(delivery.items)
                    _answer(delivery, report.part(start, stop))
                    start = stop
                self._observe(source, len(group), fell_back=False)
                return
        for delivery in group:
            try:
                _answer(delivery, await self._store_alone(source, delivery))
            except Exception as error:
                if not delivery.answer.done():
                    delivery.answer.set_exception(error)
        self._observe(source, len(group), fell_back=len(group) > 1)

    async def _store_alone(self, source: str, delivery: _Delivery) -> IngestReport:
        return await self._commit_retried(source, delivery.items, delivery.received_at)

    async def _commit_retried(
        self, source: str, items: list[Any], received_at: datetime
    ) -> IngestReport:
        """Store `items` in one transaction, tried again on a transient error (a lock not got
        in time, a deadlock); `DatabaseBusy` once every attempt met one."""
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                return await run_in_threadpool(self._commit, source, items, received_at)
            except DBAPIError as error:
                if not transient(error):
                    raise
                log.warning("webhook %s: transient database error (attempt %d)", source, attempt)
        raise DatabaseBusy(f"the database stayed busy through {STORE_ATTEMPTS} attempts")

    def _commit(self, source: str, items: list[Any], received_at: datetime) -> IngestReport:
        try:
            return self._commit_once(source, items, received_at)
        except Exception as error:
            if len(items) < APPLY_INLINE_FROM:
                raise
            if fault_of_the_events(error):
                # Applying failed because of an event (a value the database cannot hold, a bug
                # it triggers): the apply worker, which applies a failing batch again event by
                # event, rejects only the event at fault.
                why = "applying it failed"
            elif self._postgresql and isinstance(error, DBAPIError) and transient(error):
                # Its accounts' locks were not free in time (a long import holds them, say), or
                # a deadlock: logging it as queued takes none, and the worker applies it later.
                why = "its accounts were not free in time"
            else:
                raise
            log.warning(
                "webhook %s: a group of %d events is queued instead: %s (%s)",
                source,
                len(items),
                why,
                type(error).__name__,
            )
            return self._commit_once(source, items, received_at, defer=True)

    def _commit_once(
        self, source: str, items: list[Any], received_at: datetime, *, defer: bool = False
    ) -> IngestReport:
        with session_scope(self.factory) as session:
            # While `kpibot rebuild` runs, a large group is queued too rather than wait for it.
            defer = (
                defer or len(items) < APPLY_INLINE_FROM or not hold_off_rebuild(session, wait=False)
            )
            report = ingest_events(
                session,
                items,
                config=self.config,
                source=source,
                received_at=received_at,
                defer=defer,
            )
        self.applier.hand([Queued(source, item, received_at) for item in report.deferred])
        return report

    def _observe(self, source: str, deliveries: int, *, fell_back: bool) -> None:
        if self.observe is not None:
            self.observe(source, deliveries, fell_back)


def _valid_body(item: RawEvent | Malformed | Prepared) -> str | None:
    """The body of an item parsed as a valid event (rejected or not yet parsed: None)."""
    if isinstance(item, Prepared) and item.entry.status != "rejected":
        return item.entry.body
    return None


def _answer(delivery: _Delivery, report: IngestReport) -> None:
    if not delivery.answer.done():  # the sender may have gone; its events are stored anyway
        delivery.answer.set_result(report)
