"""The native event format (SPEC.md, "Native events"): envelopes and the data of each type.

`parse_event` turns one decoded JSON value into a `NativeEvent`, or raises `EventRejected` whose
reason names the field path ("data.amount: must be at least 0"). Unknown fields are ignored so that
senders can add to their payloads; unknown event types are valid envelopes that kpibot ignores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from storage.types import CENT, storable

MAX_AMOUNT = Decimal("1000000000000")  # 10^12 in any currency: beyond any real subscription
MAX_NAME = 255  # characters of a person's name
MAX_PHONE = 64  # characters of a contact's phone number
MAX_EMAIL = 320  # characters of an email address (RFC 5321's limit)
MAX_COMMENT = 10_000  # characters of a survey comment
MAX_TYPE = 64  # characters of an event type (the event log's type column)
MAX_LABEL = 64  # characters of an account's segment or plan
# The times an event may carry: any real one, and far from the calendar's ends, where moving an
# instant to another time zone (the reporting day) would overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


class EventRejected(ValueError):
    """An event kpibot cannot store; `reason` says what to fix, with the field path."""

    def __init__(self, reason: str, *, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


@cache
def known_currencies() -> frozenset[str]:
    """Return the ISO 4217 codes kpibot accepts."""
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def _currency(code: str) -> str:
    code = code.upper()
    if code not in known_currencies():
        raise ValueError(f"unknown currency {code!r} (use an ISO 4217 code such as USD or EUR)")
    return code


def _lower(text: str) -> str:
    return text.strip().lower()


def email_address(text: str) -> str:
    """`text` as an email address is stored (trimmed, lower case); ValueError if it is none."""
    text = text.strip().lower()
    local, _, domain = text.rpartition("@")
    if not local or "." not in domain or " " in text:
        raise ValueError(f"{text!r} is not an email address")
    return text


def within_range(moment: datetime) -> datetime:
    """Accept an aware time from 1970 to 2999 (UTC)."""
    if not EARLIEST <= moment < LATEST:
        raise ValueError("must be between 1970-01-01 and 2999-12-31 (UTC)")
    return moment


Id = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
Currency = Annotated[str, StringConstraints(min_length=3, max_length=3), AfterValidator(_currency)]
Email = Annotated[str, StringConstraints(max_length=MAX_EMAIL), AfterValidator(email_address)]
Domain = Annotated[str, StringConstraints(min_length=3, max_length=255), AfterValidator(_lower)]
Amount = Annotated[
    Decimal, Field(ge=0, le=MAX_AMOUNT, max_digits=24, decimal_places=10, allow_inf_nan=False)
]
"""A price: a subscription's amount per unit may hold fractions of a cent (its MRR is rounded)."""


APPLIED_BEFORE = "applied before"
"""Validation context of an event being applied again (`kpibot rebuild`): what kpibot applied
once it applies again, even where the rules have grown stricter since."""


def to_the_cent(amount: Decimal, info: ValidationInfo) -> Decimal:
    """Accept an amount kpibot can store exactly: money is kept in hundredths, and an amount
    charged or owed with a finer fraction would be rounded (KWD 12.345 to 12.35). An event
    applied before this rule (`APPLIED_BEFORE`) keeps its amount, stored rounded as it was."""
    if amount != amount.quantize(CENT) and not (info.context or {}).get(APPLIED_BEFORE):
        raise ValueError(
            f"{amount} has more than 2 decimals: kpibot keeps money exactly, in hundredths "
            "(send the amount rounded as it was charged)"
        )
    return amount


Charged = Annotated[Amount, AfterValidator(to_the_cent)]
"""An amount charged or owed (an invoice, a contract, a cost): stored as it is, to the cent."""


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ContactData(_Data):
    email: Email
    name: Name | None = None
    phone: Annotated[str, StringConstraints(max_length=MAX_PHONE)] | None = None


