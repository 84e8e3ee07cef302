"""The Stripe source: its signature scheme and how Stripe Events map to native events.

Payloads follow Stripe's API reference (Event, Subscription, Subscription Item, Price, Discount,
Coupon, Invoice objects) in the current shapes: billing periods on the items (2025-03-31.basil),
`discounts` as ids unless expanded, the legacy `discount` object, `source.coupon` (clover).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.mrr import subscription_mrr
from storage.schemas import EventRejected, SubscriptionUpdated, parse_event
from storage.sources.base import Delivery, WebhookRejected
from storage.sources.registry import get_source
from storage.sources.stripe import StripeSource, minor_unit_exponent

SECRET = "whsec_" + "a1b2c3d4e5f60718293a4b5c6d7e8f90"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
JAN_15 = int(datetime(2026, 1, 15, 10, tzinfo=UTC).timestamp())
DAY = 86_400


# ---- builders: Stripe objects as Stripe sends them -----------------------------------------


def stripe_signature(body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send for `body`."""
    timestamp = int((at or datetime.now(UTC)).timestamp())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def price(
    unit_amount: int | None = 2000,
    *,
    currency: str = "usd",
    interval: str = "month",
    interval_count: int = 1,
    usage_type: str = "licensed",
    price_id: str = "price_1MowQULkdIwHu7ixraBm864M",
    **extra: Any,
) -> dict[str, Any]:
    """A recurring Price object."""
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": 1679431181,
        "currency": currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": "prod_NZKdYqrwEYx6iK",
        "recurring": {
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": usage_type,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
    } | extra


def item(
    item_price: dict[str, Any], quantity: int | None = 1, *, item_id: str = "si_NcLYdDxLHxlFo7"
) -> dict[str, Any]:
    """A Subscription Item, with its own billing period (API 2025-03-31.basil and later)."""
    return {
        "id": item_id,
        "object": "subscription_item",
        "created": JAN_15,
        "current_period_end": JAN_15 + 31 * DAY,
        "current_period_start": JAN_15,
        "discounts": [],
        "metadata": {},
        "price": item_price,
        "quantity": quantity,
        "subscription": "sub_1MowQVLkdIwHu7ixeRlqHVzs",
        "tax_rates": [],
    }


def subscription(
    *items: dict[str, Any],
    status: str = "active",
    currency: str = "usd",
    customer: Any = "cus_NffrFeUfNV2Hib",
    **extra: Any,
) -> dict[str, Any]:
    """A Subscription object (no subscription-level period: it lives on the items)."""
    items = items or (item(price()),)
    return {
        "id": "sub_1MowQVLkdIwHu7ixeRlqHVzs",
        "object": "subscription",
        "billing_cycle_anchor": JAN_15,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": JAN_15,
        "currency": currency,
        "customer": customer,
        "default_payment_method": None,
        "discount": None,
        "discounts": [],
        "ended_at": None,
        "items": {
            "object": "list",
            "data": list(items),
            "has_more": False,
            "url": "/v1/subscription_items?subscription=sub_1MowQVLkdIwHu7ixeRlqHVzs",
        },
        "latest_invoice": "in_1MowQWLkdIwHu7ixuzkSPfKd",
        "livemode": False,
        "metadata": {},
        "pause_collection": None,
        "start_date": JAN_15,
        "status": status,
        "trial_end": None,
        "trial_start": None,
    } | extra


def coupon(**fields: Any) -> dict[str, Any]:
    """A Coupon: 20 % off forever unless told otherwise."""
    return {
        "id": "Z4OV52SU",
        "object": "coupon",
        "amount_off": None,
        "created": 1678037688,
        "currency": None,
        "duration": "forever",
        "duration_in_months": None,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "name": "20% off",
        "percent_off": 20,
        "redeem_by": None,
        "times_redeemed": 1,
        "valid": True,
    } | fields


