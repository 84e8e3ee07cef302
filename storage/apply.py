"""Apply validated native events to the derived tables, by each event's own time.

Every write is idempotent and order-independent: entities keep the newest state by event time
(`upsert_newer`), subscription versions are kept whole and each touched account's MRR movements are
re-derived from the earliest day the batch changes (a version's day, a new rate's day) on.
Everything that could refuse an event (a missing exchange rate) is checked before anything is
written, so a refused event leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BindParameter,
    Executable,
    Result,
    bindparam,
    delete,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.account_state import FIELDS, AccountState
from storage.fx import FxBook, MissingRate
from storage.mrr import MrrBefore, VersionPoint, derive_movements, subscription_mrr
from storage.revisions import SURVEYS, USAGE
from storage.schemas import (
    AccountUpserted,
    ContactData,
    CostRecorded,
    FxRateData,
    InvoicePaid,
    NativeEvent,
    RenewalUpdated,
    SubscriptionUpdated,
    SurveyResponded,
    UsageRecorded,
)
from storage.tables import (
    Account,
    AccountDomain,
    Contact,
    Cost,
    FxRate,
    Invoice,
    MrrMovement,
    Renewal,
    Subscription,
    SubscriptionVersion,
    SurveyResponse,
    UsageCoverage,
    UsageDay,
    table_of,
)
from storage.upsert import insert_ignoring_conflicts, newest_by_key, upsert_newer

IN_CHUNK = 500  # ids per IN (...) list
USAGE_WINDOW_DAYS = 30  # a user counts as active for the 30 days ending with each active day
Span = tuple[date, date]  # first and last day, both included


# The statements of the hot paths, built once and run on the session's connection: building a
# statement costs more than running it on a small batch, and the ORM's execution path (identity
# map, synchronising deletes with loaded objects) serves nothing here.
_ACCOUNTS: BindParameter[Any] = bindparam("accounts", expanding=True)
_VERSION = table_of(SubscriptionVersion).c
_MOVEMENT = table_of(MrrMovement)


@dataclass(frozen=True)
class _RowsTable:
    """Rows bound as one parameter set and selected as a table the statements join: arrays on
    PostgreSQL, a JSON array on SQLite, so that a statement's text never depends on how many
    rows there are (it is parsed and prepared once). Each column: its name, its PostgreSQL type,
    and the stored column whose type makes SQLite's text of it (None: the value as it is)."""

    columns: tuple[tuple[str, str, Any], ...]

    def select(self, dialect: str) -> str:
        """The SELECT of the bound rows, in `dialect`."""
        names = [name for name, _, _ in self.columns]
        if dialect == "postgresql":
            arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind, _ in self.columns)
            return f"SELECT * FROM unnest({arrays}) AS r({', '.join(names)})"
        fields = ", ".join(f"json_extract(value, '$[{i}]') AS {n}" for i, n in enumerate(names))
        return f"SELECT {fields} FROM json_each(:rows)"

    def bind(self, rows: Sequence[Sequence[Any]], dialect: Dialect) -> dict[str, Any]:
        """The parameters of `rows` (one value per column each) for `select`."""
        if dialect.name == "postgresql":
            return {name: [row[i] for row in rows] for i, (name, _, _) in enumerate(self.columns)}
        # As the columns store them, so that SQLite compares the texts (instants in time order).
        processors = [
            None if stored is None else stored.type.dialect_impl(dialect).bind_processor(dialect)
            for _, _, stored in self.columns
        ]
        return {
            "rows": json.dumps(
                [
                    [v if p is None else p(v) for v, p in zip(row, processors, strict=True)]
                    for row in rows
                ]
            )
        }


