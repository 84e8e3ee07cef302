"""Zendesk CSAT ratings (`POST /webhooks/zendesk`), signed with the webhook's signing secret.

What Zendesk documents (https://developer.zendesk.com/documentation/webhooks/verifying/): each
request carries `X-Zendesk-Webhook-Signature` and `X-Zendesk-Webhook-Signature-Timestamp`; the
signature is base64(HMAC-SHA256(secret, TIMESTAMP + BODY)). kpibot also refuses a timestamp more
than 5 minutes from its clock. Ambiguity: a variant of that page (under event-connectors) writes
the formula as (BODY)(TIMESTAMP), and its worked example's values do verify in that order; the
current text and the implementations we found sign TIMESTAMP + BODY, which is what kpibot checks.

A trigger-based webhook sends whatever JSON body its trigger defines, so kpibot expects the
template of docs/webhooks/zendesk.md:

    {"ticket_id": "{{ticket.id}}", "updated_at": "{{ticket.updated_at_with_timestamp}}",
     "requester_email": "{{ticket.requester.email}}", "requester_name": "{{ticket.requester.name}}",
     "organization_external_id": "{{ticket.organization.external_id}}",
     "satisfaction_rating": {"score": "good", "comment": "{{satisfaction.current_comment}}"}}

Legacy CSAT is binary: `good` (or `good_with_comment`, or English text starting "Good" as
`{{satisfaction.current_rating}}` renders it) is stored as CSAT 5 on a 1-5 scale, `bad` as 1;
`offered` / `unoffered` are logged as ignored. One rating per ticket: the response id is
`zendesk-<ticket id>`, so a changed rating replaces the earlier one. Deliveries are
de-duplicated by `X-Zendesk-Webhook-Invocation-Id` (one per trigger firing, kept by its retries):
a rating changed back within the minute (good, bad, good) is then not taken for the first
delivery again. Without that header, by ticket, score, time and a digest of the comment
(`_event_id`): `updated_at` only goes to the minute, and a comment is often added within it.
The account is the organization's external id when Zendesk fills it, else the response is
attributed by the email.
Event-subscribed webhooks (`"type": "zen:event-type:…"`) are accepted and logged as ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

from storage.schemas import MAX_COMMENT, MAX_NAME
from storage.sources.base import (
    Delivery,
    SignedButRefused,
    SourceEvent,
    WebhookRejected,
    check_timestamp,
    constant_time_equal,
)
from storage.sources.fields import body_id, clipped, instant, native_event, optional_email, text

SIGNATURE_HEADER = "x-zendesk-webhook-signature"
TIMESTAMP_HEADER = "x-zendesk-webhook-signature-timestamp"
# One id per trigger firing, the same on its retries (developer.zendesk.com/documentation/
# webhooks/anatomy-of-a-webhook-request/)
INVOCATION_HEADER = "x-zendesk-webhook-invocation-id"
EVENT_PREFIX = "zen:event-type:"
GOOD, BAD = 5, 1  # legacy CSAT is good/bad: the two ends of a 1-5 scale
SCORES = {
    "good": GOOD,
    "good_with_comment": GOOD,
    "good_without_comment": GOOD,
    "bad": BAD,
    "bad_with_comment": BAD,
    "bad_without_comment": BAD,
}
NOT_RATED = frozenset({"offered", "unoffered"})


class ZendeskSource:
    """Zendesk trigger webhooks carrying a ticket's satisfaction rating."""

    name = "zendesk"
    secret_setting = "ZENDESK_WEBHOOK_SECRET"  # noqa: S105  (the variable's name, not a secret)

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Check the signature of timestamp + body, and that the timestamp is recent."""
        given = (delivery.header(SIGNATURE_HEADER) or "").strip()
        stamp = (delivery.header(TIMESTAMP_HEADER) or "").strip()
        if not given or not stamp:
            raise WebhookRejected(
                401, "missing X-Zendesk-Webhook-Signature or X-Zendesk-Webhook-Signature-Timestamp"
            )
        digest = hmac.new(secret.encode(), stamp.encode() + delivery.body, hashlib.sha256)
        if not constant_time_equal(base64.b64encode(digest.digest()).decode(), given):
            raise WebhookRejected(401, "bad X-Zendesk-Webhook-Signature (check the signing secret)")
        signed_at = instant(stamp)
        if signed_at is None:
            raise SignedButRefused(401, "X-Zendesk-Webhook-Signature-Timestamp is not a time")
        check_timestamp(int(signed_at.timestamp()), delivery.received_at)

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        """Return the delivery's one event: a rating, or an ignored type."""
        if not isinstance(payload, dict):
            raise WebhookRejected(422, "a Zendesk webhook body must be a JSON object")
        try:
            raw = delivery.body.decode()
        except UnicodeDecodeError:
            raise WebhookRejected(400, "the body must be UTF-8 JSON") from None
        kind = payload.get("type")
        if isinstance(kind, str) and kind.startswith(EVENT_PREFIX):
            event_id = text(payload.get("id")) or body_id(delivery.body)
            when = instant(payload.get("time")) or delivery.received_at
            name = "zendesk." + kind.removeprefix(EVENT_PREFIX)
            return [SourceEvent(event_id, raw, native_event(event_id, name, when, {}))]
        mapped = _rating(payload, text(delivery.header(INVOCATION_HEADER)))
        if isinstance(mapped, str):  # logged under a digest of the body: retries count once
            return [SourceEvent(body_id(delivery.body), raw, None, mapped)]
        return [SourceEvent(mapped["id"], raw, mapped)]