def discount(applied: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A Discount (the pre-clover shape, with its `coupon` expanded)."""
    return {
        "id": "di_1MowQWLkdIwHu7ixkQ9Ycf3a",
        "object": "discount",
        "coupon": applied or coupon(),
        "customer": "cus_NffrFeUfNV2Hib",
        "end": None,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "start": JAN_15,
        "subscription": "sub_1MowQVLkdIwHu7ixeRlqHVzs",
        "subscription_item": None,
    } | fields


def invoice(amount_paid: int = 6000, *, currency: str = "usd", **extra: Any) -> dict[str, Any]:
    """A paid Invoice."""
    return {
        "id": "in_1MtHbELkdIwHu7ixl4OzzPMv",
        "object": "invoice",
        "amount_due": amount_paid,
        "amount_paid": amount_paid,
        "amount_remaining": 0,
        "billing_reason": "subscription_cycle",
        "currency": currency,
        "customer": "cus_NffrFeUfNV2Hib",
        "livemode": False,
        "status": "paid",
        "subtotal": amount_paid,
        "total": amount_paid,
    } | extra


def stripe_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int = JAN_15,
    event_id: str = "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Event object as a webhook endpoint receives it."""
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_nwQXc1H5Yx5gQp", "idempotency_key": None},
        "type": event_type,
    }


def deliver(payload: Any, *, body: bytes | None = None) -> list:
    """Map a decoded payload the way the webhook route does."""
    body = json.dumps(payload).encode() if body is None else body
    delivery = Delivery({}, body, NOW)
    return StripeSource().events(payload, delivery)


def native(payload: dict[str, Any]) -> dict[str, Any]:
    """The one native event a payload maps to, checked against the native schema."""
    (event,) = deliver(payload)
    assert event.reason is None, event.reason
    parse_event(event.native)
    return event.native


def mrr(data: dict[str, Any]) -> Decimal:
    """The MRR kpibot derives from a native subscription.updated data object."""
    fields = SubscriptionUpdated.model_validate(data)
    return subscription_mrr(
        status=fields.status,
        amount=fields.amount,
        quantity=fields.quantity,
        interval=fields.interval,
        interval_count=fields.interval_count,
        discount_percent=fields.discount_percent,
        discount_amount=fields.discount_amount,
    )


# ---- the signature -------------------------------------------------------------------------


def signed(body: bytes, header: str | None) -> Delivery:
    return Delivery({} if header is None else {"stripe-signature": header}, body, NOW)


BODY = json.dumps(stripe_event("customer.subscription.created", subscription())).encode()


def refused(delivery: Delivery, secret: str = SECRET) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        StripeSource().verify(delivery, secret)
    assert caught.value.status == 401
    return caught.value


def test_the_registry_serves_the_stripe_source():
    source = get_source("stripe")
    assert isinstance(source, StripeSource)
    assert source.secret_setting == "STRIPE_WEBHOOK_SECRET"


def test_a_signature_made_with_the_whole_whsec_secret_is_accepted():
    StripeSource().verify(signed(BODY, stripe_signature(BODY, at=NOW)), SECRET)


def test_a_signature_made_with_another_secret_is_refused():
    header = stripe_signature(BODY, secret="whsec_another", at=NOW)
    assert "does not match" in refused(signed(BODY, header)).reason
    # Stripe's key is the whole string: the part after whsec_ alone is another key.
    header = stripe_signature(BODY, secret=SECRET.removeprefix("whsec_"), at=NOW)
    refused(signed(BODY, header))


@pytest.mark.parametrize(
    "offset", [timedelta(minutes=-5, seconds=-1), timedelta(minutes=5, seconds=1)]
)
def test_a_stale_or_future_timestamp_is_refused(offset):
    reason = refused(signed(BODY, stripe_signature(BODY, at=NOW + offset))).reason
    assert "5-minute" in reason


@pytest.mark.parametrize("offset", [timedelta(minutes=-4, seconds=-59), timedelta(minutes=4)])
def test_a_timestamp_within_five_minutes_is_accepted(offset):
    StripeSource().verify(signed(BODY, stripe_signature(BODY, at=NOW + offset)), SECRET)


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_header_is_refused(header):
    assert "missing" in refused(signed(BODY, header)).reason


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "v1=abc",
        "t=1772443800",
        "t=,v1=abc",
        "t=soon,v1=abc",
        "t=-1772443800,v1=abc",
        "t=1772443800,t=1772443800,v1=abc",
        "t=" + "9" * 40 + ",v1=abc",
        "t=1772443800,v0=abc",
    ],
)
def test_a_malformed_header_is_refused(header):
    assert "malformed" in refused(signed(BODY, header)).reason


