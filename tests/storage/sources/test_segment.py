"""Segment: `X-Signature` (HMAC-SHA1), activity calls → usage, group calls → accounts,
identify calls → contacts."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.schemas import AccountUpserted, EventRejected, UsageRecorded, parse_event
from storage.sources.base import Delivery, WebhookRejected
from storage.sources.fields import body_id
from storage.sources.segment import SegmentSource

SECRET = "segment-shared-secret"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
source = SegmentSource()


def signed(body: bytes, secret: str = SECRET, options: dict[str, str] | None = None) -> Delivery:
    signature = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return Delivery({"x-signature": signature}, body, NOW, options or {})


def track(**changes: Any) -> dict[str, Any]:
    """A track call as Segment's Webhooks destination posts it."""
    call: dict[str, Any] = {
        "version": 1,
        "type": "track",
        "event": "Report Exported",
        "messageId": "ajs-next-1763890000000-2f1a",
        "userId": "user-1",
        "anonymousId": "507f191e810c19729de860ea",
        "properties": {"format": "csv"},
        "context": {
            "groupId": "acc-3",
            "ip": "8.8.8.8",
            "library": {"name": "analytics.js", "version": "2.11.1"},
        },
        "timestamp": "2026-11-22T23:30:08.276Z",
        "receivedAt": "2026-11-22T23:30:09.001Z",
        "sentAt": "2026-11-22T23:30:08.300Z",
    }
    call.update(changes)
    return call


def group(**traits: Any) -> dict[str, Any]:
    """A group call, as in Segment's spec."""
    return {
        "type": "group",
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "groupId": "acc-3",
        "userId": "user-1",
        "traits": {
            "name": "Initech",
            "industry": "Technology",
            "employees": 329,
            "plan": "enterprise",
            "website": "https://www.initech.example/",
            "owner_email": "csm@ourco.example",
            **traits,
        },
        "timestamp": "2026-11-22T09:00:00Z",
    }


def mapped(payload: Any, options: dict[str, str] | None = None) -> list[Any]:
    body = json.dumps(payload).encode()
    return source.events(payload, signed(body, options=options))


# Signatures


def test_a_body_signed_with_the_shared_secret_is_accepted() -> None:
    source.verify(signed(b'{"type": "track"}'), SECRET)


def test_an_upper_case_hex_signature_is_accepted() -> None:
    delivery = signed(b"{}")
    upper = Delivery({"x-signature": delivery.headers["x-signature"].upper()}, b"{}", NOW)
    source.verify(upper, SECRET)


def test_another_secret_is_refused() -> None:
    with pytest.raises(WebhookRejected) as refused:
        source.verify(signed(b"{}", "other"), SECRET)
    assert refused.value.status == 401


def test_a_tampered_body_is_refused() -> None:
    delivery = signed(b'{"userId": "a"}')
    with pytest.raises(WebhookRejected) as refused:
        source.verify(Delivery(delivery.headers, b'{"userId": "b"}', NOW), SECRET)
    assert refused.value.status == 401


def test_a_sha256_signature_is_refused() -> None:
    signature = hmac.new(SECRET.encode(), b"{}", hashlib.sha256).hexdigest()
    with pytest.raises(WebhookRejected):
        source.verify(Delivery({"x-signature": signature}, b"{}", NOW), SECRET)


def test_a_missing_signature_is_refused() -> None:
    with pytest.raises(WebhookRejected) as refused:
        source.verify(Delivery({}, b"{}", NOW), SECRET)
    assert refused.value.status == 401


# Mapping


def test_a_track_call_adds_its_user_to_the_accounts_day() -> None:
    body = track()
    [event] = mapped(body)
    assert event.raw == json.dumps(body)
    assert event.event_id == "ajs-next-1763890000000-2f1a"
    assert event.native == {
        "id": "ajs-next-1763890000000-2f1a",
        "type": "usage.recorded",
        "occurred_at": "2026-11-22T23:30:08.276000Z",
        "data": {"account_id": "acc-3", "day": "2026-11-22", "user_ids": ["user-1"], "merge": True},
    }
    parsed = parse_event(event.native)
    assert isinstance(parsed.data, UsageRecorded) and parsed.data.merge


def test_the_day_follows_the_timezone_option() -> None:
    [event] = mapped(track(), {"timezone": "Asia/Tokyo"})
    assert event.native["data"]["day"] == "2026-11-23"


