"""A renewal whose event names no currency is in its account's currency (else the reporting one),
as the account is now: the same whatever order the account's and the renewal's events arrive in."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from storage.db import session_scope
from storage.tables import Account, EventLog, FxRate, Renewal
from tests.builders import event, ingest, ingest_shuffled, make_account, make_fx

RATES = [make_fx("2026-01-01", "1.10"), make_fx("2026-01-01", "1.25", base="GBP")]


def _renewal(when: str = "2026-02-01", event_id: str | None = None, **data: Any) -> dict:
    fields = {
        "contract_id": "ctr-1",
        "account_id": "acc-1",
        "due_on": "2026-06-30",
        "amount": "1000.00",
        "outcome": "pending",
        **data,
    }
    return event("renewal.updated", when, fields, event_id=event_id)


def _stored(session_factory) -> list[tuple[str, str, Decimal, Decimal | None]]:
    with session_scope(session_factory) as session:
        return [
            (r.contract_id, r.currency, r.amount_reporting, r.renewed_amount_reporting)
            for r in session.scalars(select(Renewal).order_by(Renewal.contract_id))
        ]


def test_the_account_arriving_after_its_renewal_gives_it_its_currency(session_factory):
    ingest(session_factory, RATES)
    ingest(session_factory, [_renewal(outcome="renewed", renewed_amount="1200.00")])
    assert _stored(session_factory) == [("ctr-1", "USD", Decimal("1000.00"), Decimal("1200.00"))]
    ingest(session_factory, [make_account(currency="EUR")])  # the CRM's, older or not
    assert _stored(session_factory) == [("ctr-1", "EUR", Decimal("1100.00"), Decimal("1320.00"))]
    ingest(session_factory, [make_account(when="2026-03-01", currency="GBP")])
    assert _stored(session_factory) == [("ctr-1", "GBP", Decimal("1250.00"), Decimal("1500.00"))]


def test_a_renewal_naming_its_currency_keeps_it(session_factory):
    ingest(session_factory, [*RATES, _renewal(currency="EUR")])
    ingest(session_factory, [make_account(currency="GBP")])
    assert _stored(session_factory) == [("ctr-1", "EUR", Decimal("1100.00"), None)]


def test_a_currency_without_a_rate_is_followed_once_its_rate_arrives(session_factory):
    ingest(session_factory, [_renewal()])
    ingest(session_factory, [make_account(currency="CHF")])  # no CHF rate yet: it stays in USD
    assert _stored(session_factory) == [("ctr-1", "USD", Decimal("1000.00"), None)]
    ingest(session_factory, [make_fx("2026-06-01", "1.20", base="CHF")])
    assert _stored(session_factory) == [("ctr-1", "CHF", Decimal("1200.00"), None)]


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("account"), st.sampled_from([None, "USD", "EUR", "GBP"])),
        st.tuples(st.just("renewal"), st.sampled_from([None, None, "EUR"])),
    ),
    min_size=1,
    max_size=6,
)


def _reset(session_factory) -> None:
    with session_scope(session_factory) as session:
        for table in (Renewal, FxRate, EventLog, Account):
            session.execute(delete(table))


@given(steps=_steps, seed=st.integers(0, 2**16), batches=st.integers(1, 3))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_arrival_order_gives_what_time_order_gives(session_factory, steps, seed, batches):
    built = []
    for n, (kind, currency) in enumerate(steps):
        when = f"2026-02-{n + 1:02d}"  # distinct, increasing
        if kind == "account":
            built.append(make_account(when=when, currency=currency))
        else:
            given_currency = {} if currency is None else {"currency": currency}
            built.append(_renewal(when, amount=f"{1000 + n}.00", **given_currency))
    _reset(session_factory)
    ingest(session_factory, RATES)
    for one in built:  # time order, one by one
        ingest(session_factory, [one])
    expected = _stored(session_factory)

    _reset(session_factory)
    ingest(session_factory, RATES)
    ingest_shuffled(session_factory, built, seed=seed, batches=batches)
    assert _stored(session_factory) == expected