def test_a_tampered_body_is_refused():
    header = stripe_signature(BODY, at=NOW)
    refused(signed(BODY.replace(b'"active"', b'"canceled"'), header))


def test_any_matching_v1_signature_is_enough():
    good = stripe_signature(BODY, at=NOW)
    timestamp, _, right = good.partition(",")
    wrong = "v1=" + "0" * 64
    StripeSource().verify(signed(BODY, f"{timestamp},{wrong},{right},v0=ff"), SECRET)
    refused(signed(BODY, f"{timestamp},{wrong},v0={right.removeprefix('v1=')}"))


@given(st.text(max_size=80) | st.sampled_from(["t=1,v1=", "t=,v1", ",,,", "t==1,v1==2", "\x00=1"]))
@settings(max_examples=300)
def test_any_header_is_refused_with_401_never_a_crash(header):
    refused(signed(BODY, header))


# ---- subscriptions -------------------------------------------------------------------------


def test_a_monthly_subscription_with_a_quantity():
    event = native(
        stripe_event("customer.subscription.created", subscription(item(price(3000), 2)))
    )
    assert event == {
        "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "type": "subscription.updated",
        "occurred_at": "2026-01-15T10:00:00+00:00",
        "data": {
            "account_id": "cus_NffrFeUfNV2Hib",
            "subscription_id": "sub_1MowQVLkdIwHu7ixeRlqHVzs",
            "status": "active",
            "amount": "30",
            "currency": "USD",
            "interval": "month",
            "interval_count": 1,
            "quantity": 2,
        },
    }
    assert mrr(event["data"]) == Decimal("60")  # KPIS.md: 2 × Silver monthly → $60


def test_a_yearly_subscription_is_normalised_to_a_month():
    gold = subscription(item(price(50000, interval="year"), 4))
    data = native(stripe_event("customer.subscription.created", gold))["data"]
    assert (data["amount"], data["interval"], data["quantity"]) == ("500", "year", 4)
    assert mrr(data).quantize(Decimal("0.01")) == Decimal("166.67")  # KPIS.md: 4 × Gold yearly


def test_a_quarterly_price_keeps_its_interval_count():
    data = native(
        stripe_event(
            "customer.subscription.created", subscription(item(price(9000, interval_count=3)))
        )
    )["data"]
    assert (data["interval"], data["interval_count"]) == ("month", 3)
    assert mrr(data) == Decimal("30")


def test_a_trial_carries_no_mrr():
    trial = subscription(status="trialing", trial_start=JAN_15, trial_end=JAN_15 + 14 * DAY)
    data = native(stripe_event("customer.subscription.created", trial))["data"]
    assert data["status"] == "trialing"
    assert mrr(data) == 0


def test_an_upgrade_carries_the_new_full_state():
    upgraded = subscription(item(price(5000, price_id="price_gold"), 3))
    before = {"items": {"data": [item(price(3000), 2)]}}
    event = stripe_event(
        "customer.subscription.updated",
        upgraded,
        created=JAN_15 + 3 * DAY,
        previous_attributes=before,
    )
    data = native(event)["data"]
    assert (data["amount"], data["quantity"]) == ("50", 3)
    assert mrr(data) == Decimal("150")


def test_a_deleted_subscription_is_canceled():
    ended = subscription(status="canceled", canceled_at=JAN_15, ended_at=JAN_15)
    data = native(stripe_event("customer.subscription.deleted", ended))["data"]
    assert data["status"] == "canceled"
    # Whatever the object's status says, a deletion ends the subscription.
    data = native(stripe_event("customer.subscription.deleted", subscription(status="active")))[
        "data"
    ]
    assert data["status"] == "canceled"


