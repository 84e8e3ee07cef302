"""Stripe webhooks (`POST /webhooks/stripe`): the `Stripe-Signature` scheme, Events → native events.

Subscriptions become `subscription.updated` events carrying the subscription's full state (its MRR
is the sum of its licensed items, less the recurring discounts kpibot can see); paid invoices become
`invoice.paid`; every other type is logged as ignored (`stripe.<type>`). docs/webhooks/stripe.md
explains each rule and why.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from storage.mrr import PAYING_STATUSES
from storage.schemas import MAX_TYPE, known_currencies
from storage.sources.base import (
    Delivery,
    SourceEvent,
    WebhookRejected,
    check_timestamp,
    constant_time_equal,
)
from storage.types import round_money

T = TypeVar("T")

SUBSCRIPTION_EVENTS = frozenset(
    f"customer.subscription.{action}"
    for action in ("created", "updated", "deleted", "paused", "resumed")
)
# Stripe's `created` counts whole seconds, and a subscription's events often share one (created
# as incomplete, then updated to active once the first payment succeeds). Within a second they
# are ordered by what they can be: a creation first, a deletion last, a change in between, a
# microsecond apart. Two changes within one second still apply in the order they arrive.
_WITHIN_SECOND = {"customer.subscription.created": 0, "customer.subscription.deleted": 2}
_CHANGE = 1
# Stripe status → native status. Only active and past_due carry MRR (KPIS.md, and Stripe's own
# "Billing metric definitions"); unpaid no longer counts towards MRR but the subscription stays in
# place, like a pause; incomplete has not been paid for yet, like a trial.
STATUSES = {same: same for same in ("active", "past_due", "trialing", "canceled", "paused")} | {
    "incomplete": "trialing",
    "incomplete_expired": "canceled",
    "unpaid": "paused",
}
# Stripe's minor units (docs.stripe.com/currencies): two decimals unless listed here. CLDR (babel)
# differs for some (ISK, ALL, AFN, RSD… have 0 there but two decimals in Stripe's API).
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# Months per billing interval as a fraction (numerator, denominator), as KPIS.md normalises them.
_PER_MONTH = {"day": (365, 12), "week": (52, 12), "month": (1, 1), "year": (1, 12)}
_MAX_PLACES = Decimal("1e-10")  # the native schema's precision
_UNIX_TIME = re.compile(r"[0-9]{1,12}")


def minor_unit_exponent(currency: str) -> int:
    """Return the decimals of Stripe's integer amounts in `currency` (JPY 0, USD 2, KWD 3)."""
    code = currency.upper()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


class StripeSource:
    """Stripe Event objects, one per delivery, signed with the endpoint's `whsec_…` secret."""

    name = "stripe"
    secret_setting = "STRIPE_WEBHOOK_SECRET"  # noqa: S105  (the variable's name, not a secret)

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Check `Stripe-Signature: t=…,v1=…`: HMAC-SHA256 of "{t}.{body}", t within 5 minutes."""
        header = delivery.header("stripe-signature")
        if not header:
            raise WebhookRejected(401, "missing Stripe-Signature header")
        timestamp, signatures = _signature_parts(header)
        signed = timestamp.encode() + b"." + delivery.body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if not any(constant_time_equal(expected, given) for given in signatures):
            raise WebhookRejected(
                401, "Stripe-Signature does not match (wrong secret or altered body)"
            )
        check_timestamp(int(timestamp), delivery.received_at)

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        """Return the delivery's one event; an unmappable payload keeps its reason, never raises."""
        if not isinstance(payload, dict):
            raise WebhookRejected(
                422, f"a Stripe event is a JSON object, not {_json_type(payload)}"
            )
        raw = delivery.body.decode("utf-8", errors="replace")
        given_id = payload.get("id")
        event_id = given_id if isinstance(given_id, str) and given_id.strip() else None
        try:
            native = map_event(payload)
        except BadField as bad:
            return [SourceEvent(event_id, raw, None, str(bad))]
        return [SourceEvent(event_id, raw, native)]


