"""POST /webhooks/stripe over real HTTP, signed as Stripe signs: Stripe Events become MRR."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from storage.db import session_scope
from storage.tables import EventLog, Invoice, MrrMovement
from tests.fake_stripe import FakeStripe
from tests.storage.sources.test_stripe import (
    DAY,
    JAN_15,
    coupon,
    discount,
    invoice,
    item,
    price,
    stripe_event,
    stripe_signature,
    subscription,
)

SECRET = "whsec_test_" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def post(server, payload: Any, *, secret: str = SECRET, at: datetime | None = None):
    body = json.dumps(payload).encode()
    headers = {
        "stripe-signature": stripe_signature(body, secret=secret, at=at),
        "content-type": "application/json",
    }
    response = httpx.post(
        server.url + "/webhooks/stripe", content=body, headers=headers, timeout=30
    )
    server.settle()  # what it queued is applied
    return response


def count(server, table, *where) -> int:
    with session_scope(server.factory) as session:
        return session.scalar(select(func.count()).select_from(table).where(*where))


def movements(server) -> list[tuple[str, str, Decimal]]:
    with session_scope(server.factory) as session:
        rows = session.execute(
            select(MrrMovement.account_id, MrrMovement.kind, MrrMovement.amount).order_by(
                MrrMovement.day
            )
        )
        return [(account, kind, Decimal(amount)) for account, kind, amount in rows]


@pytest.fixture
def server(web_server):
    return web_server(stripe_webhook_secret=SECRET)


def test_a_new_subscription_then_an_upgrade_are_new_then_expansion_mrr(server):
    created = stripe_event(
        "customer.subscription.created",
        subscription(item(price(3000), 2)),
        event_id="evt_created",
    )
    upgraded = stripe_event(
        "customer.subscription.updated",
        subscription(item(price(5000, price_id="price_gold"), 3)),
        event_id="evt_upgraded",
        created=JAN_15 + 3 * DAY,
        previous_attributes={"items": {"data": [item(price(3000), 2)]}},
    )
    for payload in (created, upgraded):
        response = post(server, payload)
        assert response.status_code == 200, response.text
        assert response.json()["queued"] == 1
    assert movements(server) == [
        ("cus_NffrFeUfNV2Hib", "new", Decimal("60")),
        ("cus_NffrFeUfNV2Hib", "expansion", Decimal("90")),
    ]


def test_a_cancellation_is_churn(server):
    post(server, stripe_event("customer.subscription.created", subscription(), event_id="evt_a"))
    ended = subscription(status="canceled", canceled_at=JAN_15 + 9 * DAY)
    deleted = stripe_event(
        "customer.subscription.deleted", ended, event_id="evt_b", created=JAN_15 + 9 * DAY
    )
    assert post(server, deleted).status_code == 200
    assert [kind for _, kind, _ in movements(server)] == ["new", "churn"]


def test_events_of_one_second_apply_as_created_then_changed_then_deleted_in_any_order(server):
    """Stripe's `created` counts whole seconds: a subscription created incomplete and made
    active by its first payment often shares one second, and the two may arrive reversed."""
    at = JAN_15 + 3_600
    created = stripe_event(
        "customer.subscription.created",
        subscription(status="incomplete"),
        event_id="evt_created",
        created=at,
    )
    activated = stripe_event(
        "customer.subscription.updated",
        subscription(status="active"),
        event_id="evt_activated",
        created=at,
        previous_attributes={"status": "incomplete"},
    )
    for payload in (activated, created):  # the later state arrives first
        assert post(server, payload).status_code == 200
    assert [kind for _, kind, _ in movements(server)] == ["new"]
    ended = stripe_event(
        "customer.subscription.deleted",
        subscription(status="canceled", canceled_at=at + 9 * DAY),
        event_id="evt_deleted",
        created=at + 9 * DAY,
    )
    changed = stripe_event(
        "customer.subscription.updated",
        subscription(item(price(3000), 5)),
        event_id="evt_seats",
        created=at + 9 * DAY,
    )
    for payload in (ended, changed):
        assert post(server, payload).status_code == 200
    assert [kind for _, kind, _ in movements(server)] == ["new", "churn"]


def test_a_paid_invoice_is_stored(server):
    response = post(server, stripe_event("invoice.paid", invoice(6000), event_id="evt_paid"))
    assert response.status_code == 200, response.text
    with session_scope(server.factory) as session:
        stored = session.scalars(select(Invoice)).one()
        assert (stored.invoice_id, stored.account_id, stored.currency) == (
            "in_1MtHbELkdIwHu7ixl4OzzPMv",
            "cus_NffrFeUfNV2Hib",
            "USD",
        )
        assert Decimal(stored.amount) == Decimal("60")


def test_a_bad_signature_is_refused_and_nothing_is_stored(server):
    response = post(server, stripe_event("invoice.paid", invoice()), secret="whsec_someone_else")
    assert response.status_code == 401
    assert count(server, EventLog) == 0


def test_a_stale_signature_is_refused(server):
    stale = datetime.now(UTC) - timedelta(minutes=6)
    assert post(server, stripe_event("invoice.paid", invoice()), at=stale).status_code == 401
    assert count(server, EventLog) == 0


def test_the_same_event_twice_is_counted_once(server):
    payload = stripe_event("customer.subscription.created", subscription(), event_id="evt_twice")
    assert post(server, payload).json()["queued"] == 1
    again = post(server, payload)
    assert again.status_code == 200
    assert again.json()["duplicate"] == 1
    assert count(server, EventLog) == 1
    assert count(server, MrrMovement) == 1


def test_an_unused_type_is_recorded_as_ignored(server):
    charge = {"id": "ch_3MmlLrLkdIwHu7ix0snN0B15", "object": "charge", "amount": 1099}
    response = post(server, stripe_event("charge.succeeded", charge, event_id="evt_charge"))
    assert (response.status_code, response.json()["ignored"]) == (200, 1)
    assert count(server, EventLog, EventLog.status == "ignored", EventLog.source == "stripe") == 1


def test_an_unmappable_event_is_kept_as_rejected_with_its_field_path(server):
    broken = subscription()
    del broken["customer"]
    response = post(server, stripe_event("customer.subscription.created", broken))
    assert response.status_code == 422
    assert response.json()["rejections"][0]["reason"] == "data.object.customer: missing"
    with session_scope(server.factory) as session:
        logged = session.scalars(select(EventLog)).one()
        assert (logged.source, logged.status) == ("stripe", "rejected")
        assert json.loads(logged.body)["id"] == "evt_1NG8Du2eZvKYlo2CUI79vXWy"


def test_without_a_secret_the_route_is_not_there(web_server):
    server = web_server()
    response = post(server, stripe_event("invoice.paid", invoice()))
    assert response.status_code == 404
    assert count(server, EventLog) == 0


SUBSCRIPTION_ID = "sub_1MowQVLkdIwHu7ixeRlqHVzs"


def _clover_discount() -> dict:
    """A Discount as Stripe's API gives it since 2025-09-30.clover: its coupon an id in `source`."""
    found = discount(id="di_25", source={"coupon": "co_25", "type": "coupon"})
    del found["coupon"]
    return found


