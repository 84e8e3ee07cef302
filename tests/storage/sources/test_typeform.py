"""Typeform: `Typeform-Signature`, and answers found by their refs mapped to `survey.responded`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.schemas import MAX_COMMENT, MAX_NAME, EventRejected, SurveyResponded, parse_event
from storage.sources.base import Delivery, WebhookRejected
from storage.sources.typeform import TypeformSource, parse_scale

SECRET = "7f0c1e9a5d3b2c4e6f8a0b1c2d3e4f5a6b7c8d9e"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
OPTIONS = {
    "score_ref": "nps_score",
    "email_ref": "work_email",
    "account_ref": "account",
    "kind": "nps",
}
source = TypeformSource()


def signature(body: bytes, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def delivery(body: bytes, options: dict[str, str] = OPTIONS, **headers: str) -> Delivery:
    return Delivery({"typeform-signature": signature(body), **headers}, body, NOW, options)


def answer(ref: str, field_type: str, kind: str, value: Any) -> dict[str, Any]:
    return {"field": {"id": f"id_{ref}", "type": field_type, "ref": ref}, "type": kind, kind: value}


def form_response(score: Any = 4, **changes: Any) -> dict[str, Any]:
    """A webhook body shaped like Typeform's documented example payload."""
    response: dict[str, Any] = {
        "form_id": "lT4Z3j",
        "token": "a3a12ec67a1365927098a606107fac15",
        "submitted_at": "2026-11-20T18:17:02Z",
        "landed_at": "2026-11-20T18:07:02Z",
        "calculated": {"score": 0},
        "hidden": {"account": "acc-7", "user_id": "abc123456"},
        "definition": {
            "id": "lT4Z3j",
            "title": "How are we doing?",
            "fields": [
                {
                    "id": "id_nps_score",
                    "title": "Recommend us?",
                    "type": "opinion_scale",
                    "ref": "nps_score",
                    "allow_multiple_selections": False,
                    "allow_other_choice": False,
                },
                {
                    "id": "id_work_email",
                    "title": "Your email",
                    "type": "email",
                    "ref": "work_email",
                    "allow_multiple_selections": False,
                    "allow_other_choice": False,
                },
            ],
        },
        "answers": [
            answer("nps_score", "opinion_scale", "number", score),
            answer("work_email", "email", "email", "lian@acme.example"),
            answer("comment", "long_text", "text", "Onboarding was slow."),
            answer("name", "short_text", "text", "Lian"),
        ],
    }
    response.update(changes)
    return {"event_id": "LtWXD3crgy", "event_type": "form_response", "form_response": response}


def mapped(payload: Any, options: dict[str, str] = OPTIONS) -> list[Any]:
    body = json.dumps(payload).encode()
    return source.events(payload, delivery(body, options))


# Signatures


def test_a_body_signed_with_the_secret_is_accepted() -> None:
    source.verify(delivery(b'{"event_id": "x"}'), SECRET)


def test_another_secret_is_refused() -> None:
    body = b"{}"
    other = Delivery({"typeform-signature": signature(body, "other")}, body, NOW)
    with pytest.raises(WebhookRejected) as refused:
        source.verify(other, SECRET)
    assert refused.value.status == 401


def test_a_tampered_body_is_refused() -> None:
    signed = delivery(b'{"score": 9}')
    with pytest.raises(WebhookRejected) as refused:
        source.verify(Delivery(signed.headers, b'{"score": 0}', NOW), SECRET)
    assert refused.value.status == 401


def test_a_hex_digest_or_a_missing_prefix_is_refused() -> None:
    body = b"{}"
    hex_digest = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    for value in (hex_digest, signature(body).removeprefix("sha256=")):
        with pytest.raises(WebhookRejected):
            source.verify(Delivery({"typeform-signature": value}, body, NOW), SECRET)


def test_a_missing_signature_is_refused() -> None:
    with pytest.raises(WebhookRejected) as refused:
        source.verify(Delivery({}, b"{}", NOW), SECRET)
    assert refused.value.status == 401


# Mapping