@pytest.mark.parametrize("call", ["page", "screen"])
def test_page_and_screen_calls_count_as_activity(call: str) -> None:
    [event] = mapped(track(type=call, name="Dashboard"))
    assert event.native["type"] == "usage.recorded"


@pytest.mark.parametrize(
    ("changes", "account"),
    [
        ({"context": {}, "properties": {"account_id": "acc-p"}}, "acc-p"),
        ({"context": {"traits": {"account_id": "acc-t"}}}, "acc-t"),
        ({"context": {"traits": {"company": {"id": 12, "name": "Initech"}}}}, "12"),
        ({"context": {"groupId": "acc-g", "traits": {"account_id": "acc-t"}}}, "acc-g"),
    ],
)
def test_the_account_is_looked_up_in_order(changes: dict[str, Any], account: str) -> None:
    [event] = mapped(track(**changes))
    assert event.native["data"]["account_id"] == account


@pytest.mark.parametrize("changes", [{"context": {}}, {"userId": None}, {"userId": ""}])
def test_a_call_without_account_or_user_is_ignored(changes: dict[str, Any]) -> None:
    [event] = mapped(track(**changes))
    assert event.native["type"] == "segment.track"
    assert event.native["data"] == {}
    assert parse_event(event.native).data is None


def test_a_group_call_upserts_the_account() -> None:
    [event] = mapped(group())
    assert event.native["type"] == "account.upserted"
    assert event.native["data"] == {
        "account_id": "acc-3",
        "merge": True,
        "name": "Initech",
        "plan": "enterprise",
        "owner_email": "csm@ourco.example",
        "domains": ["initech.example"],
        "attributes": {"employees": 329, "industry": "Technology"},
    }
    parsed = parse_event(event.native)
    assert isinstance(parsed.data, AccountUpserted)
    assert parsed.data.domains == ["initech.example"]


def test_a_group_call_gives_only_the_traits_it_carries() -> None:
    [event] = mapped({**group(), "traits": {"plan": "scale"}})
    assert event.native["data"] == {"account_id": "acc-3", "merge": True, "plan": "scale"}
    assert parse_event(event.native).data.model_fields_set == {"account_id", "merge", "plan"}


def test_a_trait_kpibot_cannot_keep_costs_the_group_call_nothing_else() -> None:
    # Segment's group traits are free text: an over-long plan is shortened, and an owner or a
    # currency kpibot cannot read is left out, while the call's name, website… still count.
    [event] = mapped(group(plan="p" * 100, owner_email="n/a", currency="US Dollar"))
    assert event.reason is None
    data = parse_event(event.native).data
    assert (data.name, data.plan, data.domains) == ("Initech", "p" * 64, ["initech.example"])
    assert "owner_email" not in event.native["data"] and "currency" not in event.native["data"]
    [event] = mapped(group(currency=" eur ", owner_email=" CSM@ourco.example "))
    assert (event.native["data"]["currency"], event.native["data"]["owner_email"]) == (
        "EUR",
        "csm@ourco.example",
    )


def test_non_scalar_traits_are_left_out_of_the_attributes() -> None:
    [event] = mapped(group(address={"city": "Austin"}, ownerEmail=None, owner_email=None))
    data = event.native["data"]
    assert "address" not in data["attributes"] and "owner_email" not in data


def identify(**traits: Any) -> dict[str, Any]:
    """An identify call, as in Segment's spec (traits of the user)."""
    return {
        "type": "identify",
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093dc",
        "userId": "97980cfea0067",
        "traits": {
            "email": "Peter@Initech.example",
            "first_name": "Peter",
            "last_name": "Gibbons",
            "phone": "+1 555 0100",
            "company": {"id": "acc-3", "name": "Initech"},
            **traits,
        },
        "timestamp": "2026-11-22T09:00:00Z",
    }


def test_an_identify_call_adds_the_person_to_the_contacts_of_their_account() -> None:
    [event] = mapped(identify())
    assert event.native["type"] == "account.upserted"
    assert event.native["data"] == {
        "account_id": "acc-3",
        "merge": True,
        "contacts": [
            {"email": "peter@initech.example", "name": "Peter Gibbons", "phone": "+1 555 0100"}
        ],
    }
    parsed = parse_event(event.native)
    assert isinstance(parsed.data, AccountUpserted)
    assert parsed.data.model_fields_set == {"account_id", "merge", "contacts"}


