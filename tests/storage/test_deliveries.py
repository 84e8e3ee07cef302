"""Listing received events and replaying rejected ones after the cause is fixed."""

from __future__ import annotations

import json
from decimal import Decimal

from metrics import ledger
from storage import revisions
from storage.apply import IngestConfig
from storage.csv_import import import_csv
from storage.db import session_scope
from storage.deliveries import list_events, replay_rejected
from storage.ingest import Malformed, ingest_events
from storage.revisions import STOCKS
from storage.sources.fields import body_id
from tests.builders import ingest, kpi, make_fx, make_subscription, movements, paying_accounts
from tests.storage.sources import test_zendesk as zendesk


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


def test_replaying_a_csv_row_that_could_not_be_read_keeps_it_as_it_was(session_factory, tmp_path):
    """Its stored body is the row's cells, not an event: a replay cannot fix it (the file is fixed
    and imported again), and must not log a copy of it as a new rejected event."""
    path = tmp_path / "invoices.csv"
    path.write_text("account_id,invoice_id,amount,currency,paid_at\nacc-1,inv-1,,USD,2026-01-02\n")
    assert import_csv(session_factory, "invoices", path, config=IngestConfig()).rejected == 1
    with session_scope(session_factory) as session:
        [before] = list_events(session, status="rejected")
    for _ in range(2):
        report = replay_rejected(session_factory, config=IngestConfig())
        assert (report.applied, report.rejected) == (0, 1)
    with session_scope(session_factory) as session:
        [after] = list_events(session)
    assert (after.id, after.event_id, after.status, after.reason) == (
        before.id,
        before.event_id,
        "rejected",
        "line 2: amount: required but empty",
    )


def test_a_replay_that_maps_a_row_to_another_id_replaces_the_row(session_factory):
    """A Zendesk body the mapping refused is logged under a digest of it; once the mapping
    reads it (after a fix), its event has the rating's own id: the replay's outcome replaces the
    rejected row instead of leaving it beside the applied event."""
    body = json.dumps(zendesk.rating("good"))
    refused = Malformed(body, "satisfaction_rating.score: not read yet", body_id(body.encode()))
    with session_scope(session_factory) as session:
        ingest_events(session, [refused], config=IngestConfig(), source="zendesk")
    report = replay_rejected(session_factory, config=IngestConfig())
    assert (report.applied, report.rejected) == (1, 0)
    with session_scope(session_factory) as session:
        [row] = list_events(session)
    assert row.status == "applied" and row.event_id != refused.event_id


def test_a_replayed_event_is_seen_by_the_next_question(session_factory):
    """The replay records what it changed for readers (`storage.revisions.record_changes`), once,
    after its last event: what was kept in memory before it is not read again."""
    euros = [
        make_subscription(
            "2026-02-10",
            currency="EUR",
            amount="100.00",
            account_id=f"acc-{n}",
            subscription_id=f"sub-{n}",
        )
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