def _signature_parts(header: str) -> tuple[str, list[str]]:
    """Split the header into its timestamp (digits, as sent) and its v1 signatures."""
    timestamp: str | None = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            if timestamp is not None or not _UNIX_TIME.fullmatch(value):
                raise WebhookRejected(401, "malformed Stripe-Signature header: bad t= timestamp")
            timestamp = value
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None:
        raise WebhookRejected(401, "malformed Stripe-Signature header: no t= timestamp")
    if not signatures:
        raise WebhookRejected(401, "malformed Stripe-Signature header: no v1= signature")
    return timestamp, signatures


class BadField(ValueError):
    """A field of the Stripe payload kpibot needs is missing or of the wrong type."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class _At:
    """A JSON object of the payload with its path ("data.object.items.data[0]"), for reasons."""

    value: Mapping[str, Any]
    path: str = ""

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def opt(self, key: str, kind: type[T]) -> T | None:
        value = self.value.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise BadField(self.at(key), f"must be {_KINDS[kind]}, not {_json_type(value)}")
        if isinstance(value, str) and not value.strip():
            raise BadField(self.at(key), "must not be empty")
        return value

    def need(self, key: str, kind: type[T]) -> T:
        value = self.opt(key, kind)
        if value is None:
            raise BadField(self.at(key), "missing")
        return value

    def whole(self, key: str, *, least: int = 0, default: int | None = None) -> int:
        """An integer of at least `least`; a missing one is `default` when there is one."""
        value = self.opt(key, int)
        if value is None and default is None:
            raise BadField(self.at(key), "missing")
        if value is not None and value < least:
            raise BadField(self.at(key), f"must be at least {least}")
        return default if value is None else value  # type: ignore[return-value]

    def percentage(self, key: str) -> Decimal | None:
        """A number from 0 to 100 (a coupon's `percent_off`, a tax rate's `percentage`), exactly
        as written; None when missing."""
        value = self.value.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadField(self.at(key), f"must be a number, not {_json_type(value)}")
        exact = Decimal(str(value))
        if not exact.is_finite() or not 0 <= exact <= 100:
            raise BadField(self.at(key), "must be between 0 and 100")
        return exact

    def obj(self, key: str) -> _At:
        return _At(self.need(key, dict), self.at(key))

    def expanded(self, key: str) -> _At | None:
        """The object under `key`, or None when it is absent or only an id (not expanded)."""
        value = self.value.get(key)
        if value is None or isinstance(value, str):
            return None
        return self.obj(key)

    def objects(self, key: str) -> list[_At]:
        """The expanded objects of the list under `key` (missing = empty); ids are skipped."""
        found = []
        for index, value in enumerate(self.opt(key, list) or []):
            path = f"{self.at(key)}[{index}]"
            if isinstance(value, dict):
                found.append(_At(value, path))
            elif not isinstance(value, str):
                raise BadField(path, f"must be an object or an id, not {_json_type(value)}")
        return found


_KINDS: dict[object, str] = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


def _json_type(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "a boolean"
    return "a number" if isinstance(value, int | float) else _KINDS.get(type(value), "a value")


def map_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Return the native event for a Stripe Event object, or raise `BadField`."""
    event = _At(payload)
    event_id = event.need("id", str)
    kind = event.opt("object", str)
    if kind not in (None, "event"):
        raise BadField("object", f"must be 'event', not {kind!r} (thin events are not supported)")
    stripe_type = event.need("type", str)
    created = event.need("created", int)
    try:
        moment = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadField("created", f"{created} is not a Unix timestamp") from None
    if stripe_type in SUBSCRIPTION_EVENTS:
        moment += timedelta(microseconds=_WITHIN_SECOND.get(stripe_type, _CHANGE))
    occurred_at = moment.isoformat()
    native_type, data = f"stripe.{stripe_type}"[:MAX_TYPE], {}
    if stripe_type in SUBSCRIPTION_EVENTS:
        subscription = event.obj("data").obj("object")
        deleted = stripe_type == "customer.subscription.deleted"
        native_type, data = "subscription.updated", _subscription(subscription, deleted, created)
    elif stripe_type == "invoice.paid":
        invoice = _invoice(event.obj("data").obj("object"))
        if invoice is not None:
            native_type, data = "invoice.paid", invoice
    # Anything else, customer.discount.* included (a Discount alone cannot rebuild a
    # subscription's state; Stripe's customer.subscription.updated carries the change), is ignored.
    return {"id": event_id, "type": native_type, "occurred_at": occurred_at, "data": data}


