"""Delivering what kpibot sends on its own initiative: through the outbox, to Slack or the console.

Every message is first written to the outbox (`storage.outbox`), then delivered:

- `SlackNotifier` posts due rows with `chat.postMessage` (a home view with `views.publish`). An
  email target is resolved with `users.lookupByEmail` (cached); a user id is posted to directly,
  which Slack delivers as the bot's direct message and answers with the DM's channel id, kept for
  later `chat.update`s. A 429 defers the row, and the rest of the batch, by Slack's Retry-After;
  5xx and network errors back off; a target Slack does not know fails the row for good and, when
  a fallback channel is configured, queues the same message there.
- `ConsoleNotifier` is the offline mode: each message is kept in the outbox as `printed` and shown
  readably on a stream, so a newcomer without a Slack app sees every message the bot would send.

Rate limits are handled here, through the outbox, not by `slack_sdk`: a WebClient with a
`RateLimitErrorRetryHandler` would sleep inside the delivery and hide the 429, so it is refused.
The default handlers (a retry on a connection error) are fine.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from sqlalchemy.orm import Session, sessionmaker

from bot.console import render, visible_width
from storage.db import read_only_factory, session_scope
from storage.outbox import (
    any_due,
    claim_due,
    enqueue,
    mark_printed,
    mark_retry,
    mark_sent,
    release,
)
from storage.tables import OutboxMessage

__all__ = [
    "MESSAGE_ERRORS",
    "TARGET_ERRORS",
    "ConsoleNotifier",
    "Notifier",
    "SlackNotifier",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Slack errors that say the target cannot be reached: retrying will not help, a fallback may.
TARGET_ERRORS = frozenset(
    {
        "channel_not_found",
        "users_not_found",
        "user_not_found",
        "is_archived",
        "not_in_channel",
        "cannot_dm_bot",
        "user_disabled",
    }
)
# Slack errors that say the message itself is wrong: it would fail the same way anywhere.
MESSAGE_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_attachments",
        "invalid_arguments",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "invalid_view",
    }
)
DEFAULT_RETRY_AFTER = timedelta(seconds=1)
EMAIL_CACHE_TTL = timedelta(hours=1)
MAX_FALLBACK_TEXT = 3000


class Notifier(Protocol):
    """Something that delivers kpibot's proactive messages (through the outbox)."""

    def send(
        self,
        *,
        kind: str,
        target: str,
        target_kind: str,
        message: Mapping[str, Any],
        dedupe_key: str | None = None,
    ) -> None:
        """Queue `message` for `target` and deliver it (once per `dedupe_key`)."""
        ...

    def deliver_due(self, now: datetime | None = None) -> int:
        """Deliver the outbox rows due at `now`; return how many were delivered."""
        ...


def utc_now() -> datetime:
    """Return the current instant, aware, in UTC."""
    return datetime.now(UTC)


class _QueueingNotifier:
    """`send` for both notifiers: queue in the outbox (once per dedupe key), then hand over;
    `_due` for their `deliver_due`, which polls."""

    _factory: sessionmaker[Session]
    _reader: sessionmaker[Session]  # read-only sessions on the same database (`_due`)
    _clock: Clock

    def _due(self, now: datetime) -> bool:
        """Whether a row is due, read without a lock: most polls find none, and claiming is a
        write (on SQLite, the write lock every webhook needs, and a wait during a rebuild)."""
        with session_scope(self._reader) as session:
            return any_due(session, now=now)

    def send(
        self,
        *,
        kind: str,
        target: str,
        target_kind: str,
        message: Mapping[str, Any],
        dedupe_key: str | None = None,
    ) -> None:
        """Queue `message` for `target` and deliver it; nothing new if `dedupe_key` was queued."""
        now = self._clock()
        with session_scope(self._factory) as session:
            row = enqueue(
                session,
                kind=kind,
                target=target,
                target_kind=target_kind,
                message=message,
                dedupe_key=dedupe_key,
                now=now,
            )
            if row is not None:
                self._queued(session, row, now)
        if row is not None:
            self._committed(row, now)

    def _queued(self, session: Session, row: OutboxMessage, now: datetime) -> None:
        """Called inside the transaction that queued `row`."""

    def _committed(self, row: OutboxMessage, now: datetime) -> None:
        """Called once the queued `row` is committed."""