# Each account's derivation starts at its own day: the (account, first instant, day) triples.
_STARTS = _RowsTable(
    (
        ("account_id", "text", None),
        ("since", "timestamptz", _VERSION.effective_at),
        ("day", "date", _MOVEMENT.c.day),
    )
)
_DIALECTS = ("postgresql", "sqlite")
# Each subscription's version in force at the start (the latest before it: all of them when several
# share its instant, the last of which wins as in a whole derivation), and every later one: of
# every subscription the account ever had. A version under another account (the subscription
# moved to it) counts as no MRR for this one, from its instant on.
#
# Both statements read only the starting accounts' rows, through the indexes, whatever the tables
# hold: each subscription's last instant before the start (one probe of its index), then its
# versions from that instant on, never the older ones (a long history costs nothing more). SQLite's
# planner does that with plain joins. PostgreSQL's hashed the whole tables (each
# group read every version and movement of the store: 20 ms a group on the reference data, and
# growing with the store), so there each account's rows are read by LATERAL subqueries, the last
# one kept a subquery (OFFSET 0) so that the planner cannot merge it back into a hash join.
_VERSIONS_SINCE_SQL = {
    "sqlite": (
        ", owned AS (SELECT DISTINCT start.account_id, start.since, o.subscription_id"
        "  FROM start JOIN subscription_version AS o ON o.account_id = start.account_id)"
        " SELECT owned.account_id, v.subscription_id, v.effective_at, v.currency,"
        "  CASE WHEN v.account_id = owned.account_id THEN v.mrr ELSE '0' END AS mrr"
        " FROM owned JOIN subscription_version AS v"
        "  ON v.subscription_id = owned.subscription_id"
        "  AND v.effective_at >= coalesce((SELECT max(n.effective_at)"
        "  FROM subscription_version AS n WHERE n.subscription_id = owned.subscription_id"
        "  AND n.effective_at < owned.since), owned.since)"
    ),
    "postgresql": (
        " SELECT start.account_id, v.subscription_id, v.effective_at, v.currency,"
        "  CASE WHEN v.account_id = start.account_id THEN v.mrr ELSE '0' END AS mrr"
        " FROM start CROSS JOIN LATERAL (SELECT DISTINCT o.subscription_id"
        "  FROM subscription_version AS o WHERE o.account_id = start.account_id) AS owned"
        " CROSS JOIN LATERAL (SELECT max(n.effective_at) AS effective_at"
        "  FROM subscription_version AS n WHERE n.subscription_id = owned.subscription_id"
        "  AND n.effective_at < start.since) AS in_force"
        " CROSS JOIN LATERAL (SELECT * FROM subscription_version AS s"
        "  WHERE s.subscription_id = owned.subscription_id"
        "  AND s.effective_at >= coalesce(in_force.effective_at, start.since) OFFSET 0) AS v"
    ),
}
_VERSIONS_SINCE = {
    dialect: text(
        f"WITH start AS ({_STARTS.select(dialect)}){_VERSIONS_SINCE_SQL[dialect]}"
        " ORDER BY v.effective_at, v.id"
    ).columns(
        _VERSION.account_id,
        _VERSION.subscription_id,
        _VERSION.effective_at,
        _VERSION.currency,
        _VERSION.mrr,
    )
    for dialect in _DIALECTS
}
# The last movement before the start (what the account had, whether it ever paid), and every later.
_MOVEMENTS_SINCE_SQL = {
    "sqlite": (
        " FROM mrr_movement AS m JOIN start ON start.account_id = m.account_id"
        " WHERE m.day >= start.day OR m.day = (SELECT max(p.day) FROM mrr_movement AS p"
        "  WHERE p.account_id = start.account_id AND p.day < start.day)"
    ),
    "postgresql": (
        " FROM start CROSS JOIN LATERAL (SELECT max(p.day) AS day FROM mrr_movement AS p"
        "  WHERE p.account_id = start.account_id AND p.day < start.day) AS before"
        " CROSS JOIN LATERAL (SELECT * FROM mrr_movement AS a"
        "  WHERE a.account_id = start.account_id AND a.day >= coalesce(before.day, start.day)"
        "  OFFSET 0) AS m"
    ),
}
_MOVEMENTS_SINCE = {
    dialect: text(
        f"WITH start AS ({_STARTS.select(dialect)})"
        " SELECT m.id, m.account_id, m.day, m.occurred_at, m.kind, m.amount, m.mrr_before,"
        f" m.mrr_after{_MOVEMENTS_SINCE_SQL[dialect]}"
    ).columns(
        *(_MOVEMENT.c[name] for name in ("id", "account_id", "day", "occurred_at", "kind")),
        *(_MOVEMENT.c[name] for name in ("amount", "mrr_before", "mrr_after")),
    )
    for dialect in _DIALECTS
}
_ACCOUNTS_OF_SUBSCRIPTIONS = (
    select(_VERSION.subscription_id, _VERSION.account_id, func.min(_VERSION.effective_at))
    .where(_VERSION.subscription_id.in_(bindparam("ids", expanding=True)))
    .group_by(_VERSION.subscription_id, _VERSION.account_id)
)
_MOVEMENT_COLUMNS = (
    "account_id",
    "day",
    "occurred_at",
    "kind",
    "amount",
    "mrr_before",
    "mrr_after",
)
_DELETE_MOVEMENTS = delete(_MOVEMENT).where(_MOVEMENT.c.id.in_(bindparam("ids", expanding=True)))
_RESPONSE = table_of(SurveyResponse).c
_RESPONSE_OWNERS = select(_RESPONSE.account_id).where(
    _RESPONSE.response_id.in_(bindparam("ids", expanding=True))
)
_USAGE = table_of(UsageDay).c
_USAGE_DAYS_OF = (
    select(_USAGE.account_id, _USAGE.day, _USAGE.user_ids)
    .where(_USAGE.account_id.in_(_ACCOUNTS))
    .order_by(_USAGE.day)
)
# The stored usage days of exactly these (account, day) pairs, joined as `_STARTS` is: an IN list
# of accounts and one of days would read their cross product, and on years of daily usage that is
# most of each account's recent days for the few wanted.
_DAY_PAIRS = _RowsTable((("account_id", "text", None), ("day", "date", _USAGE.day)))
_USAGE_COLUMNS = ("account_id", "day", "user_ids", "recorded_at", "reported_at", "merged_at")
_USAGE_ON = {
    dialect: text(
        f"WITH p AS ({_DAY_PAIRS.select(dialect)}) SELECT"
        f" {', '.join(f'u.{c}' for c in _USAGE_COLUMNS)}"
        " FROM p JOIN usage_day AS u ON u.account_id = p.account_id AND u.day = p.day"
    ).columns(*(_USAGE[c] for c in _USAGE_COLUMNS))
    for dialect in _DIALECTS
}
DAY_PAIRS_CHUNK = 5_000  # (account, day) pairs per statement
_COVERAGE = table_of(UsageCoverage)
_SPANS_OF = select(
    _COVERAGE.c.account_id, _COVERAGE.c.user_id, _COVERAGE.c.covered_from, _COVERAGE.c.covered_to
).where(_COVERAGE.c.account_id.in_(_ACCOUNTS))
_DELETE_SPANS = delete(_COVERAGE).where(
    tuple_(_COVERAGE.c.account_id, _COVERAGE.c.user_id, _COVERAGE.c.covered_from).in_(
        bindparam("keys", expanding=True)
    )
)
_CONTACT = table_of(Contact).c
_CONTACTS_OF = select(_CONTACT.account_id, _CONTACT.email, _CONTACT.name, _CONTACT.phone).where(
    _CONTACT.account_id.in_(_ACCOUNTS)
)
_DELETE_CONTACTS = delete(table_of(Contact)).where(
    tuple_(_CONTACT.account_id, _CONTACT.email).in_(bindparam("pairs", expanding=True))
)
_DOMAIN = table_of(AccountDomain).c
_DELETE_CLAIMS = delete(table_of(AccountDomain)).where(
    tuple_(_DOMAIN.account_id, _DOMAIN.domain).in_(bindparam("pairs", expanding=True))
)
_ACCOUNTS_OF = select(
    *(table_of(Account).c[name] for name in ("account_id", *FIELDS)),
    table_of(Account).c.domains,
    table_of(Account).c.attributes,
    table_of(Account).c.versions,
    table_of(Account).c.updated_at,
).where(table_of(Account).c.account_id.in_(_ACCOUNTS))
_LOCK_ACCOUNTS = text(
    # Volatile functions in the select list run after ORDER BY: locks are taken in order.
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS t(k) ORDER BY k"
)
# `kpibot rebuild` holds this key alone; every transaction that applies events shares it first.
_HOLD_OFF_REBUILD = text("SELECT pg_advisory_xact_lock_shared(:key)")
_TRY_HOLD_OFF_REBUILD = text("SELECT pg_try_advisory_xact_lock_shared(:key)")
_EXCLUDE_APPLIERS = text("SELECT pg_advisory_xact_lock(:key)")
_HOLDS_OFF_REBUILD = "kpibot.holds_off_rebuild"  # session.info: the transaction holding the lock


