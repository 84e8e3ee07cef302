"""Discounts a Stripe webhook gives as ids, read from (a fake of) Stripe's API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.stripe_api import StripeApiUnavailable, StripeDiscounts
from tests.fake_stripe import FakeStripe
from tests.storage.sources.test_stripe import (
    coupon,
    discount,
    item,
    native,
    price,
    stripe_event,
    subscription,
)

SUBSCRIPTION_ID = "sub_1MowQVLkdIwHu7ixeRlqHVzs"


def _clover(discount_id: str, coupon_id: str) -> dict[str, Any]:
    found = discount(id=discount_id, source={"coupon": coupon_id, "type": "coupon"})
    del found["coupon"]
    return found


def _event(*, subscription_discounts: list[Any], item_discounts: list[Any]) -> dict[str, Any]:
    line = item(price(10000), 1) | {"discounts": item_discounts}
    obj = subscription(line, discounts=subscription_discounts)
    return stripe_event("customer.subscription.updated", obj)


def _expand(stripe: FakeStripe, payload: Any, key: str | None = None) -> Any:
    api = StripeDiscounts(key or stripe.api_key, base_url=stripe.base_url)
    return asyncio.run(api.expand(payload))


def test_item_and_subscription_discounts_are_written_out_and_removed_ones_stay_ids() -> None:
    with FakeStripe() as stripe:
        line = item(price(10000), 1) | {"discounts": [_clover("di_item", "co_10")]}
        stripe.subscriptions[SUBSCRIPTION_ID] = subscription(
            line, discounts=[_clover("di_sub", "co_10")]
        )
        stripe.coupons["co_10"] = coupon(id="co_10", percent_off=10)
        payload = _event(subscription_discounts=["di_sub", "di_gone"], item_discounts=["di_item"])
        expanded = _expand(stripe, payload)
        coupons_read = stripe.requests.count("/v1/coupons/co_10")
    obj = expanded["data"]["object"]
    [written, gone] = obj["discounts"]
    assert written["id"] == "di_sub" and written["source"]["coupon"]["percent_off"] == 10
    assert gone == "di_gone"  # removed since the event: skipped by the mapping, as before
    [on_item] = obj["items"]["data"][0]["discounts"]
    assert on_item["source"]["coupon"]["id"] == "co_10"
    assert coupons_read == 1  # kept in memory: a coupon's terms never change
    assert payload["data"]["object"]["discounts"] == ["di_sub", "di_gone"]  # a copy is changed


@pytest.mark.parametrize(
    "payload",
    [
        _event(subscription_discounts=[], item_discounts=[]),
        _event(subscription_discounts=[_clover("di_1", "co_1")], item_discounts=[]),  # written
        stripe_event("invoice.paid", {"id": "in_1", "object": "invoice", "discounts": ["di_1"]}),
    ],
)
def test_an_event_without_discount_ids_asks_nothing(payload: Any) -> None:
    with FakeStripe() as stripe:
        assert _expand(stripe, payload) is None
        assert stripe.requests == []


def test_an_amount_off_coupon_in_another_currency_is_read_with_its_currency_options() -> None:
    # A USD coupon on a EUR subscription takes off its EUR amount, which Stripe's API gives only
    # when asked to expand the coupon's currency_options.
    with FakeStripe() as stripe:
        dollars = coupon(id="co_usd5", percent_off=None, amount_off=500, currency="usd")
        stripe.coupons["co_usd5"] = dollars | {"currency_options": {"eur": {"amount_off": 400}}}
        line = item(price(2000, currency="eur"), 1)
        stripe.subscriptions[SUBSCRIPTION_ID] = subscription(
            line, currency="eur", discounts=[_clover("di_eur", "co_usd5")]
        )
        obj = subscription(line, currency="eur", discounts=["di_eur"])
        expanded = _expand(stripe, stripe_event("customer.subscription.updated", obj))
    assert native(expanded)["data"]["discount_amount"] == "4"


def test_a_coupon_is_read_with_the_products_it_is_limited_to() -> None:
    with FakeStripe() as stripe:
        stripe.coupons["co_a"] = coupon(
            id="co_a", percent_off=50, applies_to={"products": ["prod_A"]}
        )
        a = item(price(10000, price_id="price_a", product="prod_A"), 1, item_id="si_a")
        b = item(price(10000, price_id="price_b", product="prod_B"), 1, item_id="si_b")
        stripe.subscriptions[SUBSCRIPTION_ID] = subscription(
            a, b, discounts=[_clover("di_a", "co_a")]
        )
        obj = subscription(a, b, discounts=["di_a"])
        expanded = _expand(stripe, stripe_event("customer.subscription.updated", obj))
    assert native(expanded)["data"]["discount_amount"] == "50"  # half of A's 100 only


def test_a_subscription_stripe_does_not_have_leaves_the_event_as_it_is() -> None:
    with FakeStripe() as stripe:
        payload = _event(subscription_discounts=["di_1"], item_discounts=[])
        assert _expand(stripe, payload) is None


@pytest.mark.parametrize("failing", [401, 429, 500])
def test_an_api_error_makes_the_event_wait(failing: int) -> None:
    with FakeStripe() as stripe:
        stripe.subscriptions[SUBSCRIPTION_ID] = subscription()
        stripe.failing = failing
        with pytest.raises(StripeApiUnavailable, match=str(failing)):
            _expand(stripe, _event(subscription_discounts=["di_1"], item_discounts=[]))


def test_an_unreachable_api_makes_the_event_wait() -> None:
    with FakeStripe() as stripe:
        base_url = stripe.base_url
    api = StripeDiscounts(FakeStripe.api_key, base_url=base_url)  # nobody listens there now
    with pytest.raises(StripeApiUnavailable, match="unreachable"):
        asyncio.run(api.expand(_event(subscription_discounts=["di_1"], item_discounts=[])))
