"""Movements kept up to date batch by batch equal a derivation from scratch of all stored versions.

Random subscription histories and exchange rates arrive in random order and random batch splits
(old events after newer ones, rates after the movements they convert, subscriptions moving from
one account to another); whatever the order, the stored movements must be exactly what one
derivation over everything stored gives.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from storage.db import session_scope
from storage.fx import FxBook
from storage.mrr import VersionPoint, derive_movements
from storage.tables import (
    DERIVED_TABLES,
    EventLog,
    MrrMovement,
    SubscriptionVersion,
)
from tests.builders import event, ingest

START = date(2026, 3, 1)
# Subscription → the accounts it may be under (the first mostly): one account with two
# subscriptions, and subscriptions that move to another account and back.
SUBSCRIPTIONS = {"s1": ("acc-1", "acc-3"), "s2": ("acc-1",), "s3": ("acc-2", "acc-1")}

_subscription_events = st.tuples(
    st.sampled_from(sorted(SUBSCRIPTIONS)),
    st.sampled_from([0, 0, 0, 1]),  # which of its accounts it is under
    st.integers(0, 6),  # day offset: few days, so that versions and rates share days
    st.integers(0, 23),  # hour: across local midnight in Auckland
    st.sampled_from(["active", "active", "past_due", "trialing", "paused", "canceled"]),
    st.sampled_from(["10.00", "33.33", "0.01", "120.00"]),
    st.sampled_from(["USD", "EUR"]),
    st.sampled_from(["month", "year"]),
    st.integers(1, 3),  # quantity
)
_rate_events = st.tuples(
    st.integers(-1, 6),  # day offset of the rate (-1: before every subscription event)
    st.sampled_from(["0.90", "1.10", "1.37"]),
    st.booleans(),  # quoted EUR→USD (True) or USD→EUR (inverted)
)


def _events(subscriptions: list[Any], rates: list[Any]) -> list[dict[str, Any]]:
    events = []
    for n, (sub, owner, offset, hour, status, amount, currency, interval, quantity) in enumerate(
        subscriptions
    ):
        when = datetime.combine(START + timedelta(days=offset), time(hour)).isoformat()
        accounts = SUBSCRIPTIONS[sub]
        data = {
            "account_id": accounts[owner % len(accounts)],
            "subscription_id": sub,
            "status": status,
            "amount": amount,
            "currency": currency,
            "interval": interval,
            "quantity": quantity,
        }
        events.append(event("subscription.updated", when, data, event_id=f"sub-{n}"))
    for n, (offset, rate, quoted) in enumerate(rates):
        on = START + timedelta(days=offset)
        base, quote = ("EUR", "USD") if quoted else ("USD", "EUR")
        value = rate if quoted else str(round(1 / float(rate), 6))
        data = {"base": base, "quote": quote, "rate": value, "on": on.isoformat()}
        events.append(event("fx.rate", on.isoformat(), data, event_id=f"fx-{n}"))
    return events


def _stored_movements(session: Any) -> set[tuple[Any, ...]]:
    columns = [c for c in MrrMovement.__table__.columns if c.name != "id"]  # type: ignore[attr-defined]
    return {tuple(row) for row in session.execute(select(*columns))}


def _derived_from_scratch(session: Any, timezone: str) -> set[tuple[Any, ...]]:
    """The movements one derivation over every stored version gives (the reference): each
    account's, from the versions of every subscription it ever had, those under another account
    counting as no MRR."""
    table = SubscriptionVersion.__table__.c  # type: ignore[attr-defined]
    stored = session.execute(
        select(table.account_id, table.subscription_id, table.effective_at)
        .add_columns(table.currency, table.mrr)
        .order_by(table.effective_at, table.id)
    ).all()
    accounts_of: dict[str, set[str]] = defaultdict(set)
    for account_id, subscription_id, *_ in stored:
        accounts_of[subscription_id].add(account_id)
    versions: dict[str, list[VersionPoint]] = defaultdict(list)
    for owner, subscription_id, effective_at, currency, mrr in stored:
        for account_id in accounts_of[subscription_id]:
            share = mrr if account_id == owner else Decimal(0)
            versions[account_id].append(
                VersionPoint(subscription_id, effective_at, currency, share)
            )
    book = FxBook.load(session, "USD")
    zone = ZoneInfo(timezone)
    return {
        (account_id, m.day, m.occurred_at, m.kind, m.amount, m.mrr_before, m.mrr_after)
        for account_id, points in versions.items()
        for m in derive_movements(
            points, local_day=lambda t: t.astimezone(zone).date(), convert=book.convert
        )
    }


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(_subscription_events, min_size=1, max_size=14),
    st.lists(_rate_events, max_size=5),
    st.sampled_from(["UTC", "Pacific/Auckland"]),
    st.data(),
)
def test_movements_kept_batch_by_batch_equal_a_derivation_from_scratch(
    session_factory, subscriptions, rates, timezone, data
):
    with session_scope(session_factory) as session:
        for table in DERIVED_TABLES:
            session.execute(delete(table))
        session.execute(delete(EventLog))
    events = data.draw(st.permutations(_events(subscriptions, rates)), label="arrival order")
    cuts = sorted(
        data.draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=5), label="cuts")
    )
    for first, last in zip([0, *cuts], [*cuts, len(events)], strict=True):
        if first < last:
            ingest(session_factory, events[first:last], timezone=timezone)
    with session_scope(session_factory) as session:
        stored = _stored_movements(session)
        assert stored == _derived_from_scratch(session, timezone)