def test_a_deleted_subscription_on_a_price_kpibot_cannot_read_still_ends():
    # Stripe leaves a tiered price's tiers out unless expanded: such a subscription cannot be
    # priced, but once canceled it carries no MRR anyway, and its deletion must end its MRR.
    tiered = price(None, billing_scheme="tiered", tiers_mode="volume")
    data = native(stripe_event("customer.subscription.deleted", subscription(item(tiered))))["data"]
    assert (data["status"], data["amount"], data["currency"]) == ("canceled", "0", "USD")
    refused = deliver(stripe_event("customer.subscription.updated", subscription(item(tiered))))
    assert "tiered prices are not supported" in (refused[0].reason or "")


@pytest.mark.parametrize(
    ("stripe_status", "status"),
    [("unpaid", "paused"), ("paused", "paused"), ("incomplete_expired", "canceled")],
)
def test_a_subscription_that_stops_paying_on_a_price_kpibot_cannot_read_ends_its_mrr(
    stripe_status: str, status: str
):
    # Stripe counts an unpaid or paused subscription out of MRR whatever its price: the event
    # must not be refused for a price kpibot cannot read, or the MRR it had would stay.
    tiered = price(None, billing_scheme="tiered", tiers_mode="volume")
    stopped = subscription(item(tiered), status=stripe_status)
    data = native(stripe_event("customer.subscription.updated", stopped))["data"]
    assert (data["status"], data["amount"]) == (status, "0")
    assert mrr(data) == 0


def test_paused_then_resumed():
    paused = native(stripe_event("customer.subscription.paused", subscription(status="paused")))
    resumed = native(stripe_event("customer.subscription.resumed", subscription(status="active")))
    assert (paused["data"]["status"], resumed["data"]["status"]) == ("paused", "active")
    assert mrr(paused["data"]) == 0 and mrr(resumed["data"]) == Decimal("20")


@pytest.mark.parametrize(
    ("stripe_status", "status"),
    [
        ("past_due", "past_due"),
        ("unpaid", "paused"),
        ("incomplete", "trialing"),
        ("incomplete_expired", "canceled"),
        ("canceled", "canceled"),
    ],
)
def test_every_stripe_status_has_a_native_status(stripe_status, status):
    data = native(
        stripe_event("customer.subscription.updated", subscription(status=stripe_status))
    )["data"]
    assert data["status"] == status


def test_a_twenty_percent_forever_coupon_through_the_legacy_discount_object():
    discounted = subscription(discount=discount(), discounts=["di_1MowQWLkdIwHu7ixkQ9Ycf3a"])
    data = native(stripe_event("customer.subscription.updated", discounted))["data"]
    assert data["discount_percent"] == "20"
    assert mrr(data) == Decimal("16")


def test_expanded_discounts_in_both_coupon_shapes_are_used_once():
    clover = discount(id="di_clover", source={"type": "coupon", "coupon": coupon(percent_off=10)})
    del clover["coupon"]
    discounted = subscription(discounts=[discount(), clover], discount=discount())
    data = native(stripe_event("customer.subscription.updated", discounted))["data"]
    assert data["discount_amount"] == "5.6"  # 20 − 20 % − 10 %: two discounts become an amount
    assert mrr(data) == Decimal("14.4")


def test_unexpanded_discounts_cannot_be_used():
    by_id = subscription(discounts=["di_1MowQWLkdIwHu7ixkQ9Ycf3a"])
    clover = discount(source={"type": "coupon", "coupon": "Z4OV52SU"})
    del clover["coupon"]
    for sub in (by_id, subscription(discounts=[clover])):
        data = native(stripe_event("customer.subscription.updated", sub))["data"]
        assert "discount_percent" not in data and "discount_amount" not in data


@pytest.mark.parametrize(
    ("applied", "counts"),
    [
        (discount(coupon(duration="once")), False),
        (discount(coupon(duration="repeating", duration_in_months=3), end=JAN_15 + DAY), True),
        (discount(coupon(duration="repeating", duration_in_months=3), end=JAN_15), False),
    ],
)
def test_only_recurring_discounts_in_force_count(applied, counts):
    data = native(stripe_event("customer.subscription.updated", subscription(discount=applied)))[
        "data"
    ]
    assert ("discount_percent" in data) is counts


