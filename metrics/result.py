"""What a metric computation returns: plain data, shaped as `kpibot kpi --format json` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from metrics.periods import Period

InputValue = Decimal | int | None


@dataclass(frozen=True)
class Value:
    """One computed figure: `value` is None when undefined, and `reason` then says why."""

    value: Decimal | None
    inputs: dict[str, InputValue] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def undefined(cls, reason: str, **inputs: InputValue) -> Value:
        """Return an undefined value with its reason (a rate over 0, CLV with no churn, …)."""
        return cls(None, dict(inputs), reason)


def ratio(numerator: Decimal | int, denominator: Decimal | int, *, percent: bool = True) -> Decimal:
    """Return numerator ÷ denominator (× 100 for a percentage), exact to 10 places."""
    result = Decimal(numerator) / Decimal(denominator)
    if percent:
        result *= 100
    return result.quantize(Decimal("0.0000000001"))


@dataclass(frozen=True)
class Part:
    """One part of a breakdown (`by plan`): its key and its own value, computed like the total."""

    key: str
    value: Value


@dataclass(frozen=True)
class KpiResult:
    """A metric's answer for a period, with what it is compared with and what it is made of."""

    metric: str
    label: str
    period: Period
    current: Value
    unit: str
    definition: str
    currency: str
    previous_period: Period | None = None
    previous: Value | None = None
    breakdown: tuple[Part, ...] = ()
    by: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    data_as_of: datetime | None = None
    higher_is_better: bool = True

    @property
    def value(self) -> Decimal | None:
        """The figure itself (None when undefined)."""
        return self.current.value

    @property
    def change(self) -> Decimal | None:
        """Value minus the previous period's value (points for rates), None if either is missing."""
        if self.previous is None or self.value is None or self.previous.value is None:
            return None
        return self.value - self.previous.value

    def to_json(self, locale: str = "en") -> dict[str, Any]:
        """Return the JSON object of SPEC.md (numbers as JSON numbers, dates ISO)."""
        return {
            "metric": self.metric,
            "label": self.label,
            "period": _period_json(self.period, locale),
            "value": _number(self.value),
            "reason": self.current.reason,
            "unit": self.unit,
            "currency": self.currency if self.unit == "money" else None,
            "inputs": {k: _number(v) for k, v in self.current.inputs.items()},
            "previous": None
            if self.previous is None or self.previous_period is None
            else {
                "period": _period_json(self.previous_period, locale),
                "value": _number(self.previous.value),
                "reason": self.previous.reason,
            },
            "change": _number(self.change),
            "by": self.by,
            "filters": dict(self.filters),
            "breakdown": [
                {
                    "key": part.key,
                    "value": _number(part.value.value),
                    "reason": part.value.reason,
                    "inputs": {k: _number(v) for k, v in part.value.inputs.items()},
                }
                for part in self.breakdown
            ],
            "definition": self.definition,
            "data_as_of": self.data_as_of.isoformat() if self.data_as_of else None,
        }


def _period_json(period: Period, locale: str) -> dict[str, str]:
    return {
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "label": period.label(locale),
        "timezone": period.timezone,
    }


def _number(value: InputValue) -> int | float | None:
    """JSON numbers: integers stay integers; decimals are rounded to 2 places for display."""
    if value is None or isinstance(value, int):
        return value
    rounded = value.quantize(Decimal("0.01"))
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)
