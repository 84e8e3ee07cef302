"""The background rounds of `kpibot serve`, each a thread tied to the web application's lifespan.

- the outbox dispatcher delivers due outbox rows every second. One failed round is logged and the
  next one runs anyway: the rows stay in the outbox, so nothing is lost, only delayed;
- the ledger warmer brings the MRR movements, survey responses and usage days kept in memory
  (`metrics.warming`) up to date soon after they change, so the first question after a change is
  as fast as the others. A round rebuilds copies as large as the data (a second on the reference
  data set), and every commit that changes the data makes them stale. So the warmer waits for the
  data to settle (`WarmerPace`): it builds once the revisions have stayed unchanged for
  `SETTLE_SECONDS`, not while webhooks keep changing them (a copy built then would be stale before
  a question could read it, and on the reference data such rounds took a quarter of a busy
  server's time from the webhooks); a stream that never pauses still gets a round every
  `CATCH_UP_SECONDS`. Rounds also never take more than a quarter of the server's time.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.notifier import ConsoleNotifier, Notifier, SlackNotifier
from bot.settings import Settings
from metrics import warming
from metrics.context import MetricConfig, MetricContext
from storage.db import make_session_factory, read_only
from storage.revisions import State, states

log = logging.getLogger("kpibot.dispatcher")
INTERVAL_SECONDS = 1.0
WARM_SECONDS = 2.0  # a round at least this often while the data stays as it is
POLL_SECONDS = 0.5  # how often the warmer reads the revisions to see whether they settled
SETTLE_SECONDS = 1.0  # the revisions unchanged this long: the data has settled, build
CATCH_UP_SECONDS = 30.0  # a round at least this often, settled or not
WARM_SHARE = 0.25  # the most of the server's time the warmer takes (see the module's docstring)


def make_notifier(settings: Settings, factory: sessionmaker[Session]) -> Notifier:
    """Return the Slack notifier, or the console one in offline mode."""
    if settings.slack_mode == "offline":
        return ConsoleNotifier(factory, sys.stdout, color=sys.stdout.isatty())
    from bot.slack_app import make_client

    return SlackNotifier(
        factory, make_client(settings), fallback_channel=settings.alert_fallback_channel
    )


class Periodic:
    """Calls `task()` every `interval` seconds in a daemon thread named `name`.

    A failed round is logged and the next one runs anyway.
    """

    def __init__(
        self, name: str, task: Callable[[], object], *, interval: float, share: float = 1.0
    ) -> None:
        """`share`: the most of the time the rounds may take (a round of d seconds is followed
        by at least d × (1 / share − 1) of rest, and by `interval` anyway)."""
        self.name = name
        self.task = task
        self.interval = interval
        self.share = share
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the rounds (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop after the round in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.task()
            except Exception:  # a failed round must not end the rounds
                log.exception("%s round failed; retrying in %.0f s", self.name, self.interval)
            spent = time.monotonic() - started
            self._stop.wait(max(self.interval, spent * (1 / self.share - 1)))


class OutboxDispatcher(Periodic):
    """Calls `notifier.deliver_due()` every `interval` seconds (failed rows stay queued)."""

    def __init__(self, notifier: Notifier, *, interval: float = INTERVAL_SECONDS) -> None:
        super().__init__("outbox", notifier.deliver_due, interval=interval)
        self.notifier = notifier


@dataclass
class WarmerPace:
    """Decides, from the revisions the warmer reads at each poll, whether a round is due.

    Due when the revisions have not changed for `settle` seconds and either differ from those
    of the last round or that round is `every` seconds old (health is also warmed for the days
    questions asked since); or, settled or not, when the last round is `catch_up` seconds old
    (the first poll, too). Times are `time.monotonic()` seconds.
    """

    settle: float = SETTLE_SECONDS
    every: float = WARM_SECONDS
    catch_up: float = CATCH_UP_SECONDS
    _seen: Mapping[str, State] | None = None
    _changed_at: float = 0.0
    _warmed: Mapping[str, State] | None = None
    _warmed_at: float | None = None

    def due(self, seen: Mapping[str, State], now: float) -> bool:
        """Note the revisions `seen` at `now`; True when a round should run now (it is then
        counted as run)."""
        if seen != self._seen:
            self._seen, self._changed_at = dict(seen), now
        since_round = None if self._warmed_at is None else now - self._warmed_at
        settled = now - self._changed_at >= self.settle
        if (
            since_round is None
            or since_round >= self.catch_up
            or (settled and (seen != self._warmed or since_round >= self.every))
        ):
            self._warmed, self._warmed_at = dict(seen), now
            return True
        return False


def ledger_warmer(
    engine: Engine,
    config: MetricConfig,
    *,
    poll: float = POLL_SECONDS,
    pace: WarmerPace | None = None,
) -> Periodic:
    """Keep what `metrics.warming` builds current, so that no question waits for it, building
    once the data has settled (`pace`, read every `poll` seconds; see the module's docstring).

    A round only reads, in a read-only transaction: on SQLite a writer's would hold the one write
    lock for the whole round (a second on the reference data), and webhooks, the apply worker and
    the outbox could not commit meanwhile.
    """
    factory = make_session_factory(read_only(engine))
    pace = pace or WarmerPace()

    def warm() -> None:
        with factory() as session:
            if not pace.due(states(session), time.monotonic()):
                return
            ctx = MetricContext(session, config)
            if warming.warm(ctx):
                log.debug("ledger rebuilt for a new data revision")

    return Periodic("ledger", warm, interval=poll, share=WARM_SHARE)