def test_an_amount_off_coupon_in_the_subscription_currency():
    euros = coupon(percent_off=None, amount_off=500, currency="eur", duration="repeating")
    sub = subscription(
        item(price(2000, currency="eur"), 2),
        currency="eur",
        discount=discount(euros, end=JAN_15 + 90 * DAY),
    )
    data = native(stripe_event("customer.subscription.updated", sub))["data"]
    assert (data["currency"], data["discount_amount"]) == ("EUR", "5")
    assert mrr(data) == Decimal("35")


def test_an_amount_off_coupon_in_another_currency_uses_its_currency_options():
    dollars = coupon(
        percent_off=None,
        amount_off=500,
        currency="usd",
        currency_options={"eur": {"amount_off": 400}},
    )
    sub = subscription(
        item(price(2000, currency="eur")), currency="eur", discount=discount(dollars)
    )
    assert (
        native(stripe_event("customer.subscription.updated", sub))["data"]["discount_amount"] == "4"
    )
    del dollars["currency_options"]
    assert (
        "discount_amount" not in native(stripe_event("customer.subscription.updated", sub))["data"]
    )


def test_a_multi_currency_price_counts_its_amount_in_the_subscription_currency():
    # A USD price with a EUR option, bought in EUR: Stripe bills its EUR amount, which the payload
    # holds only when the price's currency_options are expanded.
    dollars = price(2000, currency="usd", currency_options={"eur": {"unit_amount": 1800}})
    sub = subscription(item(dollars), currency="eur")
    data = native(stripe_event("customer.subscription.updated", sub))["data"]
    assert (data["amount"], data["currency"]) == ("18", "EUR")
    del dollars["currency_options"]
    [refused] = deliver(stripe_event("customer.subscription.updated", sub))
    assert refused.reason == (
        "data.object.items.data[0].price.currency: USD, while the subscription is billed in EUR, "
        "and the price's amount in EUR (its currency_options) is not in the payload"
    )
    # Once it no longer pays, the subscription ends its MRR all the same.
    ended = native(stripe_event("customer.subscription.deleted", sub))["data"]
    assert (ended["status"], ended["amount"]) == ("canceled", "0")


def test_a_coupon_limited_to_some_products_lowers_only_their_items():
    # Two $100 items; a coupon whose applies_to names only product A takes off A's part.
    a = item(price(10000, price_id="price_a", product="prod_A"), 1, item_id="si_a")
    b = item(price(10000, price_id="price_b", product="prod_B"), 1, item_id="si_b")
    half = coupon(percent_off=50, applies_to={"products": ["prod_A"]})
    data = native(
        stripe_event(
            "customer.subscription.updated", subscription(a, b, discounts=[discount(half)])
        )
    )["data"]
    assert (data["amount"], data["discount_amount"]) == ("200", "50")
    assert mrr(data) == Decimal("150")
    # An amount off is taken off the products it applies to only, up to what they cost.
    ten = coupon(
        percent_off=None, amount_off=15000, currency="usd", applies_to={"products": ["prod_B"]}
    )
    data = native(
        stripe_event("customer.subscription.updated", subscription(a, b, discounts=[discount(ten)]))
    )["data"]
    assert mrr(data) == Decimal("100")
    # Without applies_to (as a webhook gives a coupon unless expanded), it lowers every item.
    del half["applies_to"]
    data = native(
        stripe_event(
            "customer.subscription.updated", subscription(a, b, discounts=[discount(half)])
        )
    )["data"]
    assert mrr(data) == Decimal("100")


def tax_rate(percentage: float, *, inclusive: bool) -> dict[str, Any]:
    """A Tax Rate, as a subscription or its item carries it."""
    return {
        "id": "txr_1MzS4RLkdIwHu7ixwvpZVWUW",
        "object": "tax_rate",
        "active": True,
        "display_name": "VAT",
        "inclusive": inclusive,
        "jurisdiction": "FR",
        "percentage": percentage,
    }