def test_an_answer_is_found_by_the_configured_refs() -> None:
    body = form_response(score=4)
    [event] = mapped(body)
    assert event.raw == json.dumps(body)
    assert event.event_id == "LtWXD3crgy"
    assert event.native == {
        "id": "LtWXD3crgy",
        "type": "survey.responded",
        "occurred_at": "2026-11-20T18:17:02Z",
        "data": {
            "response_id": "typeform-a3a12ec67a1365927098a606107fac15",
            "account_id": "acc-7",
            "respondent_email": "lian@acme.example",
            "respondent_name": "Lian",
            "kind": "nps",
            "score": 4,
            "scale_min": 0,
            "scale_max": 10,
            "comment": "Onboarding was slow.",
            "source": "typeform",
        },
    }
    assert isinstance(parse_event(event.native).data, SurveyResponded)


def test_answers_whose_fields_give_only_an_id_are_found_by_the_definitions_refs() -> None:
    # Typeform's example payload gives an answer's field its id and type, and the ref only in
    # definition.fields.
    body = form_response(score=9)
    for sent in body["form_response"]["answers"]:
        del sent["field"]["ref"]
    [event] = mapped(body)
    assert event.reason is None
    data = event.native["data"]
    assert (data["score"], data["respondent_email"]) == (9, "lian@acme.example")
    # The comment and the name are not in the definition: without a ref they are not found.
    assert data.get("comment") is None and data.get("respondent_name") is None


def test_the_email_may_come_from_a_hidden_field() -> None:
    body = form_response(
        hidden={"work_email": "ceo@acme.example"},
        answers=[answer("nps_score", "nps", "number", 10)],
    )
    [event] = mapped(body)
    data = event.native["data"]
    assert data["respondent_email"] == "ceo@acme.example"
    assert "account_id" not in data and "comment" not in data
    assert parse_event(event.native).data is not None


def test_without_event_id_the_token_is_the_id() -> None:
    body = form_response()
    del body["event_id"]
    [event] = mapped(body)
    assert event.event_id == "a3a12ec67a1365927098a606107fac15"


def test_csat_without_steps_in_the_definition_is_rejected_until_its_scale_is_set() -> None:
    """Real deliveries carry `"properties": {}`: a guessed 1-5 would read a 4 of a 0-10 question
    as satisfied, and refuse its 9 and 10, without anyone seeing it."""
    unknown = {"id": "id_nps_score", "ref": "nps_score", "type": "opinion_scale", "properties": {}}
    body = form_response(score=4, definition={"id": "f", "fields": [unknown]})
    [rejected] = mapped(body, {**OPTIONS, "kind": "csat"})
    assert rejected.native is None
    assert "KPIBOT_TYPEFORM_CSAT_SCALE" in (rejected.reason or "")
    [event] = mapped(body, {**OPTIONS, "kind": "csat", "csat_scale": "0-10"})
    parsed = parse_event(event.native)
    assert isinstance(parsed.data, SurveyResponded)
    assert (parsed.data.kind, parsed.data.score, parsed.data.scale) == ("csat", 4, (0, 10))


def test_the_fields_own_steps_win_over_the_configured_scale() -> None:
    rating = {"id": "id_nps_score", "ref": "nps_score", "type": "rating"}
    rating["properties"] = {"steps": 3}
    body = form_response(score=3, definition={"id": "f", "fields": [rating]})
    [event] = mapped(body, {**OPTIONS, "kind": "csat", "csat_scale": "0-10"})
    assert (event.native["data"]["scale_min"], event.native["data"]["scale_max"]) == (1, 3)


@pytest.mark.parametrize(
    ("setting", "scale"), [("1-5", (1, 5)), (" 0 - 10 ", (0, 10)), ("5-1", None), ("1-500", None)]
)
def test_a_scale_setting_is_read_low_to_high(setting: str, scale: Any) -> None:
    assert parse_scale(setting) == scale


