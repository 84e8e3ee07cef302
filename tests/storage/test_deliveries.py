"""Listing received events and replaying rejected ones after the cause is fixed."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import event

from metrics import ledger
from storage import deliveries, revisions
from storage.apply import IngestConfig
from storage.csv_import import import_csv
from storage.db import session_scope
from storage.deliveries import list_events, replay_rejected
from storage.ingest import Malformed, ingest_events
from storage.revisions import STOCKS
from storage.sources.fields import body_id
from storage.tables import EventLog
from tests.builders import (
    ingest,
    kpi,
    make_fx,
    make_invoice,
    make_subscription,
    movements,
    paying_accounts,
)
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
        "invoices.csv line 2: amount: required but empty",  # as the import logged it
    )


def test_a_replayed_csv_row_still_rejected_keeps_saying_where_it_is(session_factory, tmp_path):
    path = tmp_path / "invoices.csv"
    path.write_text("account_id,invoice_id,amount,currency,paid_at\nacc-1,inv-1,5,XYZ,2026-01-02\n")
    assert import_csv(session_factory, "invoices", path, config=IngestConfig()).rejected == 1
    for _ in range(2):
        report = replay_rejected(session_factory, config=IngestConfig())
        [rejection] = report.rejections
        assert rejection.reason.startswith("invoices.csv line 2: data.currency: unknown currency")
    with session_scope(session_factory) as session:
        [row] = list_events(session, status="rejected")
    assert row.reason == rejection.reason


def test_replaying_an_event_without_an_id_that_stays_rejected_keeps_its_row(session_factory):
    """Without an id nothing can take its place: were the replay's outcome logged, every replay
    would add a row (a new log id, a new receipt time) and drop the one the operator listed."""
    no_id = {k: v for k, v in make_invoice("2026-02-10").items() if k != "id"}
    broken = Malformed("[1, 2]", "a top-level JSON array is not an event")
    with session_scope(session_factory) as session:
        ingest_events(session, [no_id, broken], config=IngestConfig())
        before = {row.id: row for row in list_events(session, status="rejected")}
    assert len(before) == 2
    for _ in range(2):
        report = replay_rejected(session_factory, config=IngestConfig())
        assert (report.applied, report.rejected) == (0, 2)
        assert {r.log_id for r in report.rejections} == set(before)
        assert all(r.event_id is None for r in report.rejections)
    with session_scope(session_factory) as session:
        after = {row.id: row for row in list_events(session)}
    assert after.keys() == before.keys()
    for log_id, row in after.items():
        assert (row.status, row.received_at) == ("rejected", before[log_id].received_at)
    assert "id" in (after[min(after)].reason or "")


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


def test_a_replay_commits_batch_by_batch_and_reads_rows_not_objects(
    session_factory, engine, monkeypatch
):
    """A replay of thousands of events holds the writer (all of SQLite) one batch at a time, so
    that webhooks and imports write between two batches. It reads the log as plain rows: every
    row it updates would otherwise be matched against each object its session holds, which made
    5,000 events take minutes."""
    euros = [make_invoice("2026-02-10", currency="EUR", invoice_id=f"inv-{n}") for n in range(5)]
    assert ingest(session_factory, euros).rejected == 5
    ingest(session_factory, [make_fx("2026-02-01", "1.10")])
    monkeypatch.setattr(deliveries, "REPLAY_BATCH", 2)
    commits: list[int] = []
    loaded: list[type] = []
    event.listen(engine, "commit", lambda _connection: commits.append(1))
    event.listen(session_factory, "loaded_as_persistent", lambda _s, o: loaded.append(type(o)))
    report = replay_rejected(session_factory, config=IngestConfig())
    assert (report.applied, report.rejected) == (5, 0)
    assert len(commits) == 1 + 3  # reading what to replay, then 2 + 2 + 1 events
    assert EventLog not in loaded


def test_an_event_that_cannot_be_applied_stays_rejected_and_the_others_are_replayed(
    session_factory,
):
    """10^12 XAU is more USD than an amount column holds: applying it fails its whole batch. The
    replay goes on event by event, as an import does: the others are applied, and that one stays
    rejected with the failure as its reason, replay after replay."""
    gold = make_invoice("2026-03-01", amount="1000000000000", currency="XAU", invoice_id="gold")
    euro = make_invoice("2026-03-01", amount="100.00", currency="EUR", invoice_id="euro")
    assert ingest(session_factory, [gold, euro]).rejected == 2  # no rates yet
    rates = [make_fx("2026-01-01", "100000000", base="XAU"), make_fx("2026-01-01", "1.10")]
    ingest(session_factory, rates)
    first = replay_rejected(session_factory, config=IngestConfig())
    assert (first.applied, first.rejected) == (1, 1)
    [rejection] = first.rejections
    assert rejection.event_id == gold["id"]
    assert rejection.reason.startswith("could not be applied (")
    again = replay_rejected(session_factory, config=IngestConfig())
    assert (again.applied, again.rejected, again.rejections) == (0, 1, first.rejections)
    with session_scope(session_factory) as session:
        [row] = list_events(session, status="rejected")
        assert (row.event_id, row.reason) == (gold["id"], rejection.reason)
        assert len(list_events(session, status="applied")) == 3  # the rates and the euros