class AccountUpserted(_Data):
    account_id: Id
    name: Name | None = None
    owner_email: Email | None = None
    segment: Annotated[str, StringConstraints(max_length=MAX_LABEL)] | None = None
    plan: Annotated[str, StringConstraints(max_length=MAX_LABEL)] | None = None
    currency: Currency | None = None
    domains: Annotated[list[Domain], Field(max_length=100)] = []
    contacts: Annotated[list[ContactData], Field(max_length=1000)] = []
    attributes: Annotated[dict[str, Any], Field(max_length=100)] = {}
    # false: the whole account (fields not given are cleared, contacts replaced); true: only
    # the fields given change, attributes, domains and contacts are added (storage.account_state)
    merge: bool = False


class SubscriptionUpdated(_Data):
    account_id: Id
    subscription_id: Id
    status: Literal["active", "trialing", "past_due", "paused", "canceled"]
    amount: Amount
    currency: Currency
    interval: Literal["day", "week", "month", "quarter", "year"] = "month"
    interval_count: Annotated[int, Field(ge=1, le=1000, strict=True)] = 1
    quantity: Annotated[int, Field(ge=0, le=10_000_000, strict=True)] = 1
    discount_percent: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    discount_amount: Amount | None = None

    @model_validator(mode="after")
    def _one_discount(self) -> SubscriptionUpdated:
        if self.discount_percent is not None and self.discount_amount is not None:
            raise ValueError("give discount_percent or discount_amount, not both")
        return self


class InvoicePaid(_Data):
    account_id: Id
    invoice_id: Id
    amount: Charged
    currency: Currency


class SurveyResponded(_Data):
    response_id: Id
    account_id: Id | None = None
    respondent_email: Email | None = None
    respondent_name: Name | None = None
    kind: Literal["nps", "csat"]
    score: Annotated[int, Field(strict=True)]
    scale_min: Annotated[int, Field(ge=-100, le=100, strict=True)] | None = None
    scale_max: Annotated[int, Field(ge=-100, le=100, strict=True)] | None = None
    comment: Annotated[str, StringConstraints(max_length=MAX_COMMENT)] | None = None
    source: Annotated[str, StringConstraints(max_length=64)] | None = None
    # When the respondent answered, when an event is a later version of the response (a comment
    # added): the response counts on that day. Default: the event's occurred_at.
    responded_at: Annotated[AwareDatetime, AfterValidator(within_range)] | None = None

    @model_validator(mode="after")
    def _score_on_scale(self) -> SurveyResponded:
        low, high = self.scale
        if low >= high:
            raise ValueError(f"scale_min ({low}) must be below scale_max ({high})")
        if not low <= self.score <= high:
            raise ValueError(f"score {self.score} is outside the scale {low}..{high}")
        return self

    @property
    def scale(self) -> tuple[int, int]:
        """The answer's scale, defaulting to 0-10 for NPS and 1-5 for CSAT."""
        default = (0, 10) if self.kind == "nps" else (1, 5)
        low = default[0] if self.scale_min is None else self.scale_min
        high = default[1] if self.scale_max is None else self.scale_max
        return low, high


class UsageRecorded(_Data):
    account_id: Id
    day: date
    user_ids: Annotated[list[Id], Field(max_length=100_000)]
    merge: bool = False  # add these users to the day's (per-action sources such as Segment)


class RenewalUpdated(_Data):
    contract_id: Id
    account_id: Id
    due_on: date
    amount: Charged
    currency: Currency | None = None
    outcome: Literal["pending", "renewed", "churned"]
    renewed_amount: Charged | None = None