def _expect_object(obj: _At, name: str) -> None:
    kind = obj.opt("object", str)
    if kind not in (None, name):
        raise BadField(obj.at("object"), f"must be {name!r}, not {kind!r}")


def _customer(obj: _At) -> str:
    """The customer's id, whether `customer` is an id or an expanded Customer."""
    expanded = obj.expanded("customer")
    return expanded.need("id", str) if expanded else obj.need("customer", str)


def _currency(obj: _At, key: str = "currency") -> str:
    code = obj.need(key, str).upper()
    if code not in known_currencies():
        raise BadField(obj.at(key), f"unknown currency {code!r}")
    return code


def _major(minor: Decimal, currency: str) -> str:
    """Return an amount in minor units as a plain decimal string in major units."""
    value = minor / (Decimal(10) ** minor_unit_exponent(currency))
    if value.as_tuple().exponent < -10:  # type: ignore[operator]
        value = value.quantize(_MAX_PLACES)
    return format(value.normalize(), "f")


def _invoice(invoice: _At) -> dict[str, Any] | None:
    """The paid invoice, or None for a zero invoice (a trial start, a 100 % coupon): no payment."""
    _expect_object(invoice, "invoice")
    paid, currency = invoice.whole("amount_paid"), _currency(invoice)
    data = {"account_id": _customer(invoice), "invoice_id": invoice.need("id", str)}
    if paid == 0:
        return None
    # kpibot keeps money in hundredths. A three-decimal currency's invoice whose last digit is
    # not 0 (card charges always end in 0) is rounded to the hundredth, the one amount kpibot
    # rounds: a native sender can resend an exact amount, Stripe's payload cannot be changed.
    amount = round_money(Decimal(paid) / Decimal(10) ** minor_unit_exponent(currency))
    return data | {"amount": format(amount.normalize(), "f"), "currency": currency}


@dataclass(frozen=True)
class _Discount:
    """A recurring discount in force: a percentage, or an amount off in minor units; on the
    items of `products` only (a coupon's `applies_to`), or on all (None)."""

    percent: Decimal | None = None
    amount: Decimal | None = None
    products: frozenset[str] | None = None

    def applies(self, line: _Line) -> bool:
        return self.products is None or line.product in self.products


def _apply_to_lines(
    discounts: list[_Discount], lines: list[_Line], nets: list[Decimal], factor: Decimal
) -> list[Decimal]:
    """Apply discounts in order to each line's net amount: a percentage to each line it applies
    to, an amount off (`factor` times: its periods per period) shared by those lines in
    proportion to their amounts (the same total as taking it off their sum, down to 0)."""
    nets = list(nets)
    for discount in discounts:
        eligible = [i for i, line in enumerate(lines) if discount.applies(line)]
        if discount.percent is not None:
            for i in eligible:
                nets[i] = nets[i] * (100 - discount.percent) / 100
            continue
        base = sum((nets[i] for i in eligible), Decimal(0))
        off = min(base, (discount.amount or 0) * factor)
        for i in eligible:
            nets[i] -= off * nets[i] / base if base else 0
    return nets


@dataclass(frozen=True)
class _Line:
    """A licensed subscription item: unit price (minor units), quantity, period, own discounts."""

    unit: Decimal
    quantity: int
    interval: str
    interval_count: int
    discounts: list[_Discount]
    product: str | None = None
    tax: Decimal = Decimal(0)  # the percentage of inclusive tax rates in its amounts

    def per_month(self) -> Decimal:
        months, per = _PER_MONTH[self.interval]
        return Decimal(months) / (per * self.interval_count)

    def untaxed(self, amount: Decimal) -> Decimal:
        """`amount` without the inclusive tax it holds (tax is not MRR)."""
        return amount * 100 / (100 + self.tax) if self.tax else amount


