"""One account and one CSM's book, as plain data: `/kpi account <name>` and the App Home.

- Which account a name designates is `metrics.account_lookup`'s work (`find_accounts`).
- Money is exact, in the reporting currency: an account's MRR is the sum of its MRR movements up
  to today, as the `mrr` metric sums them (each was converted when derived); a renewal's amount
  is its stored `amount_reporting`. "Today" is `now` in the configured time zone.
- A book lists at most MAX_BOOK_ACCOUNTS accounts and MAX_BOOK_ITEMS renewals and detractors (NPS
  answers at or below `config.detractor_max` on 0–10), and keeps the true totals.
"""

from __future__ import annotations

__all__ = ["UnknownAccount", "account_card", "book", "find_accounts", "team_headlines"]

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics.account_lookup import UnknownAccount, find_accounts, unknown_account
from metrics.compute import compute_kpi, data_as_of
from metrics.context import MetricConfig
from metrics.health import AccountHealth, account_health
from metrics.periods import parse_period
from metrics.registry import get_metric
from metrics.result import KpiResult
from storage.tables import Account, Contact, MrrMovement, Renewal, SurveyResponse
from storage.types import Money

ZERO = Decimal("0.00")
MAX_BOOK_ACCOUNTS = 50
MAX_BOOK_ITEMS = 50
MAX_CONTACTS = 25
DETRACTOR_DAYS = 30
BAND_ORDER = {"red": 0, "yellow": 1, "green": 2, None: 3}
HEADLINES = (
    ("mrr", "today"),
    ("customers", "today"),
    ("churn", "last-month"),
    ("nps", "last-90-days"),
    ("csat", "last-90-days"),
)


@dataclass(frozen=True)
class SurveyAnswer:
    """One NPS or CSAT answer: score on its scale, comment, respondent and local day."""

    score: int
    scale_min: int
    scale_max: int
    day: date
    comment: str | None = None
    respondent_name: str | None = None
    respondent_email: str | None = None


@dataclass(frozen=True)
class RenewalDue:
    """A pending renewal: whose, when, and how much in the reporting currency."""

    account_id: str
    account_name: str
    contract_id: str
    due_on: date
    amount: Decimal


@dataclass(frozen=True)
class ContactInfo:
    """A person at the account."""

    email: str
    name: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class AccountCard:
    """What a CSM needs about one account, computed for the local day `as_of`."""

    account_id: str
    name: str
    plan: str | None
    segment: str | None
    owner_email: str | None
    currency: str | None  # the account's own billing currency
    reporting_currency: str  # the currency of `mrr` and the renewal's amount
    mrr: Decimal
    customer_since: date | None
    health: AccountHealth
    nps: SurveyAnswer | None
    previous_nps: SurveyAnswer | None
    csat: SurveyAnswer | None
    renewal: RenewalDue | None
    contacts: tuple[ContactInfo, ...]
    contacts_total: int
    as_of: date
    data_as_of: datetime | None
    people_hidden: bool = False  # comments, respondents and contacts left out for this reader


@dataclass(frozen=True)
class BookAccount:
    """One line of a book: the account, its MRR and its health."""

    account_id: str
    name: str
    mrr: Decimal
    health: AccountHealth


@dataclass(frozen=True)
class Detractor:
    """A recent detractor answer on an account of the book."""

    account_id: str
    account_name: str
    answer: SurveyAnswer


@dataclass(frozen=True)
class Book:
    """The accounts one CSM owns: the first ones (red first, then by MRR), totals and to-dos."""

    owner_email: str
    currency: str
    accounts: tuple[BookAccount, ...]
    total_accounts: int
    customers: int  # accounts with MRR above 0
    mrr: Decimal
    bands: dict[str, int]  # green, yellow, red, and "none" for the accounts without a score
    renewals: tuple[RenewalDue, ...]
    renewals_total: int
    renewal_days: int
    detractors: tuple[Detractor, ...]
    detractors_total: int
    as_of: date
    data_as_of: datetime | None
    detractor_days: int = DETRACTOR_DAYS


