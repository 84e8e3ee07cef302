"""The SQL store: the event log (source of truth) and the tables derived from it.

Everything but `EventLog` can be rebuilt from the log (`kpibot rebuild`). Money columns are exact
(`Money`, hundredths in a BIGINT); instants are aware UTC (`UTCDateTime`); `day` columns are local
dates in the reporting time zone the ingestion was configured with.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Table, Text, UniqueConstraint, text
from sqlalchemy import true as sa_true
from sqlmodel import Field, SQLModel

from storage.types import DecimalText, Money, UTCDateTime


class EventLog(SQLModel, table=True):
    """Every event received, from any source, with what was done with it."""

    __tablename__ = "event_log"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_event_log_source_event_id"),
        # The latest applied event (the freshness of every figure: `metrics.compute.data_as_of`)
        # and the counts per status. No query reads the log by time alone: an index of
        # `occurred_at` cost each logged row a third of its write on the reference data.
        Index("ix_event_log_status_occurred_at", "status", "occurred_at"),
        # The few rows waiting to be applied, and the few rejected, by id: the apply worker's
        # sweep and `webhooks list|replay` find them without reading the whole log, which the
        # index above cannot promise (SQLite's statistics, taken while every row is applied,
        # say a status matches every row, and it then reads the log in id order instead).
        *(
            Index(
                f"ix_event_log_{status}",
                "id",
                sqlite_where=text(f"status = '{status}'"),
                postgresql_where=text(f"status = '{status}'"),
            )
            for status in ("queued", "rejected")
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    event_id: str | None = Field(default=None, max_length=255)
    type: str | None = Field(default=None, max_length=64)
    occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    body: str = Field(sa_column=Column(Text, nullable=False))
    # queued (a webhook's event, until applied), applied, ignored or rejected
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, sa_column=Column(Text))


class Account(SQLModel, table=True):
    """A customer company, as last described by an `account.upserted` event."""

    __tablename__ = "account"

    account_id: str = Field(primary_key=True, max_length=255)
    name: str = Field(max_length=255)
    owner_email: str | None = Field(default=None, max_length=320, index=True)
    segment: str | None = Field(default=None, max_length=64, index=True)
    plan: str | None = Field(default=None, max_length=64, index=True)
    currency: str | None = Field(default=None, max_length=3)
    domains: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The time of the event that set each field, attribute and domain (storage.account_state)
    versions: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    updated_at: datetime = Field(sa_type=UTCDateTime)  # the latest event applied


class Contact(SQLModel, table=True):
    """A person at an account; survey responses are attributed through their email."""

    __tablename__ = "contact"

    account_id: str = Field(primary_key=True, foreign_key="account.account_id", max_length=255)
    email: str = Field(primary_key=True, max_length=320, index=True)
    name: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=64)


class AccountDomain(SQLModel, table=True):
    """An email domain that identifies an account (fallback attribution of survey responses)."""

    __tablename__ = "account_domain"

    domain: str = Field(primary_key=True, max_length=255)
    account_id: str = Field(foreign_key="account.account_id", max_length=255, index=True)
    updated_at: datetime = Field(sa_type=UTCDateTime)  # the claiming account event's time


class SubscriptionVersion(SQLModel, table=True):
    """One state of a subscription, effective from `effective_at` until the next version."""

    __tablename__ = "subscription_version"
    __table_args__ = (
        Index("ix_subscription_version_account_effective", "account_id", "effective_at"),
        Index("ix_subscription_version_subscription", "subscription_id", "effective_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(max_length=255)
    account_id: str = Field(max_length=255)
    effective_at: datetime = Field(sa_type=UTCDateTime)
    # The logged event that made it. Not a foreign key: versions are written in the transaction
    # that logs their event, in an append-only log, and the constraint cost each version written
    # (and each log row a replay deletes) more than the version itself (migration d5a7c9e1f3b4).
    event_log_id: int | None = None
    status: str = Field(max_length=16)
    amount: Decimal = Field(sa_type=DecimalText)
    currency: str = Field(max_length=3)
    interval: str = Field(max_length=8)
    interval_count: int = 1
    quantity: int = 1
    discount_percent: Decimal | None = Field(default=None, sa_type=DecimalText)
    discount_amount: Decimal | None = Field(default=None, sa_type=DecimalText)
    mrr: Decimal = Field(sa_type=DecimalText)  # monthly, in `currency`, unrounded


class Subscription(SQLModel, table=True):
    """The latest known state of each subscription (the newest `SubscriptionVersion`)."""

    __tablename__ = "subscription"

    subscription_id: str = Field(primary_key=True, max_length=255)
    account_id: str = Field(max_length=255, index=True)
    status: str = Field(max_length=16)
    amount: Decimal = Field(sa_type=DecimalText)
    currency: str = Field(max_length=3)
    interval: str = Field(max_length=8)
    interval_count: int = 1
    quantity: int = 1
    mrr: Decimal = Field(sa_type=DecimalText)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class MrrMovement(SQLModel, table=True):
    """An account's net MRR change on one local day, in the reporting currency."""

    __tablename__ = "mrr_movement"
    __table_args__ = (
        UniqueConstraint("account_id", "day", name="uq_mrr_movement_account_day"),
        Index("ix_mrr_movement_day_kind", "day", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=255)
    day: date
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    kind: str = Field(max_length=16)  # new | expansion | contraction | churn | reactivation
    amount: Decimal = Field(sa_type=Money)  # always positive
    mrr_before: Decimal = Field(sa_type=Money)
    mrr_after: Decimal = Field(sa_type=Money)


class Invoice(SQLModel, table=True):
    """A paid invoice (ARPU, repeat purchases, CLV)."""

    __tablename__ = "invoice"
    # Covering: a period's invoices are summed from the index alone (ARPU, CLV, repeat purchases).
    __table_args__ = (Index("ix_invoice_day_cover", "day", "account_id", "amount_reporting"),)

    invoice_id: str = Field(primary_key=True, max_length=255)
    account_id: str = Field(max_length=255, index=True)
    paid_at: datetime = Field(sa_type=UTCDateTime)
    day: date
    amount: Decimal = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    amount_reporting: Decimal = Field(sa_type=Money)


class SurveyResponse(SQLModel, table=True):
    """An NPS or CSAT answer, attributed to an account when possible."""

    __tablename__ = "survey_response"
    # Both covering: a period's responses of a kind (NPS, CSAT) and each account's latest response
    # (health) are read from an index alone.
    __table_args__ = (
        Index(
            "ix_survey_response_kind_day_cover",
            "kind",
            "day",
            "account_id",
            "score",
            "scale_min",
            "scale_max",
        ),
        Index(
            "ix_survey_response_latest",
            "kind",
            "account_id",
            "responded_at",
            "response_id",
            "day",
            "score",
            "scale_min",
            "scale_max",
        ),
    )

    response_id: str = Field(primary_key=True, max_length=255)
    account_id: str | None = Field(default=None, max_length=255, index=True)
    attribution: str = Field(max_length=16)  # account_id | contact | domain | none
    respondent_email: str | None = Field(default=None, max_length=320)
    respondent_name: str | None = Field(default=None, max_length=255)
    kind: str = Field(max_length=8)  # nps | csat
    score: int
    scale_min: int
    scale_max: int
    comment: str | None = Field(default=None, sa_column=Column(Text))
    source: str | None = Field(default=None, max_length=64)
    responded_at: datetime = Field(sa_type=UTCDateTime)  # when the respondent answered
    day: date  # responded_at's day in the reporting time zone
    updated_at: datetime = Field(sa_type=UTCDateTime)  # the stored version's time: newest wins


class UsageDay(SQLModel, table=True):
    """The users of an account active on one day."""

    __tablename__ = "usage_day"
    # Covering index: the daily-active sum over a window reads the index alone.
    __table_args__ = (Index("ix_usage_day_day_cover", "day", "account_id", "active_users"),)

    account_id: str = Field(primary_key=True, max_length=255)
    day: date = Field(primary_key=True)
    active_users: int
    user_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = Field(sa_type=UTCDateTime)  # the latest usage event of the day
    # What makes the day's users the same whatever order its events arrive in (see
    # `storage.apply.UsageDayState`): the latest full report's time, and each user merged after
    # it with the latest time it was merged (ISO 8601).
    reported_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    merged_at: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )


