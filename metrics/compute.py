"""Answer a KPI question: the value, the previous period's, the breakdown and "data as of".

A metric function has the signature `(ctx: MetricContext, period: Period) -> dict[str, Value]`
and returns one `Value` per group of `ctx.scope` (the key `TOTAL` when there is no breakdown).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics.context import TOTAL, MetricConfig, MetricContext, Scope
from metrics.periods import Period
from metrics.registry import Metric
from metrics.result import KpiResult, Part, Value
from storage.tables import EventLog

MetricFunction = Callable[[MetricContext, Period], dict[str, Value]]


def compute_kpi(
    *,
    session: Session,
    metric: Metric,
    period: Period,
    config: MetricConfig,
    locale: str = "en",
    filters: tuple[tuple[str, str], ...] = (),
    by: str | None = None,
    compare: Literal["previous", "last-year"] = "previous",
) -> KpiResult:
    """Compute `metric` over `period`, against the previous period (or last year), with parts."""
    function: MetricFunction = metric.function()
    ctx = MetricContext(session, config, Scope(filters=filters))
    current = _total(function(ctx, period))
    previous_period = period.last_year() if compare == "last-year" else period.previous()
    previous = _total(function(ctx, previous_period))
    parts: tuple[Part, ...] = ()
    if by is not None:
        grouped = function(ctx.with_scope(Scope(filters=filters, by=by)), period)
        parts = tuple(
            sorted(
                (Part(key, value) for key, value in grouped.items()),
                key=lambda part: (
                    part.value.value is None,
                    -(part.value.value or Decimal(0)),
                    part.key,  # ties in name order, whatever order the database gave
                ),
            )
        )
    definition = metric.definition(locale).format(convention=config.churn_convention)
    return KpiResult(
        metric=metric.id,
        label=metric.label(locale),
        period=period,
        current=current,
        unit=metric.unit,
        definition=definition,
        currency=config.currency,
        previous_period=previous_period,
        previous=previous,
        breakdown=parts,
        by=by,
        filters=filters,
        data_as_of=data_as_of(session),
        higher_is_better=metric.higher_is_better,
    )


def _total(values: dict[str, Value]) -> Value:
    return values.get(TOTAL) or Value.undefined("no data")


def data_as_of(session: Session) -> datetime | None:
    """Return the time of the latest applied event: the freshness of every figure."""
    return session.scalar(
        select(func.max(col(EventLog.occurred_at))).where(col(EventLog.status) == "applied")
    )
