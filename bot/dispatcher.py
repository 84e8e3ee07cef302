"""The outbox dispatcher of `kpibot serve`: a thread that delivers due outbox rows every second.

It starts and stops with the web application (its lifespan). One failed round is logged and the
next one runs anyway: the rows stay in the outbox, so nothing is lost, only delayed.
"""

from __future__ import annotations

import logging
import sys
import threading

from sqlalchemy.orm import Session, sessionmaker

from bot.notifier import ConsoleNotifier, Notifier, SlackNotifier
from bot.settings import Settings

log = logging.getLogger("kpibot.dispatcher")
INTERVAL_SECONDS = 1.0


def make_notifier(settings: Settings, factory: sessionmaker[Session]) -> Notifier:
    """Return the Slack notifier, or the console one in offline mode."""
    if settings.slack_mode == "offline":
        return ConsoleNotifier(factory, sys.stdout, color=sys.stdout.isatty())
    from bot.slack_app import make_client

    return SlackNotifier(
        factory, make_client(settings), fallback_channel=settings.alert_fallback_channel
    )


class OutboxDispatcher:
    """Calls `notifier.deliver_due()` every `interval` seconds in a daemon thread."""

    def __init__(self, notifier: Notifier, *, interval: float = INTERVAL_SECONDS) -> None:
        self.notifier = notifier
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start delivering (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop after the round in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.notifier.deliver_due()
            except Exception:  # a failed round must not end delivery: the rows stay queued
                log.exception("outbox delivery round failed; retrying in %.0f s", self.interval)
            self._stop.wait(self.interval)
