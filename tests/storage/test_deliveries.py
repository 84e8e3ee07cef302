"""Listing received events and replaying rejected ones after the cause is fixed."""

from __future__ import annotations

from decimal import Decimal

from metrics import ledger
from storage import revisions
from storage.apply import IngestConfig
from storage.db import session_scope
from storage.deliveries import list_events, replay_rejected
from storage.revisions import STOCKS
from tests.builders import ingest, kpi, make_fx, make_subscription, movements, paying_accounts


def test_a_rejected_event_is_listed_then_replayed_once_its_rate_exists(session_factory):
    euro = make_subscription("2026-02-10", currency="EUR", amount="100.00")
    assert ingest(session_factory, [euro]).rejected == 1
    with session_scope(session_factory) as session:
        [row] = list_events(session, status="rejected")
    assert row.event_id == euro["id"] and "no exchange rate EUR→USD" in (row.reason or "")

    ingest(session_factory, [make_fx("2026-02-01", "1.10")])
    report = replay_rejected(session_factory, config=IngestConfig(), ids=[row.id])
    assert (report.applied, report.rejected) == (1, 0)
    assert movements(session_factory) == [("2026-02-10", "new", "110.00")]
    with session_scope(session_factory) as session:
        assert list_events(session, status="rejected") == []
        assert {e.status for e in list_events(session)} == {"applied"}


def test_replaying_an_event_that_is_still_wrong_keeps_it_rejected_once(session_factory):
    bad = make_subscription("2026-02-10", quantity=-1)
    ingest(session_factory, [bad])
    report = replay_rejected(session_factory, config=IngestConfig(), source="kpibot")
    assert report.rejected == 1
    with session_scope(session_factory) as session:
        assert len(list_events(session, status="rejected")) == 1


def test_a_replayed_event_is_seen_by_the_next_question(session_factory):
    """The replay records what it changed for readers (`storage.revisions.record_changes`), once,
    after its last event: what was kept in memory before it is not read again."""
    euros = [
        make_subscription("2026-02-10", currency="EUR", amount="100.00", account_id=f"acc-{n}")
        for n in (1, 2)
    ]
    ingest(
        session_factory,
        [*paying_accounts(1, amount="50.00", since="2026-01-05", prefix="usd"), *euros],
    )
    with session_scope(session_factory) as session:
        revisions.touch(session, STOCKS)  # PostgreSQL tests start without tokens
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("50.00")  # now kept
    ingest(session_factory, [make_fx("2026-02-01", "1.10")])
    ledger.forget()
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("50.00")  # kept again
    report = replay_rejected(session_factory, config=IngestConfig(), source="kpibot")
    assert (report.applied, report.rejected) == (2, 0)
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("270.00")