class RebuildRunning(Exception):
    """`kpibot rebuild` is running: events can be logged (queued), not applied, until it ends."""


def hold_off_rebuild(session: Session, *, wait: bool = True) -> bool:
    """Keep `kpibot rebuild` from starting until this transaction ends (PostgreSQL).

    A rebuild empties the derived tables and re-applies the whole event log in one transaction;
    a transaction applying events at the same time would write beside it from a state the
    rebuild is replacing. Every applying transaction therefore takes this shared lock before
    any other (`Applier` does it itself), and the rebuild takes it alone (`exclude_appliers`).
    With `wait=False`, return False at once instead of waiting when a rebuild holds it. Taken
    once per transaction: later calls in the same transaction cost nothing.
    SQLite needs nothing: its one writer at a time already serialises them.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    connection = session.connection()  # begins the transaction, if none has begun
    transaction = session.get_transaction()
    if session.info.get(_HOLDS_OFF_REBUILD) is transaction:
        return True
    if wait:
        connection.execute(_HOLD_OFF_REBUILD, {"key": _REBUILD_KEY})
    elif not connection.execute(_TRY_HOLD_OFF_REBUILD, {"key": _REBUILD_KEY}).scalar():
        return False
    session.info[_HOLDS_OFF_REBUILD] = transaction
    return True


def exclude_appliers(session: Session) -> None:
    """Wait until no transaction applies events, and keep new ones out until this one ends
    (`kpibot rebuild`, PostgreSQL; see `hold_off_rebuild`)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(_EXCLUDE_APPLIERS, {"key": _REBUILD_KEY})


@dataclass(frozen=True)
class IngestConfig:
    """What ingestion needs to know: the reporting currency and the time zone of `day` columns."""

    reporting_currency: str = "USD"
    timezone: str = "UTC"


