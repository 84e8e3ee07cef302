"""Typeform responses (`POST /webhooks/typeform`), signed with the webhook's secret.

What Typeform documents (https://www.typeform.com/developers/webhooks/secure-your-webhooks/ and
https://www.typeform.com/developers/webhooks/example-payload/): the `Typeform-Signature` header is
`sha256=` followed by the base64 HMAC-SHA256 of the raw body keyed with the webhook's `secret`.
The body is `{"event_id", "event_type": "form_response", "form_response": {…}}` where
`form_response` holds `token` (the response's id), `submitted_at`, `hidden` (hidden fields),
`definition.fields` and `answers` [{`field` {`id`, `type`, `ref`}, `type`, and the value under the
key named by `type`: `number`, `email`, `text`, `choice` {`label`}, …}].

What kpibot reads (the refs come from settings, see docs/webhooks/typeform.md); an answer's ref is
its `field.ref`, or, when its field gives only an id (as in Typeform's example payload), the ref
`definition.fields` gives that id:
- the score: the answer whose ref is `score_ref` (`number`, as opinion scale, rating
  and NPS questions send it; a choice whose label is a whole number also works);
- the email: the answer whose ref is `email_ref`, else the hidden field of that name;
- the account: the hidden field `account_ref`, when present (else attribution is by email);
- the comment: the answer whose ref is `comment`; the name: the answer or hidden field `name`;
- the kind (`nps` or `csat`) from settings; NPS is always 0-10.

Where the documentation is ambiguous: the webhook example's `definition.fields` carry no
`properties` (real deliveries carry `"properties": {}`), so the steps of a rating or opinion scale
may not reach kpibot. When they do (`properties.steps`, `properties.start_at_one`, as in the
Create API), a CSAT scale follows them (rating: 1..steps; opinion scale: 0 or 1 .. steps);
otherwise the scale is the `KPIBOT_TYPEFORM_CSAT_SCALE` setting, and without it a CSAT response
is rejected (kept for a replay) rather than read on a guessed scale. No timestamp is signed, so
replays are caught only by the event id (`event_id`, else the response token).

Optional answers never cost a response its score: an email answer that is not an email address
is left out (the response is attributed by its account id, or not at all), and a comment or name
longer than kpibot keeps is cut.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from storage.schemas import MAX_COMMENT, MAX_NAME
from storage.sources.base import Delivery, SourceEvent, WebhookRejected, constant_time_equal
from storage.sources.fields import body_id, clipped, instant, native_event, optional_email, text

SIGNATURE_HEADER = "typeform-signature"
COMMENT_REF = "comment"
NAME_REF = "name"


class TypeformSource:
    """Typeform's `form_response` webhooks, mapped to `survey.responded`."""

    name = "typeform"
    secret_setting = "TYPEFORM_WEBHOOK_SECRET"  # noqa: S105  (the variable's name, not a secret)

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Check `Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>`."""
        given = (delivery.header(SIGNATURE_HEADER) or "").strip()
        if not given:
            raise WebhookRejected(401, "missing Typeform-Signature header")
        digest = hmac.new(secret.encode(), delivery.body, hashlib.sha256).digest()
        expected = "sha256=" + base64.b64encode(digest).decode()
        if not constant_time_equal(expected, given):
            raise WebhookRejected(401, "bad Typeform-Signature (is TYPEFORM_WEBHOOK_SECRET set?)")

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        """Return the delivery's one event: a response, or an ignored type."""
        if not isinstance(payload, dict):
            raise WebhookRejected(422, "a Typeform webhook body must be a JSON object")
        try:
            raw = delivery.body.decode()
        except UnicodeDecodeError:
            raise WebhookRejected(400, "the body must be UTF-8 JSON") from None
        response = payload.get("form_response")
        token = text(response.get("token")) if isinstance(response, dict) else None
        event_id = text(payload.get("event_id")) or token
        event_type = payload.get("event_type", "form_response")
        if not isinstance(event_type, str) or not event_type.strip():
            return [SourceEvent(event_id, raw, None, "event_type: must be a string")]
        if event_type != "form_response":
            ignored_id = event_id or body_id(delivery.body)
            native = native_event(ignored_id, f"typeform.{event_type}", delivery.received_at, {})
            return [SourceEvent(ignored_id, raw, native)]
        if not isinstance(response, dict):
            return [SourceEvent(event_id, raw, None, "form_response: must be an object")]
        if token is None or event_id is None:
            return [SourceEvent(event_id, raw, None, "form_response.token: missing")]
        mapped = _response(response, token, event_id, delivery.options)
        if isinstance(mapped, str):
            return [SourceEvent(event_id, raw, None, mapped)]
        return [SourceEvent(event_id, raw, mapped)]


