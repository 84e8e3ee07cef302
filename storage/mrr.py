"""MRR as KPIS.md defines it: subscription normalisation and per-account movements.

Pure functions: the ingestion service feeds them an account's subscription versions and stores the
movements they return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from itertools import groupby

PAYING_STATUSES = frozenset({"active", "past_due"})
MOVEMENT_KINDS = ("new", "expansion", "contraction", "churn", "reactivation")
_PER_MONTH = {
    "day": Decimal(365) / 12,
    "week": Decimal(52) / 12,
    "month": Decimal(1),
    "quarter": Decimal(1) / 3,
    "year": Decimal(1) / 12,
}
_MRR_PRECISION = Decimal("0.000001")


def subscription_mrr(
    *,
    status: str,
    amount: Decimal,
    quantity: int,
    interval: str,
    interval_count: int,
    discount_percent: Decimal | None = None,
    discount_amount: Decimal | None = None,
) -> Decimal:
    """Return a subscription's monthly recurring revenue in its own currency (unrounded, 6 dp).

    amount × quantity less the recurring discount, normalised to a month; 0 unless the status
    carries MRR (active, past_due).
    """
    if status not in PAYING_STATUSES:
        return Decimal(0)
    billed = amount * quantity
    if discount_percent is not None:
        billed = billed * (100 - discount_percent) / 100
    if discount_amount is not None:
        billed = max(Decimal(0), billed - discount_amount)
    return (billed * _PER_MONTH[interval] / interval_count).quantize(_MRR_PRECISION)


@dataclass(frozen=True)
class VersionPoint:
    """What the movement derivation needs of one subscription version."""

    subscription_id: str
    effective_at: datetime
    currency: str
    mrr: Decimal


@dataclass(frozen=True)
class Movement:
    """An account's net MRR change on one day, in the reporting currency."""

    day: date
    occurred_at: datetime
    kind: str
    amount: Decimal
    mrr_before: Decimal
    mrr_after: Decimal


@dataclass(frozen=True)
class MrrBefore:
    """An account at the end of the day before a derivation starts (nothing: a full history)."""

    in_force: Sequence[VersionPoint] = ()  # each subscription's latest version before that day
    booked: Decimal = Decimal("0.00")  # MRR after the last movement before that day (reporting)
    ever_paid: bool = False  # whether any movement came before that day


Convert = Callable[[Decimal, str, date], Decimal]
"""(amount, currency, day) -> the amount in the reporting currency at that day's rate, rounded."""


@cache
def native_precision(currency: str) -> Decimal:
    """What an amount in `currency` is rounded to before conversion: its minor unit, and never
    coarser than a hundredth (KWD 0.001, USD and JPY 0.01)."""
    from babel.numbers import get_currency_precision

    return Decimal(1).scaleb(-max(2, get_currency_precision(currency)))


def _native_totals(state: dict[str, tuple[str, Decimal]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for currency, mrr in state.values():
        totals[currency] = totals.get(currency, Decimal(0)) + mrr
    return {
        c: rounded
        for c, v in totals.items()
        if (rounded := v.quantize(native_precision(c), rounding=ROUND_HALF_UP)) != 0
    }


def derive_movements(
    versions: Iterable[VersionPoint],
    *,
    local_day: Callable[[datetime], date],
    convert: Convert,
    start: MrrBefore = MrrBefore(),
) -> list[Movement]:
    """Return an account's movements from its subscription versions, oldest first.

    From all its versions; or from the versions of a day on, given `start` (the account at the end
    of the previous day: everything the derivation carries from one day to the next follows from
    it), the same movements from that day on as a derivation of the whole history gives.

    Versions are netted per local day: the account's MRR at the end of each day is compared with
    the end of the previous day with a change. 0 → x is new (first time) or reactivation; a rise is
    expansion; a fall to a positive amount is contraction; a fall to 0 is churn. Each currency's
    change is converted at that day's rate, so a switch of currency at equal value moves nothing;
    churn removes exactly the MRR the account had in the reporting currency.
    """
    ordered = sorted(versions, key=lambda v: v.effective_at)
    state = {v.subscription_id: (v.currency, v.mrr) for v in start.in_force}
    booked = start.booked
    ever_paid = start.ever_paid
    movements: list[Movement] = []
    after = _native_totals(state)  # the totals of the state so far
    for day, day_versions in groupby(ordered, key=lambda v: local_day(v.effective_at)):
        group: Sequence[VersionPoint] = list(day_versions)
        before = after  # the state changes only here: the last day's totals are still right
        for version in group:
            state[version.subscription_id] = (version.currency, version.mrr)
        after = _native_totals(state)
        if after == before:
            continue
        occurred_at = group[-1].effective_at
        if not after:
            kind, new_booked = "churn", Decimal("0.00")
        elif not before or booked == 0:
            kind = "reactivation" if ever_paid else "new"
            new_booked = sum((convert(v, c, day) for c, v in after.items()), Decimal("0.00"))
        else:
            changes = {
                c: after.get(c, Decimal(0)) - before.get(c, Decimal(0)) for c in after | before
            }
            delta = sum((convert(v, c, day) for c, v in changes.items() if v), Decimal("0.00"))
            if delta == 0:
                continue
            new_booked = booked + delta
            if new_booked <= 0:  # rates moved so far since booking that the delta overshoots
                new_booked = sum((convert(v, c, day) for c, v in after.items()), Decimal("0.00"))
            kind = "expansion" if new_booked > booked else "contraction"
        if new_booked == booked:
            continue
        if kind in ("new", "reactivation") and new_booked == 0:
            continue  # a paying amount too small to show in the reporting currency
        movements.append(
            Movement(day, occurred_at, kind, abs(new_booked - booked), booked, new_booked)
        )
        booked = new_booked
        ever_paid = True
    return movements