def test_an_inclusive_tax_rate_is_taken_out_of_mrr():
    # KPIS.md: taxes are not MRR. A 120 EUR price with 20 % VAT included is 100 of MRR.
    vat = tax_rate(20.0, inclusive=True)
    taxed = item(price(12000, currency="eur"), 3) | {"tax_rates": [vat]}
    data = native(
        stripe_event("customer.subscription.updated", subscription(taxed, currency="eur"))
    )["data"]
    assert (data["amount"], data["quantity"]) == ("100", 3)
    assert mrr(data) == Decimal("300")
    # The subscription's default rates stand for an item without its own, after discounts.
    plain = item(price(12000, currency="eur"), 1)
    sub = subscription(
        plain, currency="eur", default_tax_rates=[vat], discounts=[discount(coupon(percent_off=50))]
    )
    data = native(stripe_event("customer.subscription.updated", sub))["data"]
    assert mrr(data) == Decimal("50")
    # An exclusive rate is charged on top of the price: the price is MRR as it is.
    sub = subscription(plain, currency="eur", default_tax_rates=[tax_rate(20.0, inclusive=False)])
    assert mrr(native(stripe_event("customer.subscription.updated", sub))["data"]) == Decimal("120")


def test_an_item_discount_applies_to_its_item_only():
    plus = item(price(1000, price_id="price_addon"), 1, item_id="si_addon")
    plus["discounts"] = [discount(coupon(percent_off=50), subscription_item="si_addon")]
    data = native(
        stripe_event("customer.subscription.updated", subscription(item(price(2000)), plus))
    )["data"]
    assert (data["amount"], data["discount_amount"]) == ("30", "5")


def test_a_jpy_price_has_no_minor_unit():
    yen = subscription(item(price(5000, currency="jpy")), currency="jpy")
    data = native(stripe_event("customer.subscription.created", yen))["data"]
    assert (data["amount"], data["currency"]) == ("5000", "JPY")


def test_minor_units_follow_stripe_not_iso():
    assert [minor_unit_exponent(c) for c in ("usd", "JPY", "KWD", "ISK", "HUF")] == [2, 0, 3, 2, 2]


def test_a_metered_item_is_not_mrr():
    usage = item(
        price(None, usage_type="metered", price_id="price_usage"), None, item_id="si_usage"
    )
    usage["price"]["unit_amount_decimal"] = "0.25"
    data = native(
        stripe_event("customer.subscription.created", subscription(item(price(2000), 5), usage))
    )["data"]
    assert (data["amount"], data["quantity"]) == ("20", 5)
    only_usage = native(stripe_event("customer.subscription.created", subscription(usage)))["data"]
    assert only_usage["amount"] == "0"


def test_two_items_on_one_interval_are_summed():
    seats = item(price(1500), 4)
    addon = item(price(900, price_id="price_addon"), 1, item_id="si_addon")
    data = native(stripe_event("customer.subscription.created", subscription(seats, addon)))["data"]
    assert (data["amount"], data["quantity"], data["interval"]) == ("69", 1, "month")


def test_items_on_different_intervals_become_one_monthly_amount():
    monthly = item(price(3000), 1)
    yearly = item(price(12000, interval="year", price_id="price_support"), 1, item_id="si_support")
    data = native(stripe_event("customer.subscription.created", subscription(monthly, yearly)))[
        "data"
    ]
    assert (data["amount"], data["interval"], data["interval_count"]) == ("40", "month", 1)


def test_an_amount_off_counts_per_invoice_of_the_most_often_billed_item_in_any_order():
    # Items of different periods are invoiced apart, and an amount off comes off every invoice:
    # $5 off a month of a $10 monthly item and a $120 yearly item, whichever item comes first.
    monthly = item(price(1000), 1)
    yearly = item(price(12000, interval="year", price_id="price_y"), 1, item_id="si_y")
    five_off = discount(coupon(percent_off=None, amount_off=500, currency="usd"))
    for items in ((monthly, yearly), (yearly, monthly)):
        sub = subscription(*items, discount=five_off)
        data = native(stripe_event("customer.subscription.updated", sub))["data"]
        assert mrr(data) == Decimal("15")


def test_fractional_unit_amounts_and_packages():
    fractional = price(None)
    fractional["unit_amount_decimal"] = "1999.5"
    assert (
        native(stripe_event("customer.subscription.created", subscription(item(fractional))))[
            "data"
        ]["amount"]
        == "19.995"
    )
    packaged = price(1000, transform_quantity={"divide_by": 10, "round": "up"})
    data = native(stripe_event("customer.subscription.created", subscription(item(packaged, 25))))[
        "data"
    ]
    assert data["quantity"] == 3  # 25 seats are billed as three packs of ten


