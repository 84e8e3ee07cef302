"""Delighted, Typeform, Zendesk and Segment over real HTTP, each signed its provider's way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.settings import Settings
from storage.db import session_scope
from storage.deliveries import replay_rejected
from storage.tables import Account, Contact, EventLog, SurveyResponse, UsageDay
from tests.builders import ingest, kpi, make_account

DELIGHTED_KEY = "delighted-api-key-0123456789"
TYPEFORM_SECRET = "typeform-webhook-secret-0123456789"
ZENDESK_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
SEGMENT_SECRET = "segment-shared-secret-0123456789"


def delighted_headers(body: bytes, secret: str = DELIGHTED_KEY) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-delighted-webhook-signature": "sha256=" + digest}


def typeform_headers(body: bytes, secret: str = TYPEFORM_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"typeform-signature": "sha256=" + base64.b64encode(digest).decode()}


def zendesk_headers(
    body: bytes,
    secret: str = ZENDESK_SECRET,
    at: datetime | None = None,
    invocation: str | None = None,
) -> dict[str, str]:
    timestamp = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    headers = {
        "x-zendesk-webhook-signature": base64.b64encode(digest).decode(),
        "x-zendesk-webhook-signature-timestamp": timestamp,
    }
    if invocation is not None:  # as Zendesk sends it: one per trigger firing
        headers["x-zendesk-webhook-invocation-id"] = invocation
    return headers


def segment_headers(body: bytes, secret: str = SEGMENT_SECRET) -> dict[str, str]:
    return {"x-signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


SIGNERS = {
    "delighted": delighted_headers,
    "typeform": typeform_headers,
    "zendesk": zendesk_headers,
    "segment": segment_headers,
}


def post(server: Any, provider: str, payload: Any, **signing: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", **SIGNERS[provider](body, **signing)}
    response = httpx.post(
        f"{server.url}/webhooks/{provider}", content=body, headers=headers, timeout=30
    )
    server.settle()  # what it queued is applied
    return response


def count(server: Any, table: Any, *where: Any) -> int:
    with session_scope(server.factory) as session:
        return int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def response(server: Any, response_id: str) -> SurveyResponse:
    with session_scope(server.factory) as session:
        found = session.get(SurveyResponse, response_id)
        assert found is not None, response_id
        session.expunge(found)
        return found


@pytest.fixture
def server(web_server: Any) -> Any:
    return web_server(
        delighted_api_key=DELIGHTED_KEY,
        typeform_webhook_secret=TYPEFORM_SECRET,
        zendesk_webhook_secret=ZENDESK_SECRET,
        segment_webhook_secret=SEGMENT_SECRET,
        typeform_score_ref="nps_score",
        typeform_email_ref="work_email",
        typeform_account_ref="account",
    )


def delighted_response(score: int, comment: str | None, updated_at: int, **extra: Any) -> Any:
    return {
        "event_type": "survey_response.updated" if comment else "survey_response.created",
        "event_id": hashlib.sha256(f"{score}{comment}{updated_at}".encode()).hexdigest(),
        "event_data": {
            "id": "5435",
            "person": {"id": "5975", "email": "charlie@acme.example", "name": "Charlie Gravis"},
            "survey_type": "nps",
            "score": score,
            "comment": comment,
            "created_at": 1763891400,
            "updated_at": updated_at,
            "person_properties": {"Account ID": "acc-42"},
            "notes": [],
            "tags": [],
            **extra,
        },
    }


def test_a_delighted_detractor_is_an_nps_response_of_its_account(server: Any) -> None:
    ingest(server.factory, [make_account("acc-42", owner_email="csm@ourco.example")])
    created = post(server, "delighted", delighted_response(3, None, 1763891400))
    assert created.status_code == 200, created.text
    assert created.json()["queued"] == 1
    stored = response(server, "delighted-5435")
    assert (stored.account_id, stored.attribution) == ("acc-42", "account_id")
    assert (stored.kind, stored.score, stored.scale_min, stored.scale_max) == ("nps", 3, 0, 10)

    updated = post(server, "delighted", delighted_response(3, "Too slow", 1763892000))
    assert updated.json()["queued"] == 1
    assert response(server, "delighted-5435").comment == "Too slow"
    assert count(server, SurveyResponse) == 1  # the update replaced the response


def test_a_delighted_three_point_csat_is_stored_on_the_configured_scale(web_server: Any) -> None:
    server = web_server(delighted_api_key=DELIGHTED_KEY, delighted_csat_scale="1-3")
    ingest(server.factory, [make_account("acc-42")])
    payload = delighted_response(3, None, 1763891400)
    payload["event_data"]["survey_type"] = "csat"
    assert post(server, "delighted", payload).status_code == 200
    stored = response(server, "delighted-5435")
    assert (stored.kind, stored.score, stored.scale_min, stored.scale_max) == ("csat", 3, 1, 3)


def test_a_delighted_response_counts_on_the_day_it_was_answered_whatever_its_updates(
    server: Any,
) -> None:
    """Given at 23:58 on 31 March, its comment added at 00:03 on 1 April: March's NPS counts it,
    April's does not, whichever version arrives first."""
    answered = int(datetime(2026, 3, 31, 23, 58, tzinfo=UTC).timestamp())
    commented = int(datetime(2026, 4, 1, 0, 3, tzinfo=UTC).timestamp())
    first = delighted_response(2, None, answered, created_at=answered)
    later = delighted_response(2, "Too slow", commented, created_at=answered)
    now = datetime(2026, 4, 15, tzinfo=UTC)
    for payload in (later, first):  # the update arrives first
        assert post(server, "delighted", payload).status_code == 200
    stored = response(server, "delighted-5435")
    assert (stored.comment, stored.day.isoformat()) == ("Too slow", "2026-03-31")
    assert kpi(server.factory, "nps", "2026-03", now=now).current.value == -100
    assert kpi(server.factory, "nps", "2026-04", now=now).current.value is None