def _subscription(sub: _At, deleted: bool, now: int) -> dict[str, Any]:
    """The subscription's full state as a native `subscription.updated` data object."""
    _expect_object(sub, "subscription")
    stripe_status = sub.need("status", str)
    status = "canceled" if deleted else STATUSES.get(stripe_status)
    if status is None:
        raise BadField(sub.at("status"), f"unknown status {stripe_status!r}")
    items = sub.obj("items").objects("data")
    if not items:
        raise BadField(sub.at("items.data"), "no expanded subscription items")
    if sub.value.get("currency") is not None:
        currency = _currency(sub)
    else:
        currency = _currency(items[0].obj("price"))
    state: dict[str, Any] = {
        "account_id": _customer(sub),
        "subscription_id": sub.need("id", str),
        "status": status,
        "currency": currency,
    }
    try:
        default_rates = sub.objects("default_tax_rates")
        lines = [
            line
            for item in items
            if (line := _line(item, currency, now, default_rates)) is not None
        ]
    except BadField:
        if status in PAYING_STATUSES:
            raise
        # A subscription canceled, paused (or unpaid) or in trial carries no MRR whatever its
        # prices: one kpibot cannot read (a tiered price) must still end its MRR.
        return {**state, "amount": "0"}
    # One billing period when the items share it (exact); else every item as a monthly amount.
    periods = {(line.interval, line.interval_count) for line in lines}
    interval, interval_count = next(iter(periods)) if len(periods) == 1 else ("month", 1)
    factors = [Decimal(1) if len(periods) == 1 else line.per_month() for line in lines]
    gross = [line.unit * line.quantity * f for line, f in zip(lines, factors, strict=True)]
    # Item discounts apply before the subscription's. An amount off comes off every invoice,
    # and items of different periods are invoiced apart: it counts once per period of the most
    # often invoiced item (whatever the order of the items).
    nets = [
        _apply_to_lines(line.discounts, [line], [g], f)[0]
        for line, g, f in zip(lines, gross, factors, strict=True)
    ]
    own = _discounts(sub, currency, now)
    nets = _apply_to_lines(own, lines, nets, max(factors, default=Decimal(1)))
    # Amounts of tax-inclusive rates hold their tax: it comes out of each line, after discounts
    # (Stripe discounts the inclusive amount and taxes what is left).
    total = sum((line.untaxed(g) for line, g in zip(lines, gross, strict=True)), Decimal(0))
    net = sum((line.untaxed(n) for line, n in zip(lines, nets, strict=True)), Decimal(0))
    single = len(lines) == 1
    data: dict[str, Any] = {
        **state,
        "amount": _major(lines[0].untaxed(lines[0].unit) if single else total, currency),
        "interval": interval,
        "interval_count": interval_count,
        "quantity": lines[0].quantity if single else 1,
    }
    if net != total:
        only_percent = (
            len(own) == 1
            and own[0].percent is not None
            and all(own[0].applies(line) for line in lines)
        )
        if only_percent and not any(line.discounts for line in lines):
            data["discount_percent"] = format(own[0].percent, "f")
        else:
            data["discount_amount"] = _major(total - net, currency)
    return data


def _line(item: _At, currency: str, now: int, default_rates: list[_At]) -> _Line | None:
    """The item's recurring charge, or None for a metered price (usage is not MRR); its tax
    rates are its own `tax_rates`, else the subscription's `default_tax_rates`."""
    price = item.obj("price")
    recurring = price.obj("recurring")
    if recurring.opt("usage_type", str) == "metered":
        return None
    interval = recurring.need("interval", str)
    if interval not in _PER_MONTH:
        raise BadField(recurring.at("interval"), f"unknown interval {interval!r}")
    interval_count = recurring.whole("interval_count", least=1)
    quantity = item.whole("quantity", default=1)
    transform = price.expanded("transform_quantity")
    if transform is not None:  # package pricing: billed per started (or completed) package
        packages, left = divmod(quantity, transform.whole("divide_by", least=1))
        quantity = packages + (1 if left and transform.opt("round", str) == "up" else 0)
    product = price.value.get("product")
    if isinstance(product, dict):  # expanded
        product = product.get("id")
    return _Line(
        _unit_amount(_in_currency(price, currency)),
        quantity,
        interval,
        interval_count,
        _discounts(item, currency, now),
        product if isinstance(product, str) else None,
        _inclusive_tax(item.objects("tax_rates") or default_rates),
    )