def account_card(
    session: Session, *, account_id: str, config: MetricConfig, now: datetime
) -> AccountCard:
    """Return the card of one account: money, health, surveys, renewal and contacts."""
    account = session.get(Account, account_id)
    if account is None:
        raise unknown_account(session, account_id)
    today = _today(config, now)
    mrr = _mrr_by_account(session, [account_id], today).get(account_id, ZERO)
    since = session.scalar(
        select(func.min(col(MrrMovement.day))).where(
            col(MrrMovement.account_id) == account_id, col(MrrMovement.kind) == "new"
        )
    )
    nps = _answers(session, account_id, "nps", today, 2)
    csat = _answers(session, account_id, "csat", today, 1)
    renewals, _ = _renewals(session, col(Account.account_id) == account_id, today, None, 1)
    contacts = session.execute(
        select(col(Contact.email), col(Contact.name), col(Contact.phone), func.count().over())
        .where(col(Contact.account_id) == account_id)
        .order_by(func.coalesce(col(Contact.name), col(Contact.email)), col(Contact.email))
        .limit(MAX_CONTACTS)
    ).all()
    return AccountCard(
        account_id=account.account_id,
        name=account.name,
        plan=account.plan,
        segment=account.segment,
        owner_email=account.owner_email,
        currency=account.currency,
        reporting_currency=config.currency,
        mrr=mrr,
        customer_since=since,
        health=account_health(session, config, [account_id], today)[account_id],
        nps=nps[0] if nps else None,
        previous_nps=nps[1] if len(nps) > 1 else None,
        csat=csat[0] if csat else None,
        renewal=renewals[0] if renewals else None,
        contacts=tuple(ContactInfo(*row[:3]) for row in contacts),
        contacts_total=int(contacts[0][3]) if contacts else 0,
        as_of=today,
        data_as_of=data_as_of(session),
    )


def book(
    session: Session,
    *,
    owner_email: str,
    config: MetricConfig,
    now: datetime,
    renewal_days: int = 30,
) -> Book:
    """Return the book of the CSM `owner_email`: accounts, totals, bands, renewals, detractors."""
    today = _today(config, now)
    # Ingestion stores emails lowercased, so equality on the lowered text is case-insensitive
    # and keeps the owner_email index usable.
    owned = col(Account.owner_email) == owner_email.strip().lower()
    rows = session.execute(select(col(Account.account_id), col(Account.name)).where(owned))
    names = {account_id: name for account_id, name in rows}
    owned_ids = select(col(Account.account_id)).where(owned)
    mrr = _mrr_by_account(session, owned_ids, today)
    healths = account_health(session, config, names, today)
    lines = [
        BookAccount(account_id, name, mrr.get(account_id, ZERO), healths[account_id])
        for account_id, name in names.items()
    ]
    lines.sort(key=lambda a: (BAND_ORDER[a.health.band], -a.mrr, a.name.lower(), a.account_id))
    bands = Counter(a.health.band or "none" for a in lines)
    due_by = today + timedelta(days=renewal_days)
    renewals, renewals_total = _renewals(session, owned, today, due_by, MAX_BOOK_ITEMS)
    detractors, detractors_total = _detractors(session, owned, config, today)
    return Book(
        owner_email=owner_email.strip().lower(),
        currency=config.currency,
        accounts=tuple(lines[:MAX_BOOK_ACCOUNTS]),
        total_accounts=len(lines),
        customers=sum(1 for a in lines if a.mrr > 0),
        mrr=sum((a.mrr for a in lines), ZERO),
        bands={band: bands.get(band, 0) for band in ("red", "yellow", "green", "none")},
        renewals=tuple(renewals),
        renewals_total=renewals_total,
        renewal_days=renewal_days,
        detractors=tuple(detractors),
        detractors_total=detractors_total,
        as_of=today,
        data_as_of=data_as_of(session),
    )


def team_headlines(
    session: Session, *, config: MetricConfig, now: datetime, locale: str
) -> list[KpiResult]:
    """Return the team's headline KPIs: MRR and customers today, last month's churn, NPS, CSAT."""
    results = []
    for metric_id, period_text in HEADLINES:
        period = parse_period(period_text, now=now, timezone=config.timezone, fiscal=config.fiscal)
        results.append(
            compute_kpi(
                session=session,
                metric=get_metric(metric_id),
                period=period,
                config=config,
                locale=locale,
            )
        )
    return results