def test_a_typeform_answer_is_read_through_the_configured_refs(server: Any) -> None:
    contact = {"email": "lian@acme.example", "name": "Lian"}
    ingest(server.factory, [make_account("acc-7", contacts=[contact])])
    payload = {
        "event_id": "LtWXD3crgy",
        "event_type": "form_response",
        "form_response": {
            "form_id": "lT4Z3j",
            "token": "a3a12ec67a1365927098a606107fac15",
            "submitted_at": "2026-11-20T18:17:02Z",
            "hidden": {},
            "definition": {"id": "lT4Z3j", "fields": []},
            "answers": [
                {
                    "field": {"id": "f1", "type": "opinion_scale", "ref": "nps_score"},
                    "type": "number",
                    "number": 9,
                },
                {
                    "field": {"id": "f2", "type": "email", "ref": "work_email"},
                    "type": "email",
                    "email": "lian@acme.example",
                },
            ],
        },
    }
    answered = post(server, "typeform", payload)
    assert answered.status_code == 200, answered.text
    stored = response(server, "typeform-a3a12ec67a1365927098a606107fac15")
    assert (stored.account_id, stored.attribution) == ("acc-7", "contact")
    assert (stored.kind, stored.score) == ("nps", 9)
    assert post(server, "typeform", payload).json()["duplicate"] == 1


def test_a_typeform_csat_on_an_unknown_scale_waits_for_the_setting_then_replays(
    web_server: Any,
) -> None:
    """Typeform's deliveries carry `"properties": {}`: a 0-10 CSAT question's 4 must not count as
    satisfied on a guessed 1-5. It is kept rejected until the scale is set, then replayed."""
    server = web_server(
        typeform_webhook_secret=TYPEFORM_SECRET, typeform_kind="csat", typeform_score_ref="csat"
    )
    ingest(server.factory, [make_account("acc-7")])
    field = {"id": "f1", "type": "opinion_scale", "ref": "csat"}
    payloads = [
        {
            "event_id": f"e-{score}",
            "event_type": "form_response",
            "form_response": {
                "token": f"t-{score}",
                "submitted_at": "2026-11-20T18:17:02Z",
                "hidden": {"account_id": "acc-7"},
                "definition": {"id": "lT4Z3j", "fields": [{**field, "properties": {}}]},
                "answers": [{"field": field, "type": "number", "number": score}],
            },
        }
        for score in (4, 9)
    ]
    for payload in payloads:
        refused = post(server, "typeform", payload)
        assert refused.status_code == 422, refused.text
        assert "KPIBOT_TYPEFORM_CSAT_SCALE" in refused.json()["rejections"][0]["reason"]
    assert count(server, SurveyResponse) == 0

    fixed = Settings(
        _env_file=None, typeform_kind="csat", typeform_score_ref="csat", typeform_csat_scale="0-10"
    )
    report = replay_rejected(
        server.factory, config=fixed.ingest_config, options_for=fixed.source_options
    )
    assert (report.applied, report.rejected) == (2, 0)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert kpi(server.factory, "csat", "2026-11", now=now).current.value == 50  # 9 of 4 and 9