@pytest.mark.parametrize(
    ("changes", "account"),
    [
        ({"account_id": "acc-own"}, "acc-own"),
        ({"context": {"groupId": "acc-g"}}, "acc-g"),  # the call's context comes first
    ],
)
def test_an_identify_call_finds_its_account_like_a_track_call(
    changes: dict[str, Any], account: str
) -> None:
    call = identify(**{k: v for k, v in changes.items() if k != "context"})
    call.update({k: v for k, v in changes.items() if k == "context"})
    [event] = mapped(call)
    assert event.native["data"]["account_id"] == account


def test_an_identify_call_shortens_what_kpibot_does_not_keep_whole() -> None:
    [event] = mapped(identify(name="P" * 300, phone="5" * 80))
    [contact] = event.native["data"]["contacts"]
    assert (len(contact["name"]), len(contact["phone"])) == (255, 64)
    assert parse_event(event.native).data is not None


@pytest.mark.parametrize(
    "traits",
    [{"email": None}, {"email": "n/a"}, {"company": None}],  # no email, a placeholder, no account
)
def test_an_identify_call_without_email_or_account_is_ignored(traits: dict[str, Any]) -> None:
    [event] = mapped(identify(**traits))
    assert event.native["type"] == "segment.identify"
    assert parse_event(event.native).data is None


def test_alias_is_ignored() -> None:
    body = track(type="alias", previousId="anon-1")
    [event] = mapped(body)
    assert event.native["type"] == "segment.alias"
    assert parse_event(event.native).data is None


def test_the_documented_delete_notification_is_ignored_under_a_digest_of_its_body() -> None:
    # Segment's webhook documentation shows a user deletion request with no messageId.
    body = {"type": "delete", "userId": "019mr8mf4r", "timestamp": "2012-12-02T00:30:08.276Z"}
    [event] = mapped(body)
    assert event.native["type"] == "segment.delete"
    assert event.event_id == event.native["id"] == body_id(json.dumps(body).encode())
    assert parse_event(event.native).data is None
    [without_time] = mapped({"type": "delete", "userId": "019mr8mf4r"})
    assert without_time.native["occurred_at"] == "2026-11-23T10:00:00Z"  # when kpibot got it


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (track(messageId=None), "messageId: missing"),
        (track(type=None), "type: missing"),
        (track(timestamp="yesterday", receivedAt=None), "timestamp: missing"),
        (track(timestamp="9999-12-31T23:59:59-01:00", receivedAt=None), "timestamp: missing"),
        ({**group(), "groupId": None}, "groupId: missing"),
    ],
)
def test_a_broken_call_is_rejected_with_the_field_path(body: dict[str, Any], reason: str) -> None:
    [event] = mapped(body)
    assert event.native is None
    assert event.reason is not None and event.reason.startswith(reason)


def test_the_received_time_stands_in_for_a_missing_timestamp() -> None:
    [event] = mapped(track(timestamp=None))
    assert event.native["occurred_at"] == "2026-11-22T23:30:09.001000Z"


def test_a_batch_is_refused() -> None:
    with pytest.raises(WebhookRejected) as refused:
        mapped([track(), track(messageId="m2")])
    assert refused.value.status == 422
    assert "batching" in refused.value.reason


@pytest.mark.parametrize("payload", ["text", 3, None])
def test_a_body_that_is_not_an_object_is_refused(payload: Any) -> None:
    with pytest.raises(WebhookRejected) as refused:
        mapped(payload)
    assert refused.value.status == 422


values = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
objects = st.dictionaries(st.text(max_size=12), values | st.dictionaries(st.text(), values))


@given(
    st.sampled_from(["track", "page", "group", "identify", "TRACK", ""]) | values,
    st.dictionaries(
        st.sampled_from(["messageId", "timestamp", "userId", "groupId", "receivedAt"]), values
    ),
    objects,
    objects,
)
def test_hostile_calls_never_crash(
    call: Any, fields: dict[str, Any], context: dict[str, Any], traits: dict[str, Any]
) -> None:
    [event] = mapped({"type": call, **fields, "context": context, "traits": traits})
    if event.native is None:
        assert event.reason
        return
    with contextlib.suppress(EventRejected):
        parse_event(event.native)


def test_a_body_that_is_not_utf8_is_refused() -> None:
    body = json.dumps(track()).encode("utf-16")
    with pytest.raises(WebhookRejected) as refused:
        source.events(json.loads(body), signed(body))
    assert refused.value.status == 400