def _inclusive_tax(rates: list[_At]) -> Decimal:
    """The percentage the inclusive ones of these Tax Rates add up to (exclusive rates are
    charged on top of the price, so they are not in its amount)."""
    total = Decimal(0)
    for rate in rates:
        if rate.value.get("inclusive") is not True:
            continue
        percentage = rate.percentage("percentage")
        if percentage is None:
            raise BadField(rate.at("percentage"), "must be a number, not null")
        total += percentage
    return total


def _in_currency(price: _At, currency: str) -> _At:
    """What holds the price's amount in the subscription's `currency`: the price itself, or, for
    a multi-currency price billed in another of its currencies, its `currency_options` entry."""
    if price.value.get("currency") is None or _currency(price) == currency:
        return price
    options = price.expanded("currency_options")
    option = options.expanded(currency.lower()) if options else None
    if option is None:
        # Stripe includes a price's other currencies only when expanded: its `unit_amount` is in
        # its default currency, and would be counted in the subscription's as if it were.
        raise BadField(
            price.at("currency"),
            f"{_currency(price)}, while the subscription is billed in {currency}, and the "
            f"price's amount in {currency} (its currency_options) is not in the payload",
        )
    return option


def _unit_amount(price: _At) -> Decimal:
    """The price per unit in minor units: `unit_amount_decimal` (exact) or `unit_amount` (of a
    Price, or of its `currency_options` entry for one currency)."""
    text = price.opt("unit_amount_decimal", str)
    if text is not None:
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise BadField(price.at("unit_amount_decimal"), f"{text!r} is not a number") from None
        if not value.is_finite() or not 0 <= value < 10**15:
            raise BadField(price.at("unit_amount_decimal"), "must be between 0 and 10^15")
        return value
    if price.value.get("unit_amount") is None and price.value.get("billing_scheme") == "tiered":
        raise BadField(price.at("unit_amount"), "missing (tiered prices are not supported)")
    return Decimal(price.whole("unit_amount"))


def _discounts(holder: _At, currency: str, now: int) -> list[_Discount]:
    """The recurring discounts in force at `now` among those expanded in the payload.

    `discounts` holds ids unless expanded (Stripe's default in webhooks): ids are skipped (with
    `STRIPE_API_KEY` set, `bot.stripe_api` writes them out before the mapping). The
    legacy `discount` object is used when present and not already among the expanded ones.
    """
    found = {entry.opt("id", str) or entry.path: entry for entry in holder.objects("discounts")}
    legacy = holder.expanded("discount")
    if legacy is not None:
        found.setdefault(legacy.opt("id", str) or "legacy", legacy)
    return [d for entry in found.values() if (d := _discount(entry, currency, now)) is not None]


def _discount(discount: _At, currency: str, now: int) -> _Discount | None:
    """A Discount's effect, or None when it is not recurring, has ended, or cannot be read."""
    coupon = discount.expanded("coupon")  # up to 2025-08: the Coupon itself
    if coupon is None and (source := discount.expanded("source")) is not None:
        coupon = source.expanded("coupon")  # since 2025-09-30.clover, when expanded
    if coupon is None:
        return None
    duration = coupon.need("duration", str)
    if duration not in ("once", "repeating", "forever"):
        raise BadField(coupon.at("duration"), f"unknown duration {duration!r}")
    end = discount.opt("end", int)
    if duration == "once" or (duration == "repeating" and end is not None and end <= now):
        return None
    percent = coupon.percentage("percent_off")
    if percent is not None:
        return _Discount(percent=percent, products=_products(coupon))
    if coupon.value.get("amount_off") is None:
        raise BadField(coupon.at("percent_off"), "missing (a coupon has percent_off or amount_off)")
    amount_off = coupon.whole("amount_off")
    if _currency(coupon) != currency:  # a coupon in another currency applies its currency_options
        options = coupon.expanded("currency_options")
        option = options.expanded(currency.lower()) if options else None
        if option is None:
            return None
        amount_off = option.whole("amount_off")
    return _Discount(amount=Decimal(amount_off), products=_products(coupon))


def _products(coupon: _At) -> frozenset[str] | None:
    """The products a coupon is limited to (`applies_to.products`, which Stripe includes only
    when expanded), or None: all."""
    applies_to = coupon.expanded("applies_to")
    products = applies_to.value.get("products") if applies_to is not None else None
    if not isinstance(products, list) or not products:
        return None
    return frozenset(p for p in products if isinstance(p, str))