@dataclass(frozen=True)
class Applicable:
    """A valid event with the id of its row in the event log."""

    log_id: int
    event: NativeEvent


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    """Yield consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Applier:
    """Applies one batch of events inside the caller's transaction."""

    session: Session
    config: IngestConfig
    # The transaction applies alone (`kpibot rebuild`, which has held every other applier off:
    # `exclude_appliers`): it takes no per-account or per-response lock, which over a whole store
    # would outgrow PostgreSQL's lock table (max_locks_per_transaction).
    alone: bool = False
    refused: dict[int, str] = field(default_factory=dict)  # log id → reason
    usage_changed: set[str] = field(default_factory=set)  # accounts whose usage days were written
    # Accounts a written survey response belongs to, or belonged to before (an update may move it)
    responses_changed: set[str] = field(default_factory=set)
    _derive_from: dict[str, date] = field(default_factory=dict)  # account → first day to derive
    # Accounts whose currency this batch changed, and whether it added FX rates: the renewals
    # that follow their account's currency are resolved again (`_follow_account_currencies`).
    _currency_changed: set[str] = field(default_factory=set)
    _rates_added: bool = False
    _locked: set[int] = field(default_factory=set)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.config.timezone)

    def marked(self) -> dict[str, set[str]]:
        """The accounts whose data of each family marked per account this batch wrote (see
        `storage.revisions.record_changes`)."""
        return {USAGE: self.usage_changed, SURVEYS: self.responses_changed}

    @cached_property
    def fx(self) -> FxBook:
        return FxBook.load(self.session, self.config.reporting_currency)

    @cached_property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def local_day(self, instant: datetime) -> date:
        """Return the reporting time zone's date of `instant`."""
        return instant.astimezone(self.zone).date()

    def _run(self, statement: Executable, **parameters: Any) -> Result[*tuple[Any, ...]]:
        """Run one of the prebuilt Core statements in the session's transaction."""
        return self.session.connection().execute(statement, parameters)

    def apply(self, items: Sequence[Applicable]) -> dict[int, str]:
        """Apply `items` (rates first, then by event time); return the refused ones' reasons."""
        hold_off_rebuild(self.session)
        by_type: dict[str, list[Applicable]] = defaultdict(list)
        for item in sorted(items, key=lambda i: i.event.occurred_at):
            by_type[item.event.type].append(item)
        self._fx_rates(by_type.pop("fx.rate", []))
        self._accounts(by_type.pop("account.upserted", []))
        self._subscriptions(by_type.pop("subscription.updated", []))
        self._invoices(by_type.pop("invoice.paid", []))
        self._responses(by_type.pop("survey.responded", []))
        self._usage(by_type.pop("usage.recorded", []))
        self._renewals(by_type.pop("renewal.updated", []))
        self._follow_account_currencies()
        self._costs(by_type.pop("cost.recorded", []))
        if by_type:
            raise AssertionError(f"no applier for {sorted(by_type)}")
        self.derive_movements(self._derive_from)
        return self.refused

    def _derive_later(self, account_id: str, day: date) -> None:
        """Have the account's movements re-derived from `day` on (or from an earlier day)."""
        known = self._derive_from.get(account_id)
        if known is None or day < known:
            self._derive_from[account_id] = day

    def _convertible(self, item: Applicable, currency: str, day: date) -> bool:
        try:
            self.fx.rate(currency, day)
        except MissingRate as missing:
            self.refused[item.log_id] = str(missing)
            return False
        return True

    def _fx_rates(self, items: list[Applicable]) -> None:
        rates: dict[tuple[str, str, date], tuple[FxRateData, datetime]] = {}
        for item in items:  # in event time order: the later event of a pair's day wins
            data = item.event.data
            assert isinstance(data, FxRateData)
            rates[(data.base, data.quote, data.on)] = (data, item.event.occurred_at)
        rows = [
            {"base": r.base, "quote": r.quote, "on": r.on, "rate": r.rate, "updated_at": at}
            for r, at in rates.values()
        ]
        won = upsert_newer(
            self.session,
            FxRate,
            rows,
            key=("base", "quote", "on"),
            version="updated_at",
            returning=("base", "quote", "on"),
        )
        for rate in (rates[tuple(key)][0] for key in won):  # a correction older than the stored
            if self.fx.add(rate.base, rate.quote, rate.on, rate.rate):  # rate changes nothing
                self._rates_added = True
                reporting = self.config.reporting_currency
                self._reconvert_from(rate.quote if rate.base == reporting else rate.base, rate.on)

    def _reconvert_from(self, currency: str, on: date) -> None:
        """Re-derive amounts in `currency` dated from `on`, which a new rate may change."""
        # Any account that ever had MRR in `currency`: a version older than `on` can still be in
        # force, or be replaced (by one in another currency), on a day the new rate converts.
        for account_id in self.session.scalars(
            select(col(SubscriptionVersion.account_id))
            .where(col(SubscriptionVersion.currency) == currency)
            .distinct()
        ):
            self._derive_later(account_id, on)
        for invoice in self.session.scalars(
            select(Invoice).where(col(Invoice.currency) == currency, col(Invoice.day) >= on)
        ):
            invoice.amount_reporting = self.fx.convert(invoice.amount, currency, invoice.day)
        for cost in self.session.scalars(
            select(Cost).where(col(Cost.currency) == currency, col(Cost.period_start) >= on)
        ):
            cost.amount_reporting = self.fx.convert(cost.amount, currency, cost.period_start)
        for renewal in self.session.scalars(
            select(Renewal).where(col(Renewal.currency) == currency, col(Renewal.due_on) >= on)
        ):
            converted = self._renewal_reporting(
                renewal.amount, renewal.renewed_amount, currency, renewal.due_on
            )
            for name, value in converted.items():
                setattr(renewal, name, value)
        self.session.flush()

    def _accounts(self, items: list[Applicable]) -> None:
        """Apply account events onto the stored accounts, part by part by event time (see
        `storage.account_state`): full events replace, merges add, in any arrival order."""
        events: dict[str, list[tuple[datetime, AccountUpserted]]] = defaultdict(list)
        for item in items:  # already in event time order, then arrival order
            data = item.event.data
            assert isinstance(data, AccountUpserted)
            events[data.account_id].append((item.event.occurred_at, data))
        ids = sorted(events)
        self.lock_accounts(ids)
        states = {account_id: AccountState(account_id) for account_id in ids}
        for part in chunks(ids):
            for row in self._run(_ACCOUNTS_OF, accounts=list(part)).mappings():
                states[row["account_id"]] = AccountState.stored(dict(row))
        had = {account_id: set(state.domains) for account_id, state in states.items()}
        self._load_contacts(  # a full event replaces them; a merge only adds
            {
                account_id: states[account_id]
                for account_id, applied in events.items()
                if any(not data.merge for _, data in applied)
            }
        )
        currencies = {account_id: states[account_id].fields.get("currency") for account_id in ids}
        for account_id, applied in events.items():
            for occurred_at, data in applied:
                states[account_id].apply(data, occurred_at)
        self._currency_changed.update(
            a for a in ids if states[a].fields.get("currency") != currencies[a]
        )
        upsert_newer(
            self.session, Account, [state.row() for state in states.values()], key=("account_id",)
        )
        # Only the contacts that changed are written: an account of thousands of users (each
        # added by a Segment identify call) is not rewritten whole for one more.
        removed: list[tuple[str, str]] = []
        contacts: list[dict[str, Any]] = []
        for account_id in ids:
            gone, written = states[account_id].contact_changes()
            removed += [(account_id, email) for email in gone]
            contacts += [
                {"account_id": account_id, "email": c.email, "name": c.name, "phone": c.phone}
                for c in written
            ]
        for pairs in chunks(removed):
            self._run(_DELETE_CONTACTS, pairs=list(pairs))
        upsert_newer(self.session, Contact, contacts, key=("account_id", "email"))
        # A domain belongs to the account that claimed it last, by event time, whatever order
        # the claims arrive in; an account's claims of domains it no longer has are withdrawn.
        dropped = sorted(
            (account_id, domain)
            for account_id in ids
            for domain in had[account_id] - states[account_id].domains
        )
        for pairs in chunks(dropped):
            self._run(_DELETE_CLAIMS, pairs=list(pairs))
        claims: dict[str, tuple[str, datetime]] = {}
        for account_id in ids:
            for domain, at in states[account_id].claims().items():
                if domain not in claims or claims[domain][1] <= at:
                    claims[domain] = (account_id, at)
        upsert_newer(
            self.session,
            AccountDomain,
            [{"domain": d, "account_id": a, "updated_at": at} for d, (a, at) in claims.items()],
            key=("domain",),
            version="updated_at",
        )

    def _load_contacts(self, states: dict[str, AccountState]) -> None:
        """Give these accounts their stored contacts, which their events change."""
        stored: dict[str, list[ContactData]] = defaultdict(list)
        for part in chunks(sorted(states)):
            for account_id, email, name, phone in self._run(_CONTACTS_OF, accounts=list(part)):
                stored[account_id].append(
                    ContactData.model_construct(email=email, name=name, phone=phone)
                )
        for account_id, state in states.items():
            state.load_contacts(stored[account_id])

    def _subscriptions(self, items: list[Applicable]) -> None:
        versions = []
        owners: list[tuple[str, str, date]] = []  # each version's subscription, account, day
        for item in items:
            data = item.event.data
            assert isinstance(data, SubscriptionUpdated)
            day = self.local_day(item.event.occurred_at)
            if not self._convertible(item, data.currency, day):
                continue
            mrr = subscription_mrr(
                status=data.status,
                amount=data.amount,
                quantity=data.quantity,
                interval=data.interval,
                interval_count=data.interval_count,
                discount_percent=data.discount_percent,
                discount_amount=data.discount_amount,
            )
            versions.append(
                {
                    "subscription_id": data.subscription_id,
                    "account_id": data.account_id,
                    "effective_at": item.event.occurred_at,
                    "event_log_id": item.log_id,
                    "status": data.status,
                    "amount": data.amount,
                    "currency": data.currency,
                    "interval": data.interval,
                    "interval_count": data.interval_count,
                    "quantity": data.quantity,
                    "discount_percent": data.discount_percent,
                    "discount_amount": data.discount_amount,
                    "mrr": mrr,
                }
            )
            self._derive_later(data.account_id, day)
            owners.append((data.subscription_id, data.account_id, day))
        # A subscription that moved between accounts: its other accounts see it leave or come
        # back from this version's day, and this one sees its history under them from the first.
        firsts = {  # subscription → account → the day of its first version there
            subscription_id: {account_id: self.local_day(at) for account_id, at in stored.items()}
            for subscription_id, stored in self._accounts_of_subscriptions(
                {sub for sub, _, _ in owners}
            ).items()
        }
        for subscription_id, owner, day in owners:  # with this batch's versions
            known = firsts.setdefault(subscription_id, {})
            known[owner] = min(known.get(owner, day), day)
        for subscription_id, owner, day in owners:
            for account_id, first in firsts[subscription_id].items():
                if account_id != owner:
                    self._derive_later(account_id, day)
                    self._derive_later(owner, first)
        insert_ignoring_conflicts(self.session, SubscriptionVersion, versions)
        current = [
            {
                "subscription_id": v["subscription_id"],
                "account_id": v["account_id"],
                "status": v["status"],
                "amount": v["amount"],
                "currency": v["currency"],
                "interval": v["interval"],
                "interval_count": v["interval_count"],
                "quantity": v["quantity"],
                "mrr": v["mrr"],
                "updated_at": v["effective_at"],
            }
            for v in versions
        ]
        current = newest_by_key(current, key=("subscription_id",), version="updated_at")
        upsert_newer(
            self.session, Subscription, current, key=("subscription_id",), version="updated_at"
        )

    def _accounts_of_subscriptions(
        self, subscription_ids: set[str]
    ) -> dict[str, dict[str, datetime]]:
        """Return the accounts each of these subscriptions has had a version under, each with
        the instant of the first."""
        found: dict[str, dict[str, datetime]] = defaultdict(dict)
        for part in chunks(sorted(subscription_ids)):
            for subscription_id, account_id, first in self._run(
                _ACCOUNTS_OF_SUBSCRIPTIONS, ids=list(part)
            ):
                found[subscription_id][account_id] = first
        return found

    def _invoices(self, items: list[Applicable]) -> None:
        rows = []
        for item in items:
            data = item.event.data
            assert isinstance(data, InvoicePaid)
            day = self.local_day(item.event.occurred_at)
            if not self._convertible(item, data.currency, day):
                continue
            rows.append(
                {
                    "invoice_id": data.invoice_id,
                    "account_id": data.account_id,
                    "paid_at": item.event.occurred_at,
                    "day": day,
                    "amount": data.amount,
                    "currency": data.currency,
                    "amount_reporting": self.fx.convert(data.amount, data.currency, day),
                }
            )
        rows = newest_by_key(rows, key=("invoice_id",), version="paid_at")
        upsert_newer(self.session, Invoice, rows, key=("invoice_id",), version="paid_at")

    def _responses(self, items: list[Applicable]) -> None:
        answers = [item.event.data for item in items]
        emails = sorted(
            {
                a.respondent_email
                for a in answers
                if isinstance(a, SurveyResponded) and a.respondent_email
            }
        )
        by_email: dict[str, str] = {}
        by_domain: dict[str, str] = {}
        for part in chunks(emails):
            for email, account_id in self.session.execute(
                select(col(Contact.email), col(Contact.account_id)).where(
                    col(Contact.email).in_(part)
                )
            ):
                by_email.setdefault(email, account_id)
        domains = sorted({e.rpartition("@")[2] for e in emails})
        for part in chunks(domains):
            for domain, account_id in self.session.execute(
                select(col(AccountDomain.domain), col(AccountDomain.account_id)).where(
                    col(AccountDomain.domain).in_(part)
                )
            ):
                by_domain[domain] = account_id
        rows = []
        for item in items:
            data = item.event.data
            assert isinstance(data, SurveyResponded)
            owner: str | None = data.account_id
            attribution = "account_id"
            if owner is None:
                email = data.respondent_email or ""
                owner, attribution = by_email.get(email), "contact"
                if owner is None:
                    owner, attribution = by_domain.get(email.rpartition("@")[2]), "domain"
                if owner is None:
                    attribution = "none"
            low, high = data.scale
            responded_at = data.responded_at or item.event.occurred_at
            rows.append(
                {
                    "response_id": data.response_id,
                    "account_id": owner,
                    "attribution": attribution,
                    "respondent_email": data.respondent_email,
                    "respondent_name": data.respondent_name,
                    "kind": data.kind,
                    "score": data.score,
                    "scale_min": low,
                    "scale_max": high,
                    "comment": data.comment,
                    "source": data.source,
                    "responded_at": responded_at,
                    "day": self.local_day(responded_at),
                    "updated_at": item.event.occurred_at,
                }
            )
        rows = newest_by_key(rows, key=("response_id",), version="updated_at")
        # Readers keep responses per account (`storage.revisions.SURVEYS` is marked per account):
        # each response's account now, and the one it had, which an update may have changed.
        self.responses_changed.update(str(row["account_id"]) for row in rows if row["account_id"])
        ids = [str(row["response_id"]) for row in rows]
        self.lock_responses(ids)
        for part in chunks(ids):
            self.responses_changed.update(
                account_id
                for (account_id,) in self._run(_RESPONSE_OWNERS, ids=list(part))
                if account_id is not None
            )
        upsert_newer(self.session, SurveyResponse, rows, key=("response_id",), version="updated_at")

    def _usage(self, items: list[Applicable]) -> None:
        reports = [(item.event.occurred_at, item.event.data) for item in items]
        touched = sorted(
            {(d.account_id, d.day) for _, d in reports if isinstance(d, UsageRecorded)}
        )
        # Every touched day is compared before and after the writes: the users a day gained
        # extend the coverage spans; a user a day lost makes its account's spans re-derived.
        accounts = sorted({account_id for account_id, _ in touched})
        self.lock_accounts(accounts)  # nobody else writes these days until this commits
        self.usage_changed.update(accounts)
        before = {
            (row[0], row[1]): UsageDayState.stored(*row[2:]) for row in self._stored_usage(touched)
        }
        days = {key: before[key].copy() if key in before else UsageDayState() for key in touched}
        for occurred_at, data in reports:
            assert isinstance(data, UsageRecorded)
            days[(data.account_id, data.day)].add(data.user_ids, occurred_at, merge=data.merge)
        upsert_newer(
            self.session,
            UsageDay,
            [state.row(*key) for key, state in days.items() if state != before.get(key)],
            key=("account_id", "day"),
        )
        gained: dict[tuple[str, str], list[date]] = defaultdict(list)
        shrunk: set[str] = set()
        for (account_id, day), state in days.items():
            previous = before[(account_id, day)].users if (account_id, day) in before else set()
            if previous - state.users:
                shrunk.add(account_id)
            for user in state.users - previous:
                gained[(account_id, user)].append(day)
        self.derive_coverage(sorted(shrunk))
        self._extend_coverage({pair: d for pair, d in gained.items() if pair[0] not in shrunk})

    def derive_coverage(self, account_ids: Sequence[str]) -> None:
        """Re-derive the usage coverage spans of `account_ids` from all their usage days."""
        for part in chunks(account_ids):
            self.lock_accounts(part)
            active: dict[tuple[str, str], list[date]] = defaultdict(list)
            for account_id, day, users in self._run(_USAGE_DAYS_OF, accounts=list(part)):
                for user in users:
                    active[(account_id, user)].append(day)
            fresh = {pair: coverage_spans(days) for pair, days in active.items()}
            self._replace_spans(self._stored_spans(part), fresh)

    def _extend_coverage(self, gained: dict[tuple[str, str], list[date]]) -> None:
        """Add the days users gained to their coverage spans, without reading usage days."""
        accounts = sorted({account_id for account_id, _ in gained})
        for part in chunks(accounts):
            stored = self._stored_spans(part)
            wanted = set(part)
            fresh = {
                pair: merge_spans([*stored.get(pair, []), *coverage_spans(days)])
                for pair, days in gained.items()
                if pair[0] in wanted
            }
            self._replace_spans({pair: stored.get(pair, []) for pair in fresh}, fresh)

    def _stored_spans(self, account_ids: Sequence[str]) -> dict[tuple[str, str], list[Span]]:
        stored: dict[tuple[str, str], list[Span]] = defaultdict(list)
        for account_id, user, first, last in self._run(_SPANS_OF, accounts=list(account_ids)):
            stored[(account_id, user)].append((first, last))
        return stored

    def _replace_spans(
        self,
        stored: Mapping[tuple[str, str], list[Span]],
        fresh: Mapping[tuple[str, str], list[Span]],
    ) -> None:
        """Write the difference between `stored` and `fresh` spans (per account and user)."""
        stale: list[tuple[str, str, date]] = []
        written: list[dict[str, Any]] = []
        for pair in stored.keys() | fresh.keys():
            old, new = dict(stored.get(pair, [])), dict(fresh.get(pair, []))
            stale += [(*pair, first) for first in old if first not in new]
            written += [
                {
                    "account_id": pair[0],
                    "user_id": pair[1],
                    "covered_from": first,
                    "covered_to": last,
                }
                for first, last in new.items()
                if old.get(first) != last
            ]
        for part in chunks(sorted(stale)):
            self._run(_DELETE_SPANS, keys=list(part))
        upsert_newer(
            self.session, UsageCoverage, written, key=("account_id", "user_id", "covered_from")
        )

    def _stored_usage(self, keys: Sequence[tuple[str, date]]) -> Iterable[tuple[Any, ...]]:
        """Yield the stored usage days of `keys` (account, day): the account, the day, then
        what `UsageDayState.stored` takes."""
        # Only the pairs touched: on a long history each row read costs its users' JSON and
        # three instants, and most rows of the touched accounts and days are not wanted.
        statement = _USAGE_ON[self.dialect]
        dialect = self.session.get_bind().dialect
        for part in chunks(keys, DAY_PAIRS_CHUNK):
            yield from (
                tuple(row) for row in self._run(statement, **_DAY_PAIRS.bind(part, dialect))
            )

    def _renewals(self, items: list[Applicable]) -> None:
        currencies = self._account_currencies(
            [i.event.data.account_id for i in items if isinstance(i.event.data, RenewalUpdated)]
        )
        rows = []
        for item in items:
            data = item.event.data
            assert isinstance(data, RenewalUpdated)
            currency = (
                data.currency or currencies.get(data.account_id) or self.config.reporting_currency
            )
            if not self._convertible(item, currency, data.due_on):
                continue
            renewed = data.renewed_amount
            if renewed is None and data.outcome == "renewed":
                renewed = data.amount
            rows.append(
                {
                    "contract_id": data.contract_id,
                    "account_id": data.account_id,
                    "due_on": data.due_on,
                    "amount": data.amount,
                    "currency": currency,
                    "currency_given": data.currency is not None,
                    "outcome": data.outcome,
                    "renewed_amount": renewed,
                    **self._renewal_reporting(data.amount, renewed, currency, data.due_on),
                    "updated_at": item.event.occurred_at,
                }
            )
        rows = newest_by_key(rows, key=("contract_id",), version="updated_at")
        upsert_newer(self.session, Renewal, rows, key=("contract_id",), version="updated_at")

    def _follow_account_currencies(self) -> None:
        """Give each renewal whose event named no currency its account's currency as it is now
        (else the reporting currency), converted again: after this batch changed the currency
        of its account, or added FX rates (which a currency lacked for it before).

        Whatever order the account's and the renewal's events arrive in, the renewal ends in the
        account's currency. One that the new currency cannot convert on its due day (no rate)
        keeps its currency until a rate for it arrives, and follows then.
        """
        if not self._currency_changed and not self._rates_added:
            return
        query = select(
            col(Renewal.contract_id),
            col(Renewal.due_on),
            col(Renewal.amount),
            col(Renewal.renewed_amount),
            col(Renewal.currency),
            col(Account.currency),
        ).outerjoin(Account, col(Account.account_id) == col(Renewal.account_id))
        query = query.where(col(Renewal.currency_given).is_(False))
        queries = (  # new rates: any of them; else only the accounts whose currency changed
            [query]
            if self._rates_added
            else [
                query.where(col(Renewal.account_id).in_(part))
                for part in chunks(sorted(self._currency_changed))
            ]
        )
        changed = []
        for found in queries:
            for contract_id, due_on, amount, renewed, stored, account in self.session.execute(
                found
            ):
                currency = account or self.config.reporting_currency
                if currency != stored and self.fx.has_rate(currency, due_on):
                    converted = self._renewal_reporting(amount, renewed, currency, due_on)
                    changed.append({"contract_id": contract_id, "currency": currency, **converted})
        if changed:
            self.session.execute(update(Renewal), changed)  # by primary key

    def _renewal_reporting(
        self, amount: Decimal, renewed: Decimal | None, currency: str, due_on: date
    ) -> dict[str, Decimal | None]:
        """A renewal's amounts in the reporting currency, at its due day's rate."""
        return {
            "amount_reporting": self.fx.convert(amount, currency, due_on),
            "renewed_amount_reporting": None
            if renewed is None
            else self.fx.convert(renewed, currency, due_on),
        }

    def _account_currencies(self, account_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for part in chunks(sorted(set(account_ids))):
            for account_id, currency in self.session.execute(
                select(col(Account.account_id), col(Account.currency)).where(
                    col(Account.account_id).in_(part)
                )
            ):
                if currency:
                    found[account_id] = currency
        return found

    def _costs(self, items: list[Applicable]) -> None:
        rows = []
        for item in items:
            data = item.event.data
            assert isinstance(data, CostRecorded)
            if not self._convertible(item, data.currency, data.period_start):
                continue
            rows.append(
                {
                    "cost_id": data.cost_id,
                    "period_start": data.period_start,
                    "period_end": data.period_end,
                    "amount": data.amount,
                    "currency": data.currency,
                    "amount_reporting": self.fx.convert(
                        data.amount, data.currency, data.period_start
                    ),
                    "category": data.category,
                    "updated_at": item.event.occurred_at,
                }
            )
        rows = newest_by_key(rows, key=("cost_id",), version="updated_at")
        upsert_newer(self.session, Cost, rows, key=("cost_id",), version="updated_at")

    def derive_movements(self, since: Mapping[str, date]) -> None:
        """Re-derive the MRR movements of each account in `since` from its day there on.

        Reads the versions in force at the end of the previous day and the last movement before
        it, not the whole history; the movements before that day are left as they are.
        """
        for part in chunks(sorted(since)):
            self.lock_accounts(part)
            starts = {
                account_id: datetime.combine(since[account_id], time.min, self.zone)
                for account_id in part
            }
            parameters = _STARTS.bind(
                [(a, starts[a], since[a]) for a in part], self.session.get_bind().dialect
            )
            in_force: dict[str, list[VersionPoint]] = defaultdict(list)
            later: dict[str, list[VersionPoint]] = defaultdict(list)
            for account_id, subscription_id, effective_at, currency, mrr in self._run(
                _VERSIONS_SINCE[self.dialect], **parameters
            ):
                point = VersionPoint(subscription_id, effective_at, currency, mrr)
                if effective_at >= starts[account_id]:
                    later[account_id].append(point)
                else:
                    in_force[account_id].append(point)
            booked: dict[str, Decimal] = {}  # what each account had after its last movement before
            stored: dict[tuple[str, date], tuple[Any, ...]] = {}
            for row in self._run(_MOVEMENTS_SINCE[self.dialect], **parameters):
                if row.day < since[row.account_id]:
                    booked[row.account_id] = row.mrr_after
                else:
                    stored[(row.account_id, row.day)] = tuple(row)
            fresh: dict[tuple[str, date], tuple[Any, ...]] = {}
            for account_id in part:
                start = MrrBefore(
                    in_force.get(account_id, ()),
                    booked.get(account_id, Decimal("0.00")),
                    ever_paid=account_id in booked,
                )
                for movement in derive_movements(
                    later.get(account_id, []),
                    local_day=self.local_day,
                    convert=self.fx.convert,
                    start=start,
                ):
                    fresh[(account_id, movement.day)] = (
                        None,
                        account_id,
                        movement.day,
                        movement.occurred_at,
                        movement.kind,
                        movement.amount,
                        movement.mrr_before,
                        movement.mrr_after,
                    )
            # Rows are compared on everything but their id: an unchanged movement stays, a changed
            # one is updated in place (a movement's day rarely disappears: one statement less).
            stale = [row[0] for key, row in stored.items() if key not in fresh]
            for ids in chunks(stale):
                self._run(_DELETE_MOVEMENTS, ids=list(ids))
            written = [
                dict(zip(_MOVEMENT_COLUMNS, row[1:], strict=True))
                for key, row in fresh.items()
                if stored.get(key, ())[1:] != row[1:]
            ]
            upsert_newer(self.session, MrrMovement, written, key=("account_id", "day"))

    def lock_accounts(self, account_ids: Iterable[str]) -> None:
        """On PostgreSQL, hold these accounts until commit (no-op for those already held).

        Derivations read an account's history (from a day on) and rewrite it; two transactions
        doing that for one account at once would each miss the other's events. The ingestion
        service takes every account of a batch here, before its first write and in one sorted
        statement, so transactions that share accounts queue instead of deadlocking. SQLite needs
        nothing: its writers are serialised. Accounts share `ACCOUNT_LOCKS` locks: two
        transactions of different accounts rarely wait for each other, and one of thousands of
        accounts stays within PostgreSQL's lock table.
        """
        if self.dialect != "postgresql" or self.alone:
            return
        hold_off_rebuild(self.session)
        self._hold({account_lock_key(a) for a in account_ids})

    def lock_responses(self, response_ids: Iterable[str]) -> None:
        """On PostgreSQL, hold these survey responses until commit, before reading whom they
        belong to: two transactions moving one response (or both creating it) would otherwise
        each read the owner from before the other, and the account one of them took it from
        would never be marked (`responses_changed`). SQLite's writers are serialised. Responses
        share `RESPONSE_LOCKS` locks, as accounts share theirs (see there)."""
        if self.dialect != "postgresql" or self.alone:
            return
        self._hold({response_lock_key(r) for r in response_ids})

    def _hold(self, keys: set[int]) -> None:
        """Take these advisory locks until commit, in one sorted statement (those not held yet)."""
        wanted = sorted(keys - self._locked)
        if wanted:
            self._run(_LOCK_ACCOUNTS, keys=wanted)
            self._locked.update(wanted)


@dataclass
class UsageDayState:
    """One account's usage day as the usage events of it, in any order, leave it.

    In event time order, a full report (`merge: false`) replaces the day's users and a merge
    adds its users. The same result whatever order the events arrive in needs two things kept
    besides the users: when the latest full report was made (an older report, or an older
    merge, changes nothing), and each user merged since then, with the latest time it was
    merged (a newer report keeps the users merged after it). Events of the same instant apply
    in the order they arrive.
    """

    users: set[str] = field(default_factory=set)
    recorded_at: datetime | None = None  # the latest event applied to the day
    reported_at: datetime | None = None  # the latest full report's time (None: merges only)
    merged_at: dict[str, datetime] = field(default_factory=dict)  # merged after that report

    @classmethod
    def stored(
        cls,
        users: list[str],
        recorded_at: datetime,
        reported_at: datetime | None,
        merged_at: Mapping[str, str],
    ) -> UsageDayState:
        """Read a `usage_day` row's columns back."""
        merged = {user: datetime.fromisoformat(at) for user, at in merged_at.items()}
        if reported_at is None and not merged:
            # Written before these columns existed: what it was made of is unknown, and its
            # users count as merged at its latest event (a newer full report replaces them).
            merged = dict.fromkeys(users, recorded_at)
        return cls(set(users), recorded_at, reported_at, merged)

    def copy(self) -> UsageDayState:
        """Return a state that can change without changing this one."""
        return UsageDayState(
            set(self.users), self.recorded_at, self.reported_at, dict(self.merged_at)
        )

    def add(self, user_ids: Iterable[str], at: datetime, *, merge: bool) -> None:
        """Apply one usage event of the day, made at `at`."""
        self.recorded_at = at if self.recorded_at is None else max(self.recorded_at, at)
        if merge:
            if self.reported_at is not None and at < self.reported_at:
                return  # the later full report already says who was active
            for user in user_ids:
                known = self.merged_at.get(user)
                self.merged_at[user] = at if known is None else max(known, at)
                self.users.add(user)
        elif self.reported_at is None or at >= self.reported_at:  # on a tie, the later arrival
            self.reported_at = at
            self.merged_at = {user: t for user, t in self.merged_at.items() if t > at}
            self.users = set(user_ids) | self.merged_at.keys()

    def row(self, account_id: str, day: date) -> dict[str, Any]:
        """Return the `usage_day` row of this state."""
        users = sorted(self.users)
        return {
            "account_id": account_id,
            "day": day,
            "active_users": len(users),
            "user_ids": users,
            "recorded_at": self.recorded_at,
            "reported_at": self.reported_at,
            "merged_at": {
                user: self.merged_at[user].isoformat() for user in sorted(self.merged_at)
            },
        }


def accounts_of(events: Iterable[NativeEvent]) -> Iterator[str]:
    """Yield the account id of each event that names one (what `Applier.lock_accounts` takes)."""
    for event in events:
        account_id = getattr(event.data, "account_id", None)
        if isinstance(account_id, str):
            yield account_id


# Advisory locks that accounts, and survey responses, share (by a hash of their id): however
# many a transaction touches, it holds at most 5,120 locks, within PostgreSQL's lock table
# (max_locks_per_transaction 64 x max_connections 100 by default, shared by every session).
ACCOUNT_LOCKS = 4_096
RESPONSE_LOCKS = 1_024


def account_lock_key(account_id: str) -> int:
    """The advisory lock key of an account: one of `ACCOUNT_LOCKS`."""
    bucket = _advisory_key(f"kpibot.account:{account_id}") % ACCOUNT_LOCKS
    return _advisory_key(f"kpibot.accounts:{bucket}")


def response_lock_key(response_id: str) -> int:
    """The advisory lock key of a survey response: one of `RESPONSE_LOCKS`."""
    bucket = _advisory_key(f"kpibot.response:{response_id}") % RESPONSE_LOCKS
    return _advisory_key(f"kpibot.responses:{bucket}")


def _advisory_key(name: str) -> int:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_REBUILD_KEY = _advisory_key("kpibot.rebuild")


def coverage_spans(days: Iterable[date], window: int = USAGE_WINDOW_DAYS) -> list[Span]:
    """Merge [day, day + window − 1] over active `days` into disjoint spans."""
    # The same as merge_spans over each day's window, without building them: windows of
    # equal length overlap or touch exactly when their days are at most `window` days apart.
    length, reach = timedelta(days=window - 1), timedelta(days=window)
    spans: list[Span] = []
    first = last = None
    for day in sorted(days):
        if last is None or day > last + reach:
            if first is not None and last is not None:
                spans.append((first, last + length))
            first = day
        last = day
    if first is not None and last is not None:
        spans.append((first, last + length))
    return spans


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Merge intervals that overlap or touch into disjoint spans, in order."""
    merged: list[Span] = []
    first = last = None
    for start, end in sorted(spans):
        if last is None or start > last + _ONE_DAY:
            if first is not None and last is not None:
                merged.append((first, last))
            first, last = start, end
        elif end > last:
            last = end
    if first is not None and last is not None:
        merged.append((first, last))
    return merged


_ONE_DAY = timedelta(days=1)