def _discounted_by_id() -> dict:
    """A $100 subscription whose 25 % coupon the webhook gives only as a Discount id."""
    return stripe_event(
        "customer.subscription.created",
        subscription(item(price(10000), 1), discounts=["di_25"]),
        event_id="evt_discounted",
    )


@pytest.fixture
def stripe_api():
    with FakeStripe() as fake:
        fake.subscriptions[SUBSCRIPTION_ID] = subscription(
            item(price(10000), 1), discounts=[_clover_discount()]
        )
        fake.coupons["co_25"] = coupon(id="co_25", percent_off=25, name="25% off")
        yield fake


def test_discounts_given_as_ids_are_read_from_stripes_api(web_server, stripe_api):
    server = web_server(
        stripe_webhook_secret=SECRET,
        stripe_api_key=stripe_api.api_key,
        stripe_api_url=stripe_api.base_url,
    )
    response = post(server, _discounted_by_id())
    assert response.status_code == 200, response.text
    assert movements(server) == [("cus_NffrFeUfNV2Hib", "new", Decimal("75"))]
    assert stripe_api.requests == [f"/v1/subscriptions/{SUBSCRIPTION_ID}", "/v1/coupons/co_25"]
    assert stripe_api.queries[0] == {"expand[]": ["discounts", "items.data.discounts"]}
    with session_scope(server.factory) as session:  # logged as read: a replay needs no API
        [body] = session.scalars(select(EventLog.body)).all()
    [logged] = json.loads(body)["data"]["object"]["discounts"]
    assert logged["source"]["coupon"]["percent_off"] == 25


def test_without_an_api_key_discounts_given_as_ids_are_skipped(server):
    assert post(server, _discounted_by_id()).status_code == 200
    assert movements(server) == [("cus_NffrFeUfNV2Hib", "new", Decimal("100"))]


def test_stripes_api_failing_answers_503_so_that_stripe_sends_the_event_again(
    web_server, stripe_api
):
    server = web_server(
        stripe_webhook_secret=SECRET,
        stripe_api_key=stripe_api.api_key,
        stripe_api_url=stripe_api.base_url,
    )
    stripe_api.failing = 503
    refused = post(server, _discounted_by_id())
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "60"
    assert count(server, EventLog) == 0
    stripe_api.failing = None  # Stripe sends it again later
    assert post(server, _discounted_by_id()).status_code == 200
    assert movements(server) == [("cus_NffrFeUfNV2Hib", "new", Decimal("75"))]


def test_a_key_stripe_refuses_is_503_and_nothing_is_stored(web_server, stripe_api):
    server = web_server(
        stripe_webhook_secret=SECRET,
        stripe_api_key="rk_test_" + "NotTheRightKey000000000000",
        stripe_api_url=stripe_api.base_url,
    )
    refused = post(server, _discounted_by_id())
    assert refused.status_code == 503
    assert "401" in refused.json()["error"]
    assert count(server, EventLog) == 0
