"""Segment calls (`POST /webhooks/segment`) from the Webhooks destinations, signed with a secret.

What Segment documents (https://www.twilio.com/docs/segment/connections/destinations/catalog/
actions-webhook, and the classic Webhooks destination): with a shared secret set, each request
carries `X-Signature`, the hex HMAC-SHA1 of the request body keyed with that secret. The body is
one Segment message (https://www.twilio.com/docs/segment/connections/spec/common): `type`
(`track`, `page`, `screen`, `identify`, `group`, `alias`), `messageId`, `timestamp`, `userId`,
`anonymousId`, `context` (whose `groupId` is the "Group / Account ID" for non-group calls),
`properties`, `traits`, and `groupId` on group calls.

What kpibot does with each call:
- `track`, `page` and `screen` → `usage.recorded` with `merge: true` (each call adds its user to
  the account's day): the user is `userId` (anonymous-only calls are ignored), the day is the
  date of `timestamp` in the `timezone` option (UTC unless configured), and the account is the
  first of `context.groupId`, `properties.account_id`, `context.traits.account_id`,
  `context.traits.company.id`. A call with no account is logged as ignored.
- `group` → `account.upserted` with `merge: true` for `groupId`, from the traits `name`, `plan`,
  `segment`, `owner_email`, `currency`, `website` (its host is added to the account's domains);
  other scalar traits are added to `attributes`. A name, plan or segment longer than kpibot keeps
  is shortened; an owner that is no email address and a currency that is no ISO 4217 code are
  left out (the call's other traits still count). A merge sets only what the call gives: the
  owner, contacts and other fields another source set are kept (storage/account_state.py).
- `identify` → `account.upserted` with `merge: true` adding one contact to the user's account
  (found as for `track`, with the call's own `traits` first: `traits.account_id`,
  `traits.company.id`): its email is `traits.email`, its name `traits.name` (or `first_name`
  and `last_name`, or `firstName` and `lastName`), its phone `traits.phone`. A merge adds the
  person (or updates them, by email) and keeps every other contact. An identify call without an
  email (or with a placeholder that is no email address) or without an account is ignored; a
  name or phone longer than kpibot keeps is shortened. `alias` → ignored.
- any other call (`delete`, a user's data deletion request, has no `messageId`: logged under a
  digest of its body) → ignored.

Ambiguities: Segment's help centre says that with batching on, `X-Signature` covers only the first
event of the batch, so batches cannot be verified: turn batching off. (The signature is checked
before the body is read: a batch is answered 401, whose reason says so.) The signature carries no
timestamp, so replays are caught only by the event id (`messageId`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storage.schemas import MAX_LABEL, MAX_NAME, MAX_PHONE, known_currencies
from storage.sources.base import Delivery, SourceEvent, WebhookRejected, constant_time_equal
from storage.sources.fields import (
    body_id,
    clipped,
    instant,
    native_event,
    optional_email,
    text,
)

SIGNATURE_HEADER = "x-signature"
MAX_ATTRIBUTES = 100
ACTIVITY = frozenset({"track", "page", "screen"})
ACCOUNT_TRAITS = ("name", "plan", "segment", "owner_email", "currency", "website")


class SegmentSource:
    """Segment's Webhooks destination: activity → usage, groups → accounts, identified users
    → contacts."""

    name = "segment"
    secret_setting = "SEGMENT_WEBHOOK_SECRET"  # noqa: S105  (the variable's name, not a secret)

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Check `X-Signature`, the hex HMAC-SHA1 of the body."""
        given = (delivery.header(SIGNATURE_HEADER) or "").strip().lower()
        if not given:
            raise WebhookRejected(401, "missing X-Signature header (set the shared secret)")
        digest = hmac.new(secret.encode(), delivery.body, hashlib.sha1).hexdigest()
        if not constant_time_equal(digest, given):
            raise WebhookRejected(
                401,
                "bad X-Signature (is SEGMENT_WEBHOOK_SECRET the secret? With batching on, Segment "
                "signs only a batch's first call: turn batching off)",
            )

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        """Return the delivery's one event: usage, an account, or an ignored call."""
        if isinstance(payload, list):
            raise WebhookRejected(422, "batched Segment calls are not supported: turn batching off")
        if not isinstance(payload, dict):
            raise WebhookRejected(422, "a Segment webhook body must be a JSON object")
        try:
            raw = delivery.body.decode()
        except UnicodeDecodeError:
            raise WebhookRejected(400, "the body must be UTF-8 JSON") from None
        mapped = _message(payload, delivery)
        if isinstance(mapped, str):
            return [SourceEvent(text(payload.get("messageId")), raw, None, mapped)]
        return [SourceEvent(mapped["id"], raw, mapped)]