@pytest.mark.parametrize(
    ("field_type", "properties", "scale"),
    [
        ("rating", {"steps": 7, "shape": "star"}, (1, 7)),
        ("opinion_scale", {"steps": 7, "start_at_one": True}, (1, 7)),
        ("opinion_scale", {"steps": 5, "start_at_one": False}, (0, 4)),
    ],
)
def test_csat_follows_the_fields_steps_when_the_definition_has_them(
    field_type: str, properties: dict[str, Any], scale: tuple[int, int]
) -> None:
    definition = {
        "id": "f",
        "fields": [
            {"id": "id_nps_score", "ref": "nps_score", "type": field_type, "properties": properties}
        ],
    }
    body = form_response(score=scale[0], definition=definition)
    [event] = mapped(body, {**OPTIONS, "kind": "csat"})
    data = event.native["data"]
    assert (data["scale_min"], data["scale_max"]) == scale
    assert parse_event(event.native).data is not None


def test_a_numeric_choice_counts_as_a_score() -> None:
    body = form_response(answers=[answer("nps_score", "multiple_choice", "choice", {"label": "8"})])
    [event] = mapped(body)
    assert event.native["data"]["score"] == 8


def test_a_partial_response_event_is_ignored() -> None:
    body = form_response()
    body["event_type"] = "form_response_partial"
    [event] = mapped(body)
    assert event.native["type"] == "typeform.form_response_partial"
    assert parse_event(event.native).data is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"answers": []}, "form_response.answers: no answer to the field with ref 'nps_score'"),
        (
            {"answers": [answer("nps_score", "short_text", "text", "nine")]},
            "form_response.answers[ref=nps_score]: the score must be a whole number",
        ),
        ({"answers": "all of them"}, "form_response.answers: must be a list"),
        ({"submitted_at": "last tuesday"}, "form_response.submitted_at: missing"),
        ({"submitted_at": "9999-12-31T23:59:59-01:00"}, "form_response.submitted_at: missing"),
        ({"token": ""}, "form_response.token: missing"),
    ],
)
def test_a_broken_response_is_rejected_with_the_field_path(
    changes: dict[str, Any], reason: str
) -> None:
    [event] = mapped(form_response(**changes))
    assert event.native is None
    assert event.reason is not None and event.reason.startswith(reason)


def test_a_missing_form_response_is_rejected() -> None:
    [event] = mapped({"event_id": "e1", "event_type": "form_response"})
    assert event.reason == "form_response: must be an object"
    assert event.event_id == "e1"


@pytest.mark.parametrize("payload", [[], "text", 3, None])
def test_a_body_that_is_not_an_object_is_refused(payload: Any) -> None:
    with pytest.raises(WebhookRejected) as refused:
        mapped(payload)
    assert refused.value.status == 422


values = st.none() | st.booleans() | st.integers() | st.floats() | st.text()


@given(
    st.lists(
        st.fixed_dictionaries(
            {"field": st.fixed_dictionaries({"ref": st.sampled_from(["nps_score", "work_email"])})},
            optional={
                "number": values,
                "email": values,
                "choice": st.dictionaries(st.text(), values),
            },
        )
    ),
    st.dictionaries(st.text(), values),
    values,
)
def test_hostile_answers_never_crash(answers: list[Any], hidden: dict[str, Any], when: Any) -> None:
    [event] = mapped(form_response(answers=answers, hidden=hidden, submitted_at=when))
    if event.native is None:
        assert event.reason
        return
    with contextlib.suppress(EventRejected):
        parse_event(event.native)


def test_a_bad_optional_answer_never_costs_the_response_its_score() -> None:
    """The email question may be free text ("jane at acme"), a comment may run past what kpibot
    keeps: the score stays, the email is left out, the comment is cut."""
    body = form_response(
        score=2,
        answers=[
            answer("nps_score", "nps", "number", 2),
            answer("work_email", "short_text", "text", "jane at acme"),
            answer("comment", "long_text", "text", "slow " * 3_000),
            answer("name", "short_text", "text", "N" * 300),
        ],
    )
    [event] = mapped(body)
    parsed = parse_event(event.native).data
    assert isinstance(parsed, SurveyResponded)
    assert (parsed.score, parsed.account_id, parsed.respondent_email) == (2, "acc-7", None)
    assert parsed.comment is not None and len(parsed.comment) == MAX_COMMENT
    assert parsed.respondent_name == "N" * MAX_NAME
