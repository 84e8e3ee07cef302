"""What every metric computation receives: a session, conventions, and which accounts count."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, func, literal
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics.periods import FiscalCalendar
from storage.tables import Account

ChurnConvention = Literal["seed", "chartmogul", "stripe"]
TOTAL = "all"
NO_VALUE = "(none)"
NONE_VALUES = (NO_VALUE, "none", "aucun")  # a filter value that asks for "no value"


@dataclass(frozen=True)
class HealthWeights:
    """Weights of the account health signals (KPIS.md); a missing signal's weight is spread."""

    usage: Decimal = Decimal("0.35")
    nps: Decimal = Decimal("0.25")
    mrr_trend: Decimal = Decimal("0.25")
    csat: Decimal = Decimal("0.15")


@dataclass(frozen=True)
class MetricConfig:
    """The conventions in force, from settings (metrics never read settings themselves)."""

    currency: str = "USD"
    timezone: str = "UTC"
    fiscal: FiscalCalendar = field(default_factory=FiscalCalendar)
    churn_convention: ChurnConvention = "seed"
    customer_lifetime_years: Decimal | None = None
    health_weights: HealthWeights = field(default_factory=HealthWeights)
    detractor_max: int = 6


DIMENSION_COLUMNS: dict[str, Any] = {
    "plan": col(Account.plan),
    "segment": col(Account.segment),
    "csm": col(Account.owner_email),
    "currency": col(Account.currency),
}


@dataclass(frozen=True)
class Scope:
    """Which accounts count (`where` filters) and how they are grouped (`by`), if at all."""

    filters: tuple[tuple[str, str], ...] = ()
    by: str | None = None

    @property
    def needs_accounts(self) -> bool:
        """Tell whether queries must join the account table."""
        return bool(self.filters) or self.by is not None

    def key_column(self) -> ColumnElement[Any]:
        """The SQL expression of each row's group key (TOTAL without a breakdown)."""
        if self.by is None:
            return literal(TOTAL)
        return func.coalesce(DIMENSION_COLUMNS[self.by], NO_VALUE)

    def condition(self) -> ColumnElement[bool] | None:
        """The SQL condition of the `where` filters (case-insensitive equality), if any."""
        if not self.filters:
            return None
        parts = []
        for dimension, value in self.filters:
            column = DIMENSION_COLUMNS[dimension]
            if value.lower() in NONE_VALUES:
                parts.append(column.is_(None))
            else:
                parts.append(func.lower(column) == value.lower())
        return and_(*parts)

    def group_without_account(self) -> str | None:
        """The group of an account id without an account row (None: the filters leave it out).

        What `restrict`'s outer join gives such an id: every attribute is missing, so it is kept
        only by filters asking for no value, and grouped under `NO_VALUE`.
        """
        if any(value.lower() not in NONE_VALUES for _, value in self.filters):
            return None
        return TOTAL if self.by is None else NO_VALUE

    def restrict(self, query: Select[Any], account_id: Any) -> Select[Any]:
        """Join the account of `account_id` and apply the filters, when the scope needs it."""
        if not self.needs_accounts:
            return query
        query = query.outerjoin(Account, col(Account.account_id) == account_id)
        condition = self.condition()
        return query if condition is None else query.where(condition)


@dataclass(frozen=True)
class MetricContext:
    """A session, the conventions in force and the scope of one computation.

    `memo` keeps what one answer computes more than once (a period's start is the previous
    period's end): it lives as long as the context, one question, and is per scope.
    """

    session: Session
    config: MetricConfig
    scope: Scope = field(default_factory=Scope)
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # The data revisions the question read (`metrics.ledger.revision`), shared by every scope of
    # the question, so that a breakdown's parts and its total are read at the same revisions.
    revisions: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def with_scope(self, scope: Scope) -> MetricContext:
        """Return the same context for another scope (its own memo, the same revisions)."""
        return MetricContext(self.session, self.config, scope, revisions=self.revisions)