def test_an_expanded_customer_gives_its_id():
    sub = subscription(
        customer={"id": "cus_NffrFeUfNV2Hib", "object": "customer", "email": "a@b.co"}
    )
    assert (
        native(stripe_event("customer.subscription.created", sub))["data"]["account_id"]
        == "cus_NffrFeUfNV2Hib"
    )


# ---- invoices and other types -------------------------------------------------------------


def test_a_paid_invoice():
    event = native(stripe_event("invoice.paid", invoice(6000), created=JAN_15 + 31 * DAY))
    assert event["type"] == "invoice.paid"
    assert event["data"] == {
        "account_id": "cus_NffrFeUfNV2Hib",
        "invoice_id": "in_1MtHbELkdIwHu7ixl4OzzPMv",
        "amount": "60",
        "currency": "USD",
    }


def test_a_three_decimal_invoice_is_rounded_to_the_hundredth_kpibot_keeps():
    """KWD has three decimals at Stripe, and kpibot keeps money in hundredths: 12.340 KWD is
    stored as it is; 12.345 KWD, which Stripe's payload cannot be made to say otherwise, counts
    12.35 (documented) rather than being rejected, as a native event of 12.345 is."""
    whole = parse_event(native(stripe_event("invoice.paid", invoice(12340, currency="kwd"))))
    assert (whole.data.amount, whole.data.currency) == (Decimal("12.34"), "KWD")
    fils = native(stripe_event("invoice.paid", invoice(12345, currency="kwd")))
    assert fils["data"]["amount"] == "12.35"
    assert parse_event(fils).data.amount == Decimal("12.35")
    fils["data"]["amount"] = "12.345"
    with pytest.raises(EventRejected, match=r"^data\.amount: 12\.345 has more than 2 decimals"):
        parse_event(fils)


def test_a_zero_invoice_is_ignored():
    event = native(stripe_event("invoice.paid", invoice(0, billing_reason="subscription_create")))
    assert (event["type"], event["data"]) == ("stripe.invoice.paid", {})


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("charge.succeeded", {"id": "ch_3MmlLrLkdIwHu7ix0snN0B15", "object": "charge"}),
        ("customer.discount.created", discount()),
        ("customer.subscription.trial_will_end", subscription(status="trialing")),
    ],
)
def test_types_kpibot_does_not_use_are_ignored(event_type, obj):
    event = native(stripe_event(event_type, obj))
    assert event == {
        "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "type": "stripe." + event_type,
        "occurred_at": "2026-01-15T10:00:00+00:00",
        "data": {},
    }
    assert parse_event(event).data is None


def test_the_raw_body_is_kept_exactly():
    payload = stripe_event("invoice.paid", invoice())
    body = json.dumps(payload, indent=2).encode()
    (event,) = deliver(payload, body=body)
    assert event.raw == body.decode() and event.event_id == payload["id"]


# ---- broken payloads ----------------------------------------------------------------------