def _message(payload: dict[str, Any], delivery: Delivery) -> dict[str, Any] | str:
    """Return the native event of one Segment call, or the reason it cannot be mapped."""
    call = payload.get("type")
    if not isinstance(call, str) or not call.strip():
        return "type: missing (track, page, screen, identify, group, …)"
    call = call.strip().lower()
    message_id = text(payload.get("messageId"))
    at = instant(payload.get("timestamp")) or instant(payload.get("receivedAt"))
    if call not in ACTIVITY and call not in ("group", "identify"):
        # Ignored, whatever else it carries: Segment's `delete` notification (a user's data
        # deletion request) has no messageId, so it is logged under a digest of its body.
        event_id = message_id or body_id(delivery.body)
        return native_event(event_id, f"segment.{call}", at or delivery.received_at, {})
    if message_id is None:
        return "messageId: missing"
    if at is None:
        return "timestamp: missing or not an ISO 8601 time from 1970 to 2999"
    if call in ACTIVITY:
        return _usage(payload, call, message_id, at, delivery.options)
    if call == "identify":
        return _identify(payload, message_id, at)
    return _group(payload, message_id, at)


def _usage(
    payload: dict[str, Any], call: str, message_id: str, at: datetime, options: Mapping[str, str]
) -> dict[str, Any] | str:
    user_id = text(payload.get("userId"))
    account_id = _account_id(payload)
    if user_id is None or account_id is None:
        return native_event(message_id, f"segment.{call}", at, {})  # anonymous, or no account
    try:
        zone = ZoneInfo(options.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return f"the timezone option {options.get('timezone')!r} is not an IANA time zone"
    data = {
        "account_id": account_id,
        "day": at.astimezone(zone).date().isoformat(),
        "user_ids": [user_id],
        "merge": True,
    }
    return native_event(message_id, "usage.recorded", at, data)


def _account_id(payload: dict[str, Any], *, own_traits: bool = False) -> str | None:
    """Return the call's account: context.groupId, then the documented fallbacks (with
    `own_traits`, an identify call's, its own traits before the context's)."""
    context = _object(payload.get("context"))
    traits = _object(context.get("traits"))
    own = _object(payload.get("traits")) if own_traits else {}
    candidates = (
        context.get("groupId"),
        _object(payload.get("properties")).get("account_id"),
        own.get("account_id"),
        _object(own.get("company")).get("id"),
        traits.get("account_id"),
        _object(traits.get("company")).get("id"),
    )
    return next((found for found in map(text, candidates) if found is not None), None)


def _identify(payload: dict[str, Any], message_id: str, at: datetime) -> dict[str, Any]:
    """One person as a contact of their account (a merge: the account's others stay)."""
    traits = _object(payload.get("traits"))
    email = optional_email(traits.get("email"))  # a placeholder is no contact
    account_id = _account_id(payload, own_traits=True)
    if email is None or account_id is None:
        return native_event(message_id, "segment.identify", at, {})
    contact: dict[str, Any] = {"email": email}
    parts = (traits.get(k) for k in ("first_name", "last_name", "firstName", "lastName"))
    name = text(traits.get("name")) or " ".join(p for p in map(text, parts) if p) or None
    if name is not None:
        contact["name"] = clipped(name, MAX_NAME)
    if (phone := clipped(traits.get("phone"), MAX_PHONE)) is not None:
        contact["phone"] = phone
    data = {"account_id": account_id, "merge": True, "contacts": [contact]}
    return native_event(message_id, "account.upserted", at, data)


def _group(payload: dict[str, Any], message_id: str, at: datetime) -> dict[str, Any] | str:
    account_id = text(payload.get("groupId"))
    if account_id is None:
        return "groupId: missing"
    traits = _object(payload.get("traits"))
    # A merge: Segment keeps a trait the call does not send, and so does kpibot.
    data: dict[str, Any] = {"account_id": account_id, "merge": True}
    # Free-text traits kpibot cannot keep whole are shortened, and a currency or an owner it
    # cannot read is left out: one such trait must not cost the call its others.
    for name, limit in (("name", MAX_NAME), ("plan", MAX_LABEL), ("segment", MAX_LABEL)):
        if isinstance(traits.get(name), str) and (value := clipped(traits[name], limit)):
            data[name] = value
    currency = traits.get("currency")
    if isinstance(currency, str) and currency.strip().upper() in known_currencies():
        data["currency"] = currency.strip().upper()
    owner = optional_email(traits.get("owner_email", traits.get("ownerEmail")))
    if owner is not None:
        data["owner_email"] = owner
    domain = _domain(traits.get("website"))
    if domain is not None:
        data["domains"] = [domain]
    attributes = {
        key: value
        for key, value in traits.items()
        if key not in ACCOUNT_TRAITS
        and key != "ownerEmail"
        and (value is None or isinstance(value, str | int | bool) or _finite(value))
    }
    if attributes:
        data["attributes"] = dict(sorted(attributes.items())[:MAX_ATTRIBUTES])
    return native_event(message_id, "account.upserted", at, data)


def _domain(website: Any) -> str | None:
    """Return the host of a website trait ("https://www.acme.com/" → "acme.com")."""
    if not isinstance(website, str) or not website.strip():
        return None
    site = website.strip()
    try:
        host = urlsplit(site if "//" in site else "//" + site).hostname or ""
    except ValueError:
        return None
    host = host.removeprefix("www.")
    return host if "." in host and len(host) <= 255 else None


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