def _rating(payload: dict[str, Any], invocation: str | None) -> dict[str, Any] | str:
    """Return the native event of the body's rating, or the reason it cannot be mapped."""
    ticket_id = text(payload.get("ticket_id"))
    if ticket_id is None:
        return "ticket_id: missing (use {{ticket.id}} in the trigger's JSON body)"
    updated_at = instant(payload.get("updated_at"))
    if updated_at is None:
        return (
            "updated_at: missing or not an ISO 8601 time from 1970 to 2999"
            " (use {{ticket.updated_at_with_timestamp}})"
        )
    rating = payload.get("satisfaction_rating")
    if not isinstance(rating, dict):
        return "satisfaction_rating: must be an object with a score"
    label = rating.get("score")
    if not isinstance(label, str) or not label.strip():
        return "satisfaction_rating.score: missing (good or bad)"
    score_text = label.strip().lower()
    comment = text(rating.get("comment"))
    if invocation is not None and len(invocation) <= 200:
        # One trigger firing, whatever the times in its body; its retries keep it.
        event_id = f"zendesk-invocation-{invocation}"
    else:
        event_id = _event_id(ticket_id, score_text, updated_at, comment)
    if score_text in NOT_RATED:
        return native_event(event_id, f"zendesk.satisfaction.{score_text}", updated_at, {})
    score = SCORES.get(score_text)
    if score is None:
        # `{{satisfaction.current_rating}}` renders "Good, I'm satisfied" in English.
        first = re.match(r"[a-z_]*", score_text)
        score = SCORES.get(first.group() if first else "")
    if score is None:
        return f"satisfaction_rating.score: {label.strip()[:40]!r} is not good or bad"
    fields: dict[str, Any] = {
        "response_id": f"zendesk-{ticket_id}",
        "kind": "csat",
        "score": score,
        "scale_min": 1,
        "scale_max": 5,
        "source": "zendesk",
    }
    optional = {
        "account_id": text(payload.get("organization_external_id")),
        "respondent_email": optional_email(payload.get("requester_email")),
        "respondent_name": clipped(payload.get("requester_name"), MAX_NAME),
        "comment": clipped(comment, MAX_COMMENT),
    }
    fields.update({key: value for key, value in optional.items() if value is not None})
    return native_event(event_id, "survey.responded", updated_at, fields)


def _event_id(ticket_id: str, score: str, updated_at: datetime, comment: str | None) -> str:
    """The id a rating's deliveries are de-duplicated by: its ticket, score and time, and a
    digest of its comment.

    `{{ticket.updated_at_with_timestamp}}` renders to the minute ("2013-12-12T05:35Z"), and a
    customer often adds a comment to a rating within a minute of clicking it: without the
    comment, that second delivery would be a duplicate of the first and the comment lost. A
    retry of a delivery has the same body, so it still counts once.
    """
    digest = hashlib.sha256((comment or "").encode()).hexdigest()[:12]
    stamp = int(updated_at.timestamp())
    return f"ticket-{ticket_id}:{score.replace(' ', '_')[:40]}:{stamp}:{digest}"
