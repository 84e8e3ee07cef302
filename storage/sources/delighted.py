"""Delighted survey responses (`POST /webhooks/delighted`), signed with the project's API key.

What Delighted documents (https://app.delighted.com/docs/api/webhooks): a JSON body with
`event_type` (`survey_response.created`, `survey_response.updated`, `unsubscribe.created`),
`event_id`, and `event_data` (the response: `id`, `person` {`email`, `name`}, `survey_type`,
`score`, `comment`, `created_at` / `updated_at` as Unix seconds, `person_properties`). Every
webhook carries `X-Delighted-Webhook-Signature`, an HMAC-SHA256 of the raw body keyed with the
project's private API key.

Where the documentation is not explicit, and what kpibot does:
- the header's exact format is not spelled out; clients in the wild read it as `sha256=<hex>`,
  so kpibot accepts `sha256=<hex>` and a bare hex digest. No timestamp is signed, so there is no
  replay window for Delighted beyond de-duplication by event id.
- whether `event_id` stays the same across retries is not stated: kpibot uses it as the event's id
  when present (else `<event_type>:<response id>:<updated_at>`), and a redelivered state of the
  same response only replaces the stored response, so nothing is ever counted twice.
- a response's time is its `updated_at` (else `created_at`): an update (a comment added later)
  then replaces the earlier state of the same response whatever the order of arrival.
- the account comes from a person property named like `account_id` (`Account ID`, `accountId`…,
  compared without case, spaces or punctuation); otherwise kpibot attributes by the email.
- `nps` maps to NPS 0-10, `csat` to CSAT 1-5, or 1-3 with the `csat_scale` option (Delighted
  offers 5-point and 3-point CSAT, and its payload does not say which); other survey types (CES,
  eNPS, PMF, 5-star, smileys, thumbs) are logged as ignored
  (`delighted.survey_response.created.ces`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

from storage.schemas import MAX_COMMENT, MAX_NAME
from storage.sources.base import Delivery, SourceEvent, WebhookRejected, constant_time_equal
from storage.sources.fields import body_id, clipped, native_event, optional_email, text, utc_iso

SIGNATURE_HEADER = "x-delighted-webhook-signature"
RESPONSE_EVENTS = frozenset({"survey_response.created", "survey_response.updated"})
SCALES = {"nps": (0, 10), "csat": (1, 5)}
# The `csat_scale` option: KPIBOT_DELIGHTED_CSAT_SCALE
CSAT_SCALES = {"1-5": (1, 5), "1-3": (1, 3)}


class DelightedSource:
    """Delighted's response webhooks, mapped to `survey.responded`."""

    name = "delighted"
    secret_setting = "DELIGHTED_API_KEY"  # noqa: S105  (the variable's name, not a secret)

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Check `X-Delighted-Webhook-Signature` against an HMAC-SHA256 of the body, made with
        the API key `secret` (each Delighted project, an NPS one and a CSAT one say, signs with
        its own key: `DELIGHTED_API_KEY` lists them, and `verify_any` tries each)."""
        given = (delivery.header(SIGNATURE_HEADER) or "").strip()
        if not given:
            raise WebhookRejected(401, "missing X-Delighted-Webhook-Signature header")
        given = given.lower().removeprefix("sha256=")
        digest = hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
        if not constant_time_equal(digest, given):
            raise WebhookRejected(
                401,
                "bad X-Delighted-Webhook-Signature (is the sending project's API key in "
                "DELIGHTED_API_KEY?)",
            )

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        """Return the delivery's one event: a response, or an ignored type."""
        if not isinstance(payload, dict):
            raise WebhookRejected(422, "a Delighted webhook body must be a JSON object")
        try:
            raw = delivery.body.decode()
        except UnicodeDecodeError:
            raise WebhookRejected(400, "the body must be UTF-8 JSON") from None
        event_type = payload.get("event_type")
        given_id = text(payload.get("event_id"))
        if not isinstance(event_type, str) or not event_type.strip():
            return [SourceEvent(given_id, raw, None, "event_type: missing")]
        if event_type not in RESPONSE_EVENTS:
            event_id = given_id or body_id(delivery.body)
            return [SourceEvent(event_id, raw, _ignored(event_id, event_type, delivery))]
        csat = CSAT_SCALES[delivery.options.get("csat_scale", "1-5")]  # settings check it
        mapped = _response(payload, event_type, given_id, {**SCALES, "csat": csat})
        if isinstance(mapped, str):
            return [SourceEvent(given_id, raw, None, mapped)]
        return [SourceEvent(mapped["id"], raw, mapped)]


def _response(
    payload: dict[str, Any],
    event_type: str,
    given_id: str | None,
    scales: dict[str, tuple[int, int]],
) -> dict[str, Any] | str:
    """Return the native event of a response, or the reason it cannot be mapped."""
    data = payload.get("event_data")
    if not isinstance(data, dict):
        return "event_data: must be an object (the survey response)"
    response_id = text(data.get("id"))
    if response_id is None:
        return "event_data.id: missing (the response id)"
    moment = None
    for field in ("updated_at", "created_at"):
        if data.get(field) is not None:
            moment = _unix(data[field])
            if moment is None:
                return f"event_data.{field}: must be a Unix time in seconds"
            break
    if moment is None:
        return "event_data.updated_at: missing (and no created_at)"
    stamp = int(moment.timestamp())
    event_id = given_id or f"{event_type}:{response_id}:{stamp}"
    survey_type = data.get("survey_type")
    if not isinstance(survey_type, str) or not survey_type.strip():
        return "event_data.survey_type: missing (nps, csat, …)"
    kind = survey_type.strip().lower()
    if kind not in scales:
        return native_event(event_id, f"delighted.{event_type}.{kind}", moment, {})
    score = data.get("score")
    if isinstance(score, bool) or not isinstance(score, int):
        return "event_data.score: must be a whole number"
    person = data.get("person")
    if not isinstance(person, dict):
        person = {}
    low, high = scales[kind]
    fields: dict[str, Any] = {
        "response_id": f"delighted-{response_id}",
        "kind": kind,
        "score": score,
        "scale_min": low,
        "scale_max": high,
        "source": "delighted",
    }
    answered = _unix(data.get("created_at"))  # an update (a comment added) keeps its day
    optional = {
        "responded_at": None if answered is None else utc_iso(answered),
        "account_id": _account_id(data, person),
        "respondent_email": optional_email(person.get("email")),
        "respondent_name": clipped(person.get("name"), MAX_NAME),
        "comment": clipped(data.get("comment"), MAX_COMMENT),
    }
    fields.update({key: value for key, value in optional.items() if value is not None})
    return native_event(event_id, "survey.responded", moment, fields)


def _account_id(data: dict[str, Any], person: dict[str, Any]) -> str | None:
    """Return the account id among the person's properties (`account_id`, `Account ID`, …)."""
    for properties in (data.get("person_properties"), person.get("properties")):
        if not isinstance(properties, dict):
            continue
        for key, value in properties.items():
            if isinstance(key, str) and re.sub(r"[^a-z]", "", key.lower()) == "accountid":
                found = text(value)
                if found is not None:
                    return found
    return None


def _ignored(event_id: str, event_type: str, delivery: Delivery) -> dict[str, Any]:
    return native_event(event_id, f"delighted.{event_type}", delivery.received_at, {})


def _unix(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
