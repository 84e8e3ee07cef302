"""Stripe's API, read to complete what a subscription webhook gives only as ids: its discounts.

Stripe never expands webhook payloads: a subscription's `discounts` (and each item's) are Discount
ids, and a Discount's coupon (`source.coupon`, API 2025-09-30.clover and later) is a Coupon id. The
mapping (`storage.sources.stripe`) can only use discounts written out, so on current API versions
a coupon would not lower kpibot's MRR. With `STRIPE_API_KEY` set (a restricted key that can read
Subscriptions and Coupons), the Stripe route writes them out before mapping the event:

- `GET /v1/subscriptions/{id}`, expanding `discounts` and `items.data.discounts`: the Discount
  objects now on the subscription, by id. An id of the event that is no longer there (the
  discount was removed since) stays an id, and is skipped as before;
- `GET /v1/coupons/{id}` for each coupon given as an id, expanding `currency_options` (an amount
  off in other currencies) and `applies_to` (the products it is limited to), which Stripe leaves
  out otherwise; kept in memory: a coupon's terms
  (`percent_off`, `amount_off`, `duration`) never change once created.

The event is then logged as expanded, so a replay maps it again without the API. Stripe's API
unreachable, or answering an error other than "not found" (a key it refuses, a rate limit):
`StripeApiUnavailable`, which the route answers 503, so that Stripe sends the event again later.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any

import httpx

from storage.sources.stripe import SUBSCRIPTION_EVENTS

log = logging.getLogger("kpibot.stripe_api")

STRIPE_API_URL = "https://api.stripe.com"
TIMEOUT_SECONDS = 5.0  # per request: the route answers within Stripe's 20 s wait
# A Coupon's fields Stripe leaves out unless expanded: what an amount off is in each currency,
# and the products it is limited to
COUPON_EXPANDS = ("currency_options", "applies_to")


class StripeApiUnavailable(Exception):
    """Stripe's API could not say what the event's discounts are: the event should come again."""


class StripeDiscounts:
    """Writes out the discounts a subscription event gives as ids (see the module's docstring)."""

    def __init__(self, api_key: str, *, base_url: str = STRIPE_API_URL) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._coupons: dict[str, dict[str, Any]] = {}

    async def expand(self, payload: Any) -> Any | None:
        """Return a copy of the Stripe Event `payload` with its discount ids replaced by the
        Discount objects (coupons included), or None when it has none to expand."""
        if not isinstance(payload, dict) or payload.get("type") not in SUBSCRIPTION_EVENTS:
            return None
        subscription = (payload.get("data") or {}).get("object")
        if not isinstance(subscription, dict) or not isinstance(subscription.get("id"), str):
            return None
        wanted = {d for holder in _holders(subscription) for d in _ids(holder)}
        if not wanted:
            return None
        async with httpx.AsyncClient(
            base_url=self.base_url,
            auth=(self._api_key, ""),  # Stripe's documented basic auth: the key, no password
            timeout=TIMEOUT_SECONDS,
        ) as http:
            current = await self._get(
                http,
                f"/v1/subscriptions/{subscription['id']}",
                ("discounts", "items.data.discounts"),
            )
            if current is None:
                log.warning("no subscription %s at Stripe: its discounts stay ids", wanted)
                return None
            found = {
                d["id"]: d
                for holder in _holders(current)
                for d in holder.get("discounts") or ()
                if isinstance(d, dict) and d.get("id") in wanted
            }
            for discount in found.values():
                await self._with_coupon(http, discount)
        expanded = copy.deepcopy(payload)
        for holder in _holders(expanded["data"]["object"]):
            if isinstance(discounts := holder.get("discounts"), list):
                holder["discounts"] = [
                    found.get(d, d) if isinstance(d, str) else d for d in discounts
                ]
        if missing := wanted - found.keys():
            log.warning("discounts no longer on the subscription at Stripe: %s", sorted(missing))
        return expanded

    async def _with_coupon(self, http: httpx.AsyncClient, discount: dict[str, Any]) -> None:
        """Write the Discount's coupon out where it is an id (`source.coupon`, or `coupon`)."""
        source = discount.get("source")
        holder, key = (source, "coupon") if isinstance(source, dict) else (discount, "coupon")
        coupon_id = holder.get(key)
        if not isinstance(coupon_id, str):
            return
        coupon = self._coupons.get(coupon_id)
        if coupon is None:
            coupon = await self._get(http, f"/v1/coupons/{coupon_id}", COUPON_EXPANDS)
            if coupon is None:
                log.warning("Stripe has no coupon %s: its discount is skipped", coupon_id)
                return
            self._coupons[coupon_id] = coupon
        holder[key] = coupon

    async def _get(
        self, http: httpx.AsyncClient, path: str, expand: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """GET an object of Stripe's API (with `expand`); None when it is not found."""
        try:
            response = await http.get(path, params={"expand[]": list(expand)})
        except httpx.HTTPError as error:
            unreachable = f"Stripe's API is unreachable ({type(error).__name__})"
            raise StripeApiUnavailable(unreachable) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise StripeApiUnavailable(f"Stripe's API answered {response.status_code} to {path}")
        try:
            found = response.json()
        except ValueError:
            raise StripeApiUnavailable(f"Stripe's API answered {path} with no JSON") from None
        if not isinstance(found, dict):
            raise StripeApiUnavailable(f"Stripe's API answered {path} with no object")
        return found


def _holders(subscription: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The subscription and each of its items: what holds `discounts`."""
    yield subscription
    items = subscription.get("items")
    for item in (items.get("data") if isinstance(items, dict) else None) or ():
        if isinstance(item, dict):
            yield item


def _ids(holder: dict[str, Any]) -> list[str]:
    discounts = holder.get("discounts")
    return [d for d in discounts if isinstance(d, str)] if isinstance(discounts, list) else []
