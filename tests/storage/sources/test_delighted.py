"""Delighted: the signature over the raw body, and responses mapped to `survey.responded`."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.schemas import MAX_COMMENT, MAX_NAME, EventRejected, SurveyResponded, parse_event
from storage.sources.base import Delivery, WebhookRejected, verify_any
from storage.sources.delighted import DelightedSource

API_KEY = "d3l1ght3d-api-key-for-tests"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
source = DelightedSource()


def signed(body: bytes, key: str = API_KEY, *, prefix: str = "sha256=") -> Delivery:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return Delivery({"x-delighted-webhook-signature": prefix + digest}, body, NOW)


def response_event(**changes: Any) -> dict[str, Any]:
    """A `survey_response.updated` body as Delighted's API documentation shows it."""
    data: dict[str, Any] = {
        "id": "5435",
        "person": {
            "id": "5975",
            "email": "charlie_gravis@example.com",
            "name": "Charlie Gravis",
            "created_at": 1763891000,
        },
        "survey_type": "nps",
        "score": 3,
        "comment": "Support took a week to answer.",
        "permalink": "https://app.delighted.com/r/5pFDpmlyC8GUc5oxU6USto5VonSKAqOa",
        "created_at": 1763891400,
        "updated_at": 1763892000,
        "person_properties": {"Account ID": "acc-42", "Plan": "Growth"},
        "notes": [],
        "tags": [],
        "additional_answers": [],
    }
    event: dict[str, Any] = {
        "event_type": "survey_response.updated",
        "event_id": "b8d057c59327541d7ec2104c0a9a255ad1997fb00831b9c6bbf09561e6d5cbd0",
        "event_data": data,
    }
    for key, value in changes.items():
        if key in ("event_type", "event_id"):
            event[key] = value
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return event


def mapped(event: Any, options: dict[str, str] | None = None) -> list[Any]:
    body = json.dumps(event).encode()
    return source.events(event, replace(signed(body), options=options or {}))


# Signatures


def test_a_body_signed_with_the_api_key_is_accepted() -> None:
    source.verify(signed(b'{"event_type": "x"}'), API_KEY)


def test_a_bare_hex_digest_is_accepted_too() -> None:
    source.verify(signed(b"{}", prefix=""), API_KEY)


def test_another_key_is_refused() -> None:
    with pytest.raises(WebhookRejected) as refused:
        source.verify(signed(b"{}", "another-key"), API_KEY)
    assert refused.value.status == 401


def test_each_project_may_sign_with_its_own_key() -> None:
    """An NPS project and a CSAT project have two API keys: both are listed (comma-separated in
    DELIGHTED_API_KEY), and a delivery signed with either is taken."""
    keys = (API_KEY, "csat-project-key")
    verify_any(source, signed(b"{}", API_KEY), keys)
    verify_any(source, signed(b"{}", "csat-project-key"), keys)
    with pytest.raises(WebhookRejected) as refused:
        verify_any(source, signed(b"{}", "a-third-key"), keys)
    assert refused.value.status == 401
    assert "DELIGHTED_API_KEY" in refused.value.reason


def test_a_tampered_body_is_refused() -> None:
    delivery = signed(b'{"score": 9}')
    tampered = Delivery(delivery.headers, b'{"score": 0}', NOW)
    with pytest.raises(WebhookRejected) as refused:
        source.verify(tampered, API_KEY)
    assert refused.value.status == 401


def test_a_missing_signature_is_refused() -> None:
    with pytest.raises(WebhookRejected) as refused:
        source.verify(Delivery({}, b"{}", NOW), API_KEY)
    assert refused.value.status == 401
    assert "X-Delighted-Webhook-Signature" in refused.value.reason


# Mapping


def test_a_detractor_becomes_an_nps_response_of_its_account() -> None:
    body = response_event()
    [event] = mapped(body)
    assert event.raw == json.dumps(body)
    assert event.event_id == body["event_id"]
    assert event.native == {
        "id": body["event_id"],
        "type": "survey.responded",
        "occurred_at": "2025-11-23T10:00:00Z",
        "data": {
            "response_id": "delighted-5435",
            "account_id": "acc-42",
            "respondent_email": "charlie_gravis@example.com",
            "respondent_name": "Charlie Gravis",
            "kind": "nps",
            "score": 3,
            "scale_min": 0,
            "scale_max": 10,
            "comment": "Support took a week to answer.",
            "source": "delighted",
            "responded_at": "2025-11-23T09:50:00Z",  # created_at: when Charlie answered
        },
    }
    parsed = parse_event(event.native)
    assert isinstance(parsed.data, SurveyResponded)
    assert parsed.data.scale == (0, 10)


def test_a_created_response_without_comment_or_account_is_attributed_by_email() -> None:
    [event] = mapped(
        response_event(event_type="survey_response.created", comment=None, person_properties=None)
    )
    data = event.native["data"]
    assert "account_id" not in data and "comment" not in data
    assert data["respondent_email"] == "charlie_gravis@example.com"
    assert parse_event(event.native).data is not None