def test_a_zendesk_bad_rating_is_a_csat_response(server: Any) -> None:
    ingest(server.factory, [make_account("acc-9")])
    payload = {
        "ticket_id": "35436",
        "updated_at": "2026-11-22T16:05:00Z",
        "requester_email": "dana@initech.example",
        "requester_name": "Dana Scully",
        "organization_external_id": "acc-9",
        "satisfaction_rating": {"score": "bad", "comment": "Nobody called me back."},
    }
    rated = post(server, "zendesk", payload)
    assert rated.status_code == 200, rated.text
    stored = response(server, "zendesk-35436")
    assert (stored.account_id, stored.kind, stored.score) == ("acc-9", "csat", 1)
    assert (stored.scale_min, stored.scale_max) == (1, 5)


def test_a_comment_added_to_a_zendesk_rating_within_the_minute_is_kept(server: Any) -> None:
    # Zendesk renders {{ticket.updated_at_with_timestamp}} to the minute ("2026-11-22T16:05Z"):
    # the rating, then the same rating with the comment the customer added, share that time.
    payload = _zendesk_rating("bad")
    commented = _zendesk_rating("bad", "No callback.")
    assert post(server, "zendesk", payload).json()["queued"] == 1
    assert post(server, "zendesk", commented).json()["queued"] == 1
    assert post(server, "zendesk", commented).json()["duplicate"] == 1  # a retry counts once
    assert response(server, "zendesk-35436").comment == "No callback."


def test_a_zendesk_rating_changed_back_within_the_minute_ends_as_last_given(server: Any) -> None:
    # good, bad, good in one minute: the third body is the first's again, and only Zendesk's
    # invocation id tells them apart; a retry keeps its invocation's id and counts once.
    good, bad = _zendesk_rating("good"), _zendesk_rating("bad")
    for n, payload in enumerate([good, bad, good], start=1):
        assert post(server, "zendesk", payload, invocation=f"83502055{n}").json()["queued"] == 1
    assert post(server, "zendesk", good, invocation="835020553").json()["duplicate"] == 1
    assert response(server, "zendesk-35436").score == 5


def _zendesk_rating(score: str, comment: str = "") -> dict[str, Any]:
    """Dana's rating of ticket 35436, as Zendesk's trigger sends it, updated at 16:05 (rendered to
    the minute, as {{ticket.updated_at_with_timestamp}} is)."""
    return {
        "ticket_id": "35436",
        "updated_at": "2026-11-22T16:05Z",
        "requester_email": "dana@initech.example",
        "satisfaction_rating": {"score": score, "comment": comment},
    }


def test_a_stale_zendesk_signature_is_refused(server: Any) -> None:
    stale = datetime.now(UTC) - timedelta(minutes=6)
    refused = post(server, "zendesk", {"ticket_id": "1"}, at=stale)
    assert refused.status_code == 401
    assert count(server, EventLog) == 0


def segment_track(message_id: str, user_id: str, timestamp: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Report Exported",
        "messageId": message_id,
        "userId": user_id,
        "context": {"groupId": "acc-3", "library": {"name": "analytics-node"}},
        "properties": {},
        "timestamp": timestamp,
    }


def test_segment_track_calls_of_two_users_make_two_active_users(server: Any) -> None:
    calls = [
        segment_track("m-1", "user-1", "2026-11-22T09:00:00Z"),
        segment_track("m-2", "user-2", "2026-11-22T15:30:00Z"),
        segment_track("m-3", "user-1", "2026-11-22T18:45:00Z"),
    ]
    for call in calls:
        answer = post(server, "segment", call)
        assert answer.status_code == 200, answer.text
    assert post(server, "segment", calls[0]).json()["duplicate"] == 1
    with session_scope(server.factory) as session:
        [day] = session.scalars(select(UsageDay)).all()
        assert (day.account_id, day.day.isoformat(), day.active_users) == ("acc-3", "2026-11-22", 2)


def test_a_segment_group_call_upserts_the_account(server: Any) -> None:
    call = {
        "type": "group",
        "messageId": "g-1",
        "groupId": "acc-3",
        "traits": {"name": "Initech", "plan": "enterprise", "website": "initech.example"},
        "timestamp": "2026-11-22T09:00:00Z",
    }
    assert post(server, "segment", call).json()["queued"] == 1
    with session_scope(server.factory) as session:
        account = session.get(Account, "acc-3")
        assert account is not None and (account.name, account.plan) == ("Initech", "enterprise")


