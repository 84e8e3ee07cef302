"""The background rounds of `kpibot serve`, each a thread tied to the web application's lifespan.

- the outbox dispatcher delivers due outbox rows every second. One failed round is logged and the
  next one runs anyway: the rows stay in the outbox, so nothing is lost, only delayed;
- the ledger warmer brings the MRR movements, survey responses and usage days kept in memory
  (`metrics.warming`) up to date soon after they change, so the first question after a change is
  as fast as the others. Under a steady stream of webhooks the data changes every few seconds,
  and each round rebuilds copies as large as the data (a second on the reference data set): the
  warmer then waits three times as long as its last round took, so that it never takes more than
  a quarter of the server's time from the webhooks and questions it is there to serve.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.notifier import ConsoleNotifier, Notifier, SlackNotifier
from bot.settings import Settings
from metrics import warming
from metrics.context import MetricConfig, MetricContext
from storage.db import make_session_factory, read_only

log = logging.getLogger("kpibot.dispatcher")
INTERVAL_SECONDS = 1.0
WARM_SECONDS = 2.0
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


def ledger_warmer(
    engine: Engine, config: MetricConfig, *, interval: float = WARM_SECONDS
) -> Periodic:
    """Keep what `metrics.warming` builds current, so that no question waits for it.

    A round only reads, in a read-only transaction: on SQLite a writer's would hold the one write
    lock for the whole round (a second on the reference data), and webhooks, the apply worker and
    the outbox could not commit meanwhile.
    """
    factory = make_session_factory(read_only(engine))

    def warm() -> None:
        with factory() as session:
            ctx = MetricContext(session, config)
            if warming.warm(ctx):
                log.debug("ledger rebuilt for a new data revision")

    return Periodic("ledger", warm, interval=interval, share=WARM_SHARE)