def _response(
    response: dict[str, Any], token: str, event_id: str, options: Mapping[str, str]
) -> dict[str, Any] | str:
    """Return the native event of a response, or the reason it cannot be mapped."""
    score_ref = options.get("score_ref", "score")
    email_ref = options.get("email_ref", "email")
    account_ref = options.get("account_ref", "account_id")
    kind = options.get("kind", "nps")
    if kind not in ("nps", "csat"):
        return f"KPIBOT_TYPEFORM_KIND must be nps or csat, not {kind!r}"
    submitted_at = instant(response.get("submitted_at"))
    if submitted_at is None:
        return "form_response.submitted_at: missing or not an ISO 8601 time from 1970 to 2999"
    answers = response.get("answers", [])
    if not isinstance(answers, list):
        return "form_response.answers: must be a list"
    hidden = response.get("hidden")
    hidden = hidden if isinstance(hidden, dict) else {}
    by_ref = _answers_by_ref(answers, response.get("definition"))
    score_answer = by_ref.get(score_ref)
    if score_answer is None:
        return (
            f"form_response.answers: no answer to the field with ref {score_ref!r} "
            "(set KPIBOT_TYPEFORM_SCORE_REF to the score question's ref)"
        )
    score = _number(score_answer)
    if score is None:
        return f"form_response.answers[ref={score_ref}]: the score must be a whole number"
    scale = (0, 10) if kind == "nps" else _csat_scale(response, score_answer, options)
    if scale is None:
        return (
            f"form_response.answers[ref={score_ref}]: the CSAT question's scale is not in the "
            "payload: set KPIBOT_TYPEFORM_CSAT_SCALE (e.g. 1-5), then run kpibot webhooks replay"
        )
    low, high = scale
    fields: dict[str, Any] = {
        "response_id": f"typeform-{token}",
        "kind": kind,
        "score": score,
        "scale_min": low,
        "scale_max": high,
        "source": "typeform",
    }
    optional = {
        "account_id": text(hidden.get(account_ref)),
        "respondent_email": optional_email(_answer_text(by_ref.get(email_ref)))
        or optional_email(hidden.get(email_ref)),
        "respondent_name": clipped(
            _answer_text(by_ref.get(NAME_REF)) or text(hidden.get(NAME_REF)), MAX_NAME
        ),
        "comment": clipped(_answer_text(by_ref.get(COMMENT_REF)), MAX_COMMENT),
    }
    fields.update({key: value for key, value in optional.items() if value is not None})
    return native_event(event_id, "survey.responded", submitted_at, fields)


def _number(answer: dict[str, Any]) -> int | None:
    """Return the whole number an answer holds (`number`, or a numeric choice label)."""
    value = answer.get("number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    choice = answer.get("choice")
    label = choice.get("label") if isinstance(choice, dict) else None
    if isinstance(label, str) and re.fullmatch(r"-?[0-9]{1,4}", label.strip()):
        return int(label.strip())
    return None


def parse_scale(value: str) -> tuple[int, int] | None:
    """Read a scale setting, "LOW-HIGH" (e.g. "1-5", "0-10"); None unless LOW < HIGH <= 100."""
    found = re.fullmatch(r"\s*([0-9]{1,3})\s*-\s*([0-9]{1,3})\s*", value)
    if found is None:
        return None
    low, high = int(found.group(1)), int(found.group(2))
    return (low, high) if low < high <= 100 else None


def _answers_by_ref(answers: list[Any], definition: Any) -> dict[str, dict[str, Any]]:
    """Return the answers by their field's ref: the answer's own `field.ref`, else the ref its
    `field.id` has in `definition.fields` (Typeform's example payload gives answers' fields only
    an id and a type, and the refs in the definition)."""
    fields = definition.get("fields") if isinstance(definition, dict) else None
    ref_of_id = {
        field["id"]: field["ref"]
        for field in (fields if isinstance(fields, list) else [])
        if isinstance(field, dict)
        and isinstance(field.get("id"), str)
        and isinstance(field.get("ref"), str)
    }
    found: dict[str, dict[str, Any]] = {}
    for answer in answers:
        field = answer.get("field") if isinstance(answer, dict) else None
        if not isinstance(field, dict):
            continue
        ref = field.get("ref")
        if not isinstance(ref, str):
            field_id = field.get("id")
            ref = ref_of_id.get(field_id) if isinstance(field_id, str) else None
        if ref is not None:
            found[ref] = answer  # (the last answer to a field, should one come twice)
    return found


def _csat_scale(
    response: dict[str, Any], answer: dict[str, Any], options: Mapping[str, str]
) -> tuple[int, int] | None:
    """Return the CSAT scale: the field definition's steps when the payload carries them, else
    the configured scale (`csat_scale`), else None: a scale guessed wrong would count scores
    of a 0-10 question as satisfied on 1-5 without anyone seeing it."""
    field_id = answer["field"].get("id")
    ref = answer["field"].get("ref")
    definition = response.get("definition")
    fields = definition.get("fields") if isinstance(definition, dict) else None
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict) or (field.get("ref") != ref and field.get("id") != field_id):
            continue
        properties = field.get("properties")
        if not isinstance(properties, dict):
            break
        steps = properties.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 11:
            break
        if field.get("type") == "opinion_scale" and not properties.get("start_at_one"):
            return 0, steps - 1
        return 1, steps
    return parse_scale(options.get("csat_scale") or "")


def _answer_text(answer: dict[str, Any] | None) -> str | None:
    """Return the text an answer holds (`email`, `text`, or a choice's label)."""
    if answer is None:
        return None
    for key in ("email", "text"):
        found = text(answer.get(key))
        if found is not None:
            return found
    choice = answer.get("choice")
    return text(choice.get("label")) if isinstance(choice, dict) else None