def test_a_segment_identify_call_makes_a_contact_that_survey_answers_are_attributed_by(
    server: Any,
) -> None:
    crm = make_account("acc-3", "2026-11-01", contacts=[{"email": "bill@initech.example"}])
    ingest(server.factory, [crm])
    call = {
        "type": "identify",
        "messageId": "i-1",
        "userId": "user-1",
        "traits": {"email": "peter@initech.example", "name": "Peter Gibbons"},
        "context": {"groupId": "acc-3"},
        "timestamp": "2026-11-22T09:00:00Z",
    }
    assert post(server, "segment", call).json()["queued"] == 1
    with session_scope(server.factory) as session:
        contacts = session.execute(
            select(Contact.email, Contact.name).where(Contact.account_id == "acc-3")
        ).all()
    assert sorted(contacts) == [
        ("bill@initech.example", None),  # the CRM's stay
        ("peter@initech.example", "Peter Gibbons"),
    ]
    person = {"id": "77", "email": "peter@initech.example", "name": "Peter"}
    answer = delighted_response(2, None, 1763891400, person=person, person_properties={})
    assert post(server, "delighted", answer).status_code == 200
    stored = response(server, "delighted-5435")
    assert (stored.account_id, stored.attribution) == ("acc-3", "contact")


def test_a_segment_group_call_keeps_what_it_does_not_carry(server: Any) -> None:
    # Segment keeps a trait a group call does not send: the owner and the contacts the CRM
    # gave the account stay, so its detractors still reach its CSM.
    crm = make_account(
        "acc-3",
        "2026-11-01",
        name="Initech",
        owner_email="csm@ourco.example",
        domains=["initech.example"],
        contacts=[{"email": "peter@initech.example"}],
        attributes={"tier": "gold"},
    )
    ingest(server.factory, [crm])
    call = {
        "type": "group",
        "messageId": "g-2",
        "groupId": "acc-3",
        "traits": {"plan": "enterprise", "employees": 329, "website": "initech.io"},
        "timestamp": "2026-11-22T09:00:00Z",
    }
    assert post(server, "segment", call).json()["queued"] == 1
    with session_scope(server.factory) as session:
        account = session.get(Account, "acc-3")
        assert account is not None
        assert (account.name, account.owner_email, account.plan) == (
            "Initech",
            "csm@ourco.example",
            "enterprise",
        )
        assert account.attributes == {"employees": 329, "tier": "gold"}
        assert account.domains == ["initech.example", "initech.io"]
        emails = session.scalars(select(Contact.email).where(Contact.account_id == "acc-3"))
        assert list(emails) == ["peter@initech.example"]


@pytest.mark.parametrize(
    ("provider", "payload"),
    [
        ("delighted", delighted_response(2, None, 1763891400)),
        ("typeform", {"event_id": "e", "form_response": {"token": "t"}}),
        ("zendesk", {"ticket_id": "1", "satisfaction_rating": {"score": "bad"}}),
        ("segment", segment_track("m-9", "user-9", "2026-11-22T09:00:00Z")),
    ],
)
def test_a_bad_signature_is_401_and_nothing_is_stored(
    server: Any, provider: str, payload: Any
) -> None:
    refused = post(server, provider, payload, secret="not-the-configured-secret")
    assert refused.status_code == 401
    unsigned = httpx.post(f"{server.url}/webhooks/{provider}", json=payload, timeout=30)
    assert unsigned.status_code == 401
    assert count(server, EventLog) == 0
    assert count(server, SurveyResponse) == 0 and count(server, UsageDay) == 0


def test_a_broken_payload_is_422_with_its_reason_and_kept_for_replay(server: Any) -> None:
    broken = post(server, "zendesk", {"ticket_id": "1", "updated_at": "2026-11-22T16:05:00Z"})
    assert broken.status_code == 422
    [rejection] = broken.json()["rejections"]
    assert rejection["reason"].startswith("satisfaction_rating:")
    assert count(server, EventLog, EventLog.status == "rejected") == 1
    retried = post(server, "zendesk", {"ticket_id": "1", "updated_at": "2026-11-22T16:05:00Z"})
    assert retried.status_code == 422
    assert count(server, EventLog) == 1  # Zendesk's retry of the same body: counted once


def test_an_unused_provider_event_is_200_and_ignored(server: Any) -> None:
    unsubscribe = {
        "event_type": "unsubscribe.created",
        "event_id": "u-1",
        "event_data": {"person": {"email": "charlie@acme.example"}},
    }
    answer = post(server, "delighted", unsubscribe)
    assert answer.status_code == 200 and answer.json()["ignored"] == 1