@pytest.mark.parametrize("key", ["account_id", "Account ID", "accountId", "ACCOUNT-ID"])
def test_the_account_property_may_be_spelled_several_ways(key: str) -> None:
    [event] = mapped(response_event(person_properties={key: 77}))
    assert event.native["data"]["account_id"] == "77"


def test_an_update_keeps_the_response_id_and_moves_its_time() -> None:
    [first] = mapped(response_event(event_type="survey_response.created", updated_at=1763891400))
    [later] = mapped(response_event(comment="Actually better now", updated_at=1763899999))
    assert first.native["data"]["response_id"] == later.native["data"]["response_id"]
    assert first.native["occurred_at"] < later.native["occurred_at"]


def test_without_delighted_event_id_the_id_is_type_response_and_time() -> None:
    body = response_event()
    del body["event_id"]
    [event] = mapped(body)
    assert event.event_id == "survey_response.updated:5435:1763892000"
    assert event.native["id"] == event.event_id


def test_a_three_point_csat_project_is_stored_on_its_scale() -> None:
    # Delighted offers 3-point CSAT too, and its payload does not say which: the setting does.
    [event] = mapped(response_event(survey_type="csat", score=3), {"csat_scale": "1-3"})
    parsed = parse_event(event.native)
    assert isinstance(parsed.data, SurveyResponded)
    assert (parsed.data.score, parsed.data.scale) == (3, (1, 3))
    [nps] = mapped(response_event(survey_type="nps", score=3), {"csat_scale": "1-3"})
    assert (nps.native["data"]["scale_min"], nps.native["data"]["scale_max"]) == (0, 10)


def test_csat_is_stored_on_a_one_to_five_scale() -> None:
    [event] = mapped(response_event(survey_type="csat", score=2))
    parsed = parse_event(event.native)
    assert isinstance(parsed.data, SurveyResponded)
    assert (parsed.data.kind, parsed.data.score, parsed.data.scale) == ("csat", 2, (1, 5))


def test_other_survey_types_are_ignored() -> None:
    [event] = mapped(response_event(survey_type="ces", score=4))
    assert event.native["type"] == "delighted.survey_response.updated.ces"
    assert event.native["data"] == {}
    assert parse_event(event.native).data is None


def test_an_unsubscribe_is_ignored() -> None:
    body = {
        "event_type": "unsubscribe.created",
        "event_id": "9f0c",
        "event_data": {"person": {"id": "5975", "email": "charlie_gravis@example.com"}},
    }
    [event] = mapped(body)
    assert event.native["type"] == "delighted.unsubscribe.created"
    assert parse_event(event.native).data is None


def test_a_score_off_the_scale_is_left_to_the_schema_to_refuse() -> None:
    [event] = mapped(response_event(score=11))
    with pytest.raises(EventRejected, match=r"outside the scale 0\.\.10"):
        parse_event(event.native)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"score": "9"}, "event_data.score: must be a whole number"),
        ({"score": None}, "event_data.score: must be a whole number"),
        ({"id": None}, "event_data.id: missing"),
        ({"survey_type": None}, "event_data.survey_type: missing"),
        ({"updated_at": "yesterday"}, "event_data.updated_at: must be a Unix time"),
        ({"updated_at": None, "created_at": None}, "event_data.updated_at: missing"),
    ],
)
def test_a_broken_response_is_rejected_with_the_field_path(
    changes: dict[str, Any], reason: str
) -> None:
    [event] = mapped(response_event(**changes))
    assert event.native is None
    assert event.reason is not None and event.reason.startswith(reason)


def test_a_missing_event_data_or_type_is_rejected() -> None:
    [no_data] = mapped({"event_type": "survey_response.created", "event_id": "e1"})
    assert no_data.reason is not None and no_data.reason.startswith("event_data:")
    assert no_data.event_id == "e1"
    [no_type] = mapped({"event_data": {}})
    assert no_type.reason == "event_type: missing"


@pytest.mark.parametrize("payload", [[], "text", 3, None])
def test_a_body_that_is_not_an_object_is_refused(payload: Any) -> None:
    with pytest.raises(WebhookRejected) as refused:
        mapped(payload)
    assert refused.value.status == 422


@given(
    st.dictionaries(
        st.sampled_from(
            ["id", "score", "survey_type", "person", "updated_at", "person_properties", "comment"]
        ),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text()
        | st.dictionaries(st.text(), st.text() | st.integers()),
    )
)
def test_hostile_response_data_never_crashes(data: dict[str, Any]) -> None:
    [event] = mapped({"event_type": "survey_response.created", "event_data": data})
    if event.native is not None:
        with contextlib.suppress(EventRejected):
            parse_event(event.native)
    else:
        assert event.reason


def test_a_bad_optional_field_never_costs_the_response_its_score() -> None:
    event = response_event(comment="slow " * 3_000)
    event["event_data"]["person"] = {"email": "not an address", "name": "N" * 300}
    [mapped_event] = mapped(event)
    parsed = parse_event(mapped_event.native).data
    assert isinstance(parsed, SurveyResponded)
    assert (parsed.score, parsed.account_id, parsed.respondent_email) == (3, "acc-42", None)
    assert parsed.comment is not None and len(parsed.comment) == MAX_COMMENT
    assert parsed.respondent_name == "N" * MAX_NAME