class CostRecorded(_Data):
    cost_id: Id
    period_start: date
    period_end: date
    amount: Charged
    currency: Currency
    category: Annotated[str, StringConstraints(max_length=64)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CostRecorded:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class FxRateData(_Data):
    base: Currency
    quote: Currency
    rate: Annotated[Decimal, Field(gt=0, le=Decimal(10**9), max_digits=30, decimal_places=12)]
    on: date

    @model_validator(mode="after")
    def _two_currencies(self) -> FxRateData:
        if self.base == self.quote:
            raise ValueError("base and quote are the same currency")
        return self


DATA_MODELS: dict[str, type[_Data]] = {
    "account.upserted": AccountUpserted,
    "subscription.updated": SubscriptionUpdated,
    "invoice.paid": InvoicePaid,
    "survey.responded": SurveyResponded,
    "usage.recorded": UsageRecorded,
    "renewal.updated": RenewalUpdated,
    "cost.recorded": CostRecorded,
    "fx.rate": FxRateData,
}


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Id
    type: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TYPE)]
    occurred_at: Annotated[AwareDatetime, AfterValidator(within_range)]
    data: dict[str, Any]


@dataclass(frozen=True)
class NativeEvent:
    """A valid event: `data` is None when kpibot does not use this type (it is then ignored)."""

    event_id: str
    type: str
    occurred_at: datetime
    data: _Data | None


def given_id(value: Any) -> str | None:
    """The id a decoded event gives, when it is one kpibot can log and de-duplicate by, even if
    the rest of the event is wrong (so that a fixed resend takes the rejected one's place)."""
    return loggable_id(value.get("id") if isinstance(value, dict) else None)


def given_type(value: Any) -> str | None:
    """The type a decoded event says it has, when the event log can hold it (text of 1 to 64
    characters, storable), even if the event is rejected: `kpibot webhooks list` shows it."""
    raw = value.get("type") if isinstance(value, dict) else None
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_TYPE or "\x00" in raw:
        return None
    return raw if storable(raw) else None


def loggable_id(raw_id: Any) -> str | None:
    """`raw_id` stripped, when the event log can hold it as an id: text of 1 to 255 characters
    that a database can store (no NUL, and no half of a surrogate pair, which JSON can escape
    but no UTF-8 text can hold); else None."""
    if not isinstance(raw_id, str) or "\x00" in raw_id or not storable(raw_id):
        return None
    return raw_id.strip() if 0 < len(raw_id.strip()) <= 255 else None


def parse_event(value: Any, *, applied_before: bool = False) -> NativeEvent:
    """Validate one decoded JSON value as a native event, or raise `EventRejected`; an event
    `applied_before` is held to the rules it was applied under (`APPLIED_BEFORE`)."""
    if not isinstance(value, dict):
        raise EventRejected(f"an event must be a JSON object, not {type(value).__name__}")
    event_id = given_id(value)
    try:
        envelope = _Envelope.model_validate(value)
    except ValidationError as error:
        raise EventRejected(describe(error), event_id=event_id) from None
    model = DATA_MODELS.get(envelope.type)
    if model is None:
        return NativeEvent(envelope.id, envelope.type, envelope.occurred_at, None)
    try:
        context = {APPLIED_BEFORE: True} if applied_before else None
        data = model.model_validate(envelope.data, context=context)
    except ValidationError as error:
        raise EventRejected(describe(error, prefix="data"), event_id=event_id) from None
    return NativeEvent(envelope.id, envelope.type, envelope.occurred_at, data)


def describe(error: ValidationError, *, prefix: str = "") -> str:
    """Return a pydantic error as '; '-joined 'field.path: message' parts."""
    parts = []
    for item in error.errors(include_url=False):
        path = prefix
        for key in item["loc"]:
            path = (
                f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
            )
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "decimal_parsing" and isinstance(item["input"], str):
            # A spreadsheet's amount ('1,234.50', '49,90', '€12'): say what to write instead.
            given = item["input"]
            shown = repr(given) if len(given) <= 40 else repr(given[:40]) + "…"
            message = (
                f"{shown} is not a number: write digits with a dot for the decimals, without "
                "thousands separators or currency sign (1234.50)"
            )
        parts.append(f"{path}: {message}" if path else message)
    return "; ".join(parts)