def _broken(change) -> dict[str, Any]:
    payload = stripe_event("customer.subscription.updated", subscription())
    change(payload, payload["data"]["object"], payload["data"]["object"]["items"]["data"][0])
    return payload


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda e, s, i: [i["price"].pop("unit_amount"), i["price"].pop("unit_amount_decimal")],
            "data.object.items.data[0].price.unit_amount: missing",
        ),
        (
            lambda e, s, i: i["price"].update(unit_amount="20.00", unit_amount_decimal=None),
            "data.object.items.data[0].price.unit_amount: must be an integer, not a string",
        ),
        (
            lambda e, s, i: i["price"].update(
                unit_amount=None, unit_amount_decimal=None, billing_scheme="tiered"
            ),
            "data.object.items.data[0].price.unit_amount: "
            "missing (tiered prices are not supported)",
        ),
        (
            lambda e, s, i: i.update(quantity="2"),
            "data.object.items.data[0].quantity: must be an integer, not a string",
        ),
        (
            lambda e, s, i: i.update(quantity=True),
            "data.object.items.data[0].quantity: must be an integer, not a boolean",
        ),
        (
            lambda e, s, i: i["price"]["recurring"].update(interval="fortnight"),
            "data.object.items.data[0].price.recurring.interval: unknown interval 'fortnight'",
        ),
        (lambda e, s, i: s.pop("customer"), "data.object.customer: missing"),
        (
            lambda e, s, i: s.update(customer={"object": "customer"}),
            "data.object.customer.id: missing",
        ),
        (
            lambda e, s, i: s.update(status="dormant"),
            "data.object.status: unknown status 'dormant'",
        ),
        (lambda e, s, i: s.update(currency="xyz"), "data.object.currency: unknown currency 'XYZ'"),
        (
            lambda e, s, i: s["items"].update(data=[]),
            "data.object.items.data: no expanded subscription items",
        ),
        (
            lambda e, s, i: s["items"].update(data=[7]),
            "data.object.items.data[0]: must be an object or an id, not a number",
        ),
        (
            lambda e, s, i: s.update(discount=discount(coupon(percent_off="20"))),
            "data.object.discount.coupon.percent_off: must be a number, not a string",
        ),
        (
            lambda e, s, i: s.update(object="invoice"),
            "data.object.object: must be 'subscription', not 'invoice'",
        ),
        (lambda e, s, i: e["data"].update(object=[]), "data.object: must be an object, not a list"),
        (lambda e, s, i: e.pop("created"), "created: missing"),
        (
            lambda e, s, i: e.update(created=10**20),
            "created: 100000000000000000000 is not a Unix timestamp",
        ),
        (lambda e, s, i: e.update(type=""), "type: must not be empty"),
        (
            lambda e, s, i: e.update(object="v2.core.event"),
            "object: must be 'event', not 'v2.core.event' (thin events are not supported)",
        ),
    ],
)
def test_a_broken_payload_is_kept_with_the_stripe_field_path(change, reason):
    (event,) = deliver(_broken(change))
    assert (event.native, event.reason, event.event_id) == (
        None,
        reason,
        "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    )


def test_an_event_without_an_id_is_kept_without_one():
    payload = stripe_event("invoice.paid", invoice())
    del payload["id"]
    (event,) = deliver(payload)
    assert (event.event_id, event.reason) == (None, "id: missing")


def test_a_broken_invoice_names_its_field():
    (event,) = deliver(stripe_event("invoice.paid", invoice(amount_paid=-5)))
    assert event.reason == "data.object.amount_paid: must be at least 0"


@pytest.mark.parametrize("payload", [[], "evt_1", 42, None])
def test_a_body_that_is_not_an_object_is_refused(payload):
    with pytest.raises(WebhookRejected) as caught:
        deliver(payload)
    assert caught.value.status == 422


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    ("status",),
    ("customer",),
    ("currency",),
    ("discount",),
    ("discount", "end"),
    ("discount", "coupon"),
    ("discount", "coupon", "duration"),
    ("discount", "coupon", "percent_off"),
    ("discount", "coupon", "amount_off"),
    ("discount", "coupon", "currency"),
    ("discounts",),
    ("items",),
    ("items", "data"),
    ("items", "data", 0, "quantity"),
    ("items", "data", 0, "discounts"),
    ("items", "data", 0, "price"),
    ("items", "data", 0, "price", "unit_amount"),
    ("items", "data", 0, "price", "unit_amount_decimal"),
    ("items", "data", 0, "price", "recurring"),
    ("items", "data", 0, "price", "recurring", "interval_count"),
    ("items", "data", 0, "price", "transform_quantity"),
]


@given(
    st.sampled_from(["customer.subscription.updated", "invoice.paid", "customer.discount.created"]),
    st.lists(st.tuples(st.sampled_from(PATHS), JSON), max_size=4),
)
@settings(max_examples=300)
def test_hostile_fields_give_a_native_event_or_a_reason_never_a_crash(event_type, changes):
    payload = stripe_event(event_type, subscription(discount=discount()))
    for path, value in changes:
        target = payload["data"]["object"]
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    (event,) = deliver(payload)
    if event.native is None:
        assert event.reason and ": " in event.reason
    else:
        assert event.native["id"] == payload["id"]