class UsageCoverage(SQLModel, table=True):
    """The days on which a user counts as active over "the 30 days ending that day".

    A user active on day x counts for every window ending in [x, x + 29]; a user's spans are
    those intervals merged, so the distinct users active in the 30 days ending on d are the
    spans containing d. Derived from `usage_day` for each account it changes.
    """

    __tablename__ = "usage_coverage"
    __table_args__ = (
        Index("ix_usage_coverage_window", "covered_to", "covered_from", "account_id"),
    )

    account_id: str = Field(primary_key=True, max_length=255)
    user_id: str = Field(primary_key=True, max_length=255)
    covered_from: date = Field(primary_key=True)
    covered_to: date


class Renewal(SQLModel, table=True):
    """A contract coming up for renewal, and its outcome once known."""

    __tablename__ = "renewal"
    __table_args__ = (Index("ix_renewal_due_on", "due_on"),)

    contract_id: str = Field(primary_key=True, max_length=255)
    account_id: str = Field(max_length=255, index=True)
    due_on: date
    amount: Decimal = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    # False: the event named none, and the renewal follows its account's currency (else the
    # reporting currency), as it is now (`storage.apply`)
    currency_given: bool = Field(default=True, sa_column_kwargs={"server_default": sa_true()})
    amount_reporting: Decimal = Field(sa_type=Money)
    outcome: str = Field(max_length=16)  # pending | renewed | churned
    renewed_amount: Decimal | None = Field(default=None, sa_type=Money)
    renewed_amount_reporting: Decimal | None = Field(default=None, sa_type=Money)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Cost(SQLModel, table=True):
    """A customer-success cost over a span of days (retention cost, net CLV)."""

    __tablename__ = "cost"

    cost_id: str = Field(primary_key=True, max_length=255)
    period_start: date
    period_end: date
    amount: Decimal = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    amount_reporting: Decimal = Field(sa_type=Money)
    category: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class FxRate(SQLModel, table=True):
    """1 `base` = `rate` `quote`, in force from `on` until the next rate of the pair."""

    __tablename__ = "fx_rate"

    base: str = Field(primary_key=True, max_length=3)
    quote: str = Field(primary_key=True, max_length=3)
    on: date = Field(primary_key=True)
    rate: Decimal = Field(sa_type=DecimalText)
    updated_at: datetime = Field(sa_type=UTCDateTime)  # its event's time: the later event wins