class ConsoleNotifier(_QueueingNotifier):
    """Offline mode: keep every message in the outbox as printed and show it on `stream`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        stream: TextIO,
        *,
        width: int = 80,
        color: bool = False,
        clock: Clock = utc_now,
    ) -> None:
        self._factory, self._stream = factory, stream
        self._reader = read_only_factory(factory)
        self._width, self._color, self._clock = width, color, clock
        self._lock = threading.Lock()

    def _queued(self, session: Session, row: OutboxMessage, now: datetime) -> None:
        mark_printed(session, row, now=now)

    def _committed(self, row: OutboxMessage, now: datetime) -> None:
        self._print(row, now)

    def deliver_due(self, now: datetime | None = None, *, limit: int = 100) -> int:
        """Print the pending rows others queued (e.g. an alert stored with its response)."""
        now = now or self._clock()
        printed = 0
        while self._due(now):
            with session_scope(self._factory) as session:
                rows = claim_due(session, now=now, limit=limit)
                for row in rows:
                    mark_printed(session, row, now=now)
            for row in rows:
                self._print(row, now)
            printed += len(rows)
            if len(rows) < limit:  # (rows another replica holds are left to it)
                break
        return printed

    def _print(self, row: OutboxMessage, now: datetime) -> None:
        heading = f"── {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC · {row.kind} → {_who(row)} "
        heading += "─" * max(self._width - visible_width(heading), 2)
        body = render(_message(row), width=self._width, color=self._color)
        with self._lock:
            self._stream.write(f"{heading}\n{body}\n\n")
            self._stream.flush()


@dataclass(frozen=True)
class _Outcome:
    """What one delivery attempt came to."""

    sent: bool = False
    ts: str | None = None
    channel: str = ""
    error: str = ""
    retry_after: timedelta | None = None
    permanent: bool = False  # the message cannot be delivered anywhere
    unreachable: bool = False  # this target cannot be reached: a fallback may be

    @property
    def rate_limited(self) -> bool:
        return self.retry_after is not None


class _Undeliverable(Exception):
    """A target that cannot receive this kind of message (e.g. a home view for a channel)."""


class SlackNotifier(_QueueingNotifier):
    """Deliver outbox rows to Slack, with retries, Retry-After and an optional fallback channel."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        client: WebClient,
        *,
        fallback_channel: str | None = None,
        batch_size: int = 50,
        clock: Clock = utc_now,
    ) -> None:
        if any(isinstance(h, RateLimitErrorRetryHandler) for h in client.retry_handlers):
            raise ValueError(
                "the outbox handles rate limits: give a WebClient without a "
                "RateLimitErrorRetryHandler"
            )
        self._factory, self._client = factory, client
        self._reader = read_only_factory(factory)
        self._fallback, self._batch, self._clock = fallback_channel, batch_size, clock
        self._emails: dict[str, tuple[str, datetime]] = {}

    def _committed(self, row: OutboxMessage, now: datetime) -> None:
        self.deliver_due(now)

    def deliver_due(self, now: datetime | None = None) -> int:
        """Claim and send the rows due at `now`, batch after batch; return how many were sent."""
        now = now or self._clock()
        delivered = 0
        while self._due(now):
            with session_scope(self._factory) as session:
                rows = claim_due(session, now=now, limit=self._batch)
            if not rows:
                return delivered
            for index, row in enumerate(rows):
                outcome = self._attempt(row, now)
                with session_scope(self._factory) as session:
                    self._record(session, row, outcome, now)
                    if outcome.rate_limited:
                        # Slack limits the method, not the message: the rest of the batch waits too.
                        wait = outcome.retry_after or DEFAULT_RETRY_AFTER
                        release(session, rows[index + 1 :], until=now + wait)
                if outcome.rate_limited:
                    return delivered
                delivered += outcome.sent
        return delivered

    def _attempt(self, row: OutboxMessage, now: datetime) -> _Outcome:
        """Make one delivery attempt of `row`; Slack and network failures become outcomes."""
        try:
            if row.kind == "home":
                user = self._user_id(row, now)
                view = {"type": "home", "blocks": row.blocks}
                self._client.views_publish(user_id=user, view=view)
                return _Outcome(sent=True, channel=user)
            channel = self._user_id(row, now) if row.target_kind == "email" else row.target
            response = self._client.chat_postMessage(
                channel=channel,
                text=row.text or _fallback_text(row),
                blocks=row.blocks or None,
                thread_ts=row.thread_ts,
            )
            return _Outcome(sent=True, ts=str(response["ts"]), channel=str(response["channel"]))
        except SlackApiError as error:
            return _api_failure(error)
        except _Undeliverable as error:
            return _Outcome(error=str(error), permanent=True)
        except (SlackClientError, OSError) as error:  # network: refused, reset, timed out
            return _Outcome(error=f"{type(error).__name__}: {error}"[:200])

    def _user_id(self, row: OutboxMessage, now: datetime) -> str:
        """Return the Slack user id a user or email target designates (emails cached)."""
        if row.target_kind == "user":
            return row.target
        if row.target_kind != "email":
            raise _Undeliverable(f"a {row.kind} message needs a user, not a {row.target_kind}")
        email = row.target.strip().lower()
        cached = self._emails.get(email)
        if cached is not None and cached[1] > now:
            return cached[0]
        user = str(self._client.users_lookupByEmail(email=email)["user"]["id"])
        self._emails[email] = (user, now + EMAIL_CACHE_TTL)
        return user

    def _record(
        self, session: Session, row: OutboxMessage, outcome: _Outcome, now: datetime
    ) -> None:
        """Store the outcome of an attempt; queue the fallback copy of an unreachable message."""
        if outcome.sent:
            mark_sent(session, row, ts=outcome.ts, channel=outcome.channel, now=now)
            log.info("outbox #%s (%s) sent", row.id, row.kind)
            return
        error = outcome.error
        fallback = None
        if outcome.unreachable and self._can_fall_back(row):
            assert self._fallback is not None
            fallback = enqueue(
                session,
                kind=row.kind,
                target=self._fallback,
                target_kind="channel",
                message={"text": row.text, "blocks": row.blocks},
                dedupe_key=f"fallback:{row.id}",
                now=now,
            )
            if fallback is not None:
                error = f"{error}; sent to the fallback channel as outbox #{fallback.id}"
        permanent = outcome.permanent or outcome.unreachable
        mark_retry(
            session, row, error=error, now=now, retry_after=outcome.retry_after, permanent=permanent
        )
        if row.status == "failed":
            log.warning("outbox #%s (%s) failed for good: %s", row.id, row.kind, error)
        else:
            log.info(
                "outbox #%s (%s) will be retried at %s: %s",
                row.id,
                row.kind,
                row.next_attempt_at.isoformat(),
                error,
            )

    def _can_fall_back(self, row: OutboxMessage) -> bool:
        """Whether `row` may be copied to the fallback channel (not a copy already, not a view)."""
        if not self._fallback or row.kind == "home":
            return False
        return not (row.target_kind == "channel" and row.target == self._fallback)


