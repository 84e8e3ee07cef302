"""What every webhook source provides, and how a delivery is refused."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from storage.ingest import Malformed, RawEvent

REPLAY_WINDOW_SECONDS = 300  # signed timestamps older or newer than this are refused


class WebhookRejected(Exception):
    """A delivery refused as a whole, with the HTTP status to answer and a reason to show."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SignedButRefused(WebhookRejected):
    """A delivery signed with the secret tried, refused all the same (its signed timestamp is
    stale or unreadable): with several secrets, this is the reason given, not the mismatch of
    another secret, which would send the operator after the wrong cause."""


@dataclass(frozen=True)
class Delivery:
    """One HTTP request as received: lower-cased headers, the exact body bytes, and when."""

    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    options: Mapping[str, str] = field(default_factory=dict)  # the source's own settings

    def header(self, name: str) -> str | None:
        """Return a header's value (names are case-insensitive)."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class SourceEvent:
    """One event of a delivery: its id at the source, its raw JSON, and what it means to kpibot.

    `native` is the native event it maps to (SPEC.md) with `id` = `event_id`; a `native` whose
    type kpibot does not use (e.g. "stripe.charge.succeeded") is logged as ignored. When the
    payload cannot be mapped, `native` is None and `reason` says why: the event is logged as
    rejected, with `raw` kept so that `kpibot webhooks replay` can map it again after a fix.
    """

    event_id: str | None
    raw: str
    native: Any
    reason: str | None = None

    def item(self) -> RawEvent | Malformed:
        """Return what the ingestion service takes for this event."""
        if self.native is None:
            return Malformed(self.raw, self.reason or "could not be mapped", self.event_id)
        return RawEvent(self.raw, self.native)


class Source(Protocol):
    """A webhook sender kpibot understands."""

    name: str  # the route (/webhooks/<name>) and the event log's source
    secret_setting: str  # the environment variable holding its secret; unset → route answers 404

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Raise `WebhookRejected(401, …)` unless the delivery is signed with `secret`."""

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        """Map a verified, decoded delivery to its events; raise `WebhookRejected(422, …)` if
        the body as a whole is unusable (a list where an object belongs, …)."""


def verify_any(source: Source, delivery: Delivery, secrets: Sequence[str]) -> None:
    """Accept a delivery signed with any of `secrets` (two while a secret is rotated: the new
    one and the one it replaces; or one per sending project); otherwise raise the refusal of the
    secret it is signed with (`SignedButRefused`: a stale timestamp, say), else the first
    secret's. Every secret is tried, whichever matches: how long the check takes does not tell
    which one did."""
    if not secrets:
        raise WebhookRejected(401, "no secret is configured for this source")
    refusals = []
    for secret in secrets:
        try:
            source.verify(delivery, secret)
        except WebhookRejected as refused:
            refusals.append(refused)
    if len(refusals) == len(secrets):
        signed = [r for r in refusals if isinstance(r, SignedButRefused)]
        raise (signed or refusals)[0]


def constant_time_equal(expected: str | bytes, given: str | bytes) -> bool:
    """Compare two signatures without leaking where they differ."""
    left = expected.encode() if isinstance(expected, str) else expected
    right = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(left, right)


def check_timestamp(signed_at: int, now: datetime, *, window: int = REPLAY_WINDOW_SECONDS) -> None:
    """Refuse (401) a signature timestamp further than `window` seconds from `now`."""
    if abs(now.timestamp() - signed_at) > window:
        raise SignedButRefused(401, "signature timestamp outside the 5-minute window (replayed?)")