class OutboxMessage(SQLModel, table=True):
    """A message kpibot sends on its own initiative: written here first, then delivered.

    Not derived from the event log, so `kpibot rebuild` leaves it alone. A non-null `dedupe_key`
    is unique: the database, not a prior check, makes sure a message is never queued twice.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    kind: str = Field(max_length=16)  # kpi | alert | digest | home | …
    dedupe_key: str | None = Field(default=None, max_length=255)
    target: str = Field(max_length=320)  # a channel id, a user id, or an email to resolve
    target_kind: str = Field(max_length=8)  # channel | user | email
    text: str = Field(sa_column=Column(Text, nullable=False))  # the notification fallback
    blocks: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    thread_ts: str | None = Field(default=None, max_length=32)
    status: str = Field(max_length=16)  # pending | sent | printed | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    slack_ts: str | None = Field(default=None, max_length=32)
    slack_channel: str | None = Field(default=None, max_length=32)


class DataRevision(SQLModel, table=True):
    """A token that changes whenever a family of derived data changes (see `storage.revisions`).

    Readers key what they keep in memory by it: the same token means the same data. Not derived
    from the event log: `kpibot rebuild` gives it a new token rather than emptying it.
    """

    __tablename__ = "data_revision"

    name: str = Field(primary_key=True, max_length=32)
    token: str = Field(max_length=32)
    changed_at: datetime = Field(sa_type=UTCDateTime)
    # Counts the changes marked per account (`ChangedAccount`) since the token; commit-ordered,
    # as the row stays locked from the increment to the commit.
    version: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )


class ChangedAccount(SQLModel, table=True):
    """The last change of one account's data in a family marked per account (`storage.revisions`).

    A reader that kept the family at version v reloads just the accounts marked after v.
    """

    __tablename__ = "changed_account"
    __table_args__ = (Index("ix_changed_account_version", "family", "version"),)

    family: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(primary_key=True, max_length=255)
    version: int = Field(sa_type=BigInteger)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model, for statements built without the ORM."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


DERIVED_TABLES: tuple[type[SQLModel], ...] = (
    MrrMovement,
    Subscription,
    SubscriptionVersion,
    Invoice,
    SurveyResponse,
    UsageCoverage,
    UsageDay,
    Renewal,
    Cost,
    FxRate,
    Contact,
    AccountDomain,
    Account,
)
"""Tables rebuilt from the event log, in an order safe for deleting (children first)."""