def _today(config: MetricConfig, now: datetime) -> date:
    """Today in the configured time zone (ValueError for a naive `now`, as periods do)."""
    return parse_period("today", now=now, timezone=config.timezone, fiscal=config.fiscal).end


def _where_id(ids: Collection[str]) -> Select[Any]:
    return select(Account).where(col(Account.account_id).in_(ids))


def _mrr_by_account(
    session: Session, accounts: Collection[str] | Select[Any], day: date
) -> dict[str, Decimal]:
    """Each account's MRR at the end of `day`: Σ mrr_after − mrr_before of its movements."""
    mrr = type_coerce(
        func.sum(col(MrrMovement.mrr_after)) - func.sum(col(MrrMovement.mrr_before)), Money
    )
    query = (
        select(col(MrrMovement.account_id), mrr)
        .where(col(MrrMovement.day) <= day, col(MrrMovement.account_id).in_(accounts))
        .group_by(col(MrrMovement.account_id))
    )
    return {account_id: total or ZERO for account_id, total in session.execute(query)}


_ANSWER = (
    col(SurveyResponse.score),
    col(SurveyResponse.scale_min),
    col(SurveyResponse.scale_max),
    col(SurveyResponse.day),
    col(SurveyResponse.comment),
    col(SurveyResponse.respondent_name),
    col(SurveyResponse.respondent_email),
)
_NEWEST_FIRST = (col(SurveyResponse.responded_at).desc(), col(SurveyResponse.response_id).desc())


def _answers(
    session: Session, account_id: str, kind: str, today: date, count: int
) -> list[SurveyAnswer]:
    """The account's latest `count` answers of `kind` up to today, newest first."""
    query = (
        select(*_ANSWER)
        .where(
            col(SurveyResponse.account_id) == account_id,
            col(SurveyResponse.kind) == kind,
            col(SurveyResponse.day) <= today,
        )
        .order_by(*_NEWEST_FIRST)
        .limit(count)
    )
    return [SurveyAnswer(*row) for row in session.execute(query)]


def _renewals(
    session: Session, condition: Any, start: date, end: date | None, limit: int
) -> tuple[list[RenewalDue], int]:
    """The first pending renewals of the accounts `condition` selects due in [start, end], and
    how many there are in all (a window count, computed before the LIMIT)."""
    due = [col(Renewal.due_on) >= start, *([col(Renewal.due_on) <= end] if end else [])]
    query = (
        select(
            col(Renewal.account_id),
            col(Account.name),
            col(Renewal.contract_id),
            col(Renewal.due_on),
            col(Renewal.amount_reporting),
            func.count().over(),
        )
        .join(Account, col(Account.account_id) == col(Renewal.account_id))
        .where(condition, col(Renewal.outcome) == "pending", *due)
        .order_by(col(Renewal.due_on), col(Account.name), col(Renewal.contract_id))
        .limit(limit)
    )
    rows = session.execute(query).all()
    return [RenewalDue(*row[:5]) for row in rows], int(rows[0][5]) if rows else 0


def _detractors(
    session: Session, condition: Any, config: MetricConfig, today: date
) -> tuple[list[Detractor], int]:
    """The latest NPS detractor answers of the last DETRACTOR_DAYS days, and how many in all."""
    score, low, high = _ANSWER[:3]
    query = (
        select(col(Account.account_id), col(Account.name), *_ANSWER, func.count().over())
        .join(Account, col(Account.account_id) == col(SurveyResponse.account_id))
        .where(
            condition,
            col(SurveyResponse.kind) == "nps",
            # rescaled to 0–10 and compared on integers, as the `nps` metric classifies
            (score - low) * 10 <= config.detractor_max * (high - low),
            col(SurveyResponse.day) > today - timedelta(days=DETRACTOR_DAYS),
            col(SurveyResponse.day) <= today,
        )
        .order_by(*_NEWEST_FIRST)
        .limit(MAX_BOOK_ITEMS)
    )
    rows: list[Any] = list(session.execute(query))
    found = [Detractor(row[0], row[1], SurveyAnswer(*row[2:-1])) for row in rows]
    return found, int(rows[0][-1]) if rows else 0
