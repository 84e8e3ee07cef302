"""Satisfaction metrics (KPIS.md, Satisfaction): NPS, CSAT and mean CSAT, per group of the scope.

Responses count on their local `day`. A response on a scale other than the standard one is rescaled
linearly before it is classified: an NPS score `s` on `[min, max]` becomes
`(s − min) × 10 ÷ (max − min)` on 0–10, then it is a promoter at 9 or more, a detractor at 6 or less
and a passive strictly in between (so 6.5 and 8.5 are passives; on 0–10 this is exactly 0–6, 7–8,
9–10). The comparisons are made on integers in SQL (`(s − min) × 10 ≥ 9 × (max − min)`), so no
rounding ever moves a response across a boundary. Breakdowns group a response through its account;
unattributed responses (no account) count in the total and fall in the "(none)" part.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlmodel import col

from metrics.context import TOTAL, MetricContext
from metrics.periods import Period
from metrics.result import InputValue, Value, ratio
from storage.tables import SurveyResponse

Values = dict[str, Value]
NO_RESPONSES = "no {kind} responses in the period"

_SCORE = col(SurveyResponse.score)
_LOW = col(SurveyResponse.scale_min)
_HIGH = col(SurveyResponse.scale_max)


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _responses(ctx: MetricContext, period: Period, kind: str, *columns: Any) -> Select[Any]:
    """The scoped query of `kind` responses answered in the period, grouped by the scope's key."""
    key = ctx.scope.key_column().label("key")
    query = (
        select(key, *columns)
        .where(
            col(SurveyResponse.kind) == kind,
            col(SurveyResponse.day) >= period.start,
            col(SurveyResponse.day) <= period.end,
        )
        .group_by(key)
    )
    return ctx.scope.restrict(query, col(SurveyResponse.account_id))


def nps(ctx: MetricContext, period: Period) -> Values:
    """% promoters − % detractors of the period's NPS responses, from −100 to 100."""
    rescaled_times_span = (_SCORE - _LOW) * 10  # the 0–10 score × (max − min), an integer
    span = _HIGH - _LOW
    promoter = rescaled_times_span >= span * 9
    detractor = rescaled_times_span <= span * 6
    query = _responses(ctx, period, "nps", _count(promoter), _count(detractor), func.count())
    counts = {
        group: (int(p), int(n) - int(p) - int(d), int(d), int(n))
        for group, p, d, n in ctx.session.execute(query)
    }
    if ctx.scope.by is None:
        counts.setdefault(TOTAL, (0, 0, 0, 0))
    values = {}
    for group, (promoters, passives, detractors, responses) in counts.items():
        inputs: dict[str, InputValue] = {
            "promoters": promoters,
            "passives": passives,
            "detractors": detractors,
            "responses": responses,
        }
        values[group] = (
            Value(ratio(promoters - detractors, responses), inputs)
            if responses
            else Value.undefined(NO_RESPONSES.format(kind="NPS"), **inputs)
        )
    return values


def csat(ctx: MetricContext, period: Period) -> Values:
    """Positive CSAT responses ÷ CSAT responses × 100; positive = top quarter of its scale."""
    above_min = _SCORE - _LOW
    positive = above_min * 4 >= (_HIGH - _LOW) * 3
    query = _responses(ctx, period, "csat", _count(positive), func.count())
    counts = {group: (int(p), int(n)) for group, p, n in ctx.session.execute(query)}
    if ctx.scope.by is None:
        counts.setdefault(TOTAL, (0, 0))
    values = {}
    for group, (positive_count, responses) in counts.items():
        inputs: dict[str, InputValue] = {"positive": positive_count, "responses": responses}
        values[group] = (
            Value(ratio(positive_count, responses), inputs)
            if responses
            else Value.undefined(NO_RESPONSES.format(kind="CSAT"), **inputs)
        )
    return values


def csat_avg(ctx: MetricContext, period: Period) -> Values:
    """Mean CSAT score on a 1–5 scale: each score becomes 1 + (score − min) ÷ (max − min) × 4."""
    # Summed per scale in SQL, combined exactly here: SQL division would be integer or float.
    query = _responses(
        ctx, period, "csat", _LOW, _HIGH, func.sum(_SCORE - _LOW), func.count()
    ).group_by(_LOW, _HIGH)
    sums: dict[str, Fraction] = defaultdict(Fraction)
    counts: dict[str, int] = defaultdict(int)
    for group, low, high, above_min, responses in ctx.session.execute(query):
        sums[group] += Fraction(int(above_min) * 4, high - low) + int(responses)
        counts[group] += int(responses)
    if ctx.scope.by is None:
        counts.setdefault(TOTAL, 0)
    values = {}
    for group, responses in counts.items():
        inputs: dict[str, InputValue] = {"responses": responses}
        total = sums[group]
        values[group] = (
            Value(ratio(total.numerator, total.denominator * responses, percent=False), inputs)
            if responses
            else Value.undefined(NO_RESPONSES.format(kind="CSAT"), **inputs)
        )
    return values