def _api_failure(error: SlackApiError) -> _Outcome:
    """Classify a Web API error: rate limited, unreachable target, bad message, or transient."""
    response = error.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error") or f"http_{status}")
    shown = f"{code} (HTTP {status})" if status and status != 200 else code
    if status == 429 or code == "ratelimited":
        return _Outcome(error=shown, retry_after=_retry_after(response.headers))
    if code in TARGET_ERRORS:
        return _Outcome(error=shown, unreachable=True)
    if code in MESSAGE_ERRORS:
        return _Outcome(error=shown, permanent=True)
    return _Outcome(error=shown)  # 5xx, fatal_error, auth and scope problems: retried


def _retry_after(headers: Mapping[str, Any] | None) -> timedelta:
    """Return the wait a 429's Retry-After asks for (whole seconds), at least a second."""
    value = None
    for name, header in (headers or {}).items():
        if name.lower() == "retry-after":
            value = header[0] if isinstance(header, list) and header else header
    try:
        seconds = int(str(value).strip())
    except ValueError:
        return DEFAULT_RETRY_AFTER
    return max(timedelta(seconds=seconds), DEFAULT_RETRY_AFTER)


def _message(row: OutboxMessage) -> dict[str, Any]:
    """Return the message (or home view) an outbox row holds."""
    if row.kind == "home":
        return {"type": "home", "blocks": row.blocks}
    message: dict[str, Any] = {"text": row.text, "blocks": row.blocks}
    if row.thread_ts:
        message["thread_ts"] = row.thread_ts
    return message


def _fallback_text(row: OutboxMessage) -> str:
    """Return a notification text for a row queued without one: its blocks as plain text."""
    return render({"blocks": row.blocks}, width=200)[:MAX_FALLBACK_TEXT] or row.kind


def _who(row: OutboxMessage) -> str:
    """Return the target as a person reads it: #channel, @user, or the email."""
    if row.target_kind == "channel" and not row.target.startswith("#"):
        return f"#{row.target}"
    if row.target_kind == "user":
        return f"@{row.target}"
    return row.target
