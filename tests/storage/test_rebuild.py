"""`rebuild` recomputes every derived table from the event log and gets the same result."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from storage.apply import IngestConfig
from storage.db import session_scope
from storage.demo import generate_demo_events
from storage.ingest import ingest_events, ingest_in_batches
from storage.rebuild import rebuild
from storage.sources.base import Delivery
from storage.sources.registry import get_source
from storage.tables import DERIVED_TABLES, EventLog, Invoice, MrrMovement
from tests.builders import PausedRebuild, ingest, make_invoice, make_subscription, movements
from tests.storage.sources import (
    test_delighted as delighted,
)
from tests.storage.sources import (
    test_segment as segment,
)
from tests.storage.sources import (
    test_stripe as stripe,
)
from tests.storage.sources import (
    test_typeform as typeform,
)
from tests.storage.sources import (
    test_zendesk as zendesk,
)


def _snapshot(factory):
    """Every derived row, as comparable tuples without surrogate ids."""
    snapshot = {}
    with session_scope(factory) as session:
        for table in DERIVED_TABLES:
            columns = [c for c in table.__table__.columns if c.name not in ("id", "event_log_id")]
            rows = session.execute(select(*columns)).all()
            snapshot[table.__tablename__] = sorted(tuple(map(repr, row)) for row in rows)
    return snapshot


def test_rebuild_reproduces_the_derived_tables(session_factory):
    config = IngestConfig(reporting_currency="USD", timezone="Europe/Paris")
    events = list(generate_demo_events(accounts=25, years=2, seed=3, until=date(2026, 11, 1)))
    report = ingest_in_batches(session_factory, events, config=config, batch_size=300)
    assert report.rejected == 0
    before = _snapshot(session_factory)
    assert len(before["mrr_movement"]) > 25 and len(before["usage_day"]) > 100

    with session_scope(session_factory) as session:  # derived data drifts or is damaged …
        session.execute(MrrMovement.__table__.delete())

    assert rebuild(session_factory, config=config) == report.applied
    assert _snapshot(session_factory) == before


def test_events_applied_during_a_rebuild_wait_for_it_and_count_once(session_factory):
    """A writer that applies events while a rebuild runs waits for its commit, then applies on
    the rebuilt tables: on PostgreSQL through the rebuild's lock (an account the rebuild has not
    reached yet would otherwise be written beside it), on SQLite through its single writer."""
    config = IngestConfig()
    ingest(session_factory, [make_subscription("2026-02-10", account_id="acc-1")])
    late = make_subscription("2026-03-05", account_id="acc-2", subscription_id="sub-2")
    with PausedRebuild(session_factory, config) as paused:
        writer = threading.Thread(target=ingest, args=(session_factory, [late]))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # waiting for the rebuild, not writing beside it
        assert paused.resume() == 1  # the rebuild saw only what was applied before it
        writer.join(30)
    assert not writer.is_alive()
    assert movements(session_factory) == [
        ("2026-02-10", "new", "50.00"),
        ("2026-03-05", "new", "50.00"),
    ]
    after = _snapshot(session_factory)
    rebuild(session_factory, config=config)
    assert _snapshot(session_factory) == after


def _deliver(factory, config, name: str, payload: Any, delivery: Delivery) -> None:
    """Map a provider's payload as its webhook route does, and ingest it under its source."""
    events = get_source(name).events(payload, delivery)
    with session_scope(factory) as session:
        report = ingest_events(session, [e.item() for e in events], config=config, source=name)
    assert report.applied == len(events), report.rejections


def test_a_rebuild_maps_each_providers_rows_again_through_its_source(session_factory):
    """A provider's row in the event log holds the provider's own payload (a Stripe Event, a
    Segment call), not a native event: a rebuild maps it again through its source, with that
    source's settings (Typeform's field refs here), exactly as the webhook route did."""
    config = IngestConfig(reporting_currency="USD", timezone="UTC")
    created = stripe.stripe_event(
        "customer.subscription.created",
        stripe.subscription(stripe.item(stripe.price(3000), 2)),
        event_id="evt_created",
    )
    upgraded = stripe.stripe_event(
        "customer.subscription.updated",
        stripe.subscription(stripe.item(stripe.price(5000, price_id="price_gold"), 3)),
        event_id="evt_upgraded",
        created=stripe.JAN_15 + 3 * stripe.DAY,
    )
    paid = stripe.stripe_event("invoice.paid", stripe.invoice(), event_id="evt_paid")
    for payload in (created, upgraded, paid):
        body = json.dumps(payload).encode()
        _deliver(session_factory, config, "stripe", payload, Delivery({}, body, stripe.NOW))
    for payload in (segment.group(), segment.track()):
        body = json.dumps(payload).encode()
        _deliver(session_factory, config, "segment", payload, segment.signed(body))
    nps = delighted.response_event()
    _deliver(session_factory, config, "delighted", nps, delighted.signed(json.dumps(nps).encode()))
    form = typeform.form_response(score=3)
    body = json.dumps(form).encode()
    _deliver(session_factory, config, "typeform", form, typeform.delivery(body))
    csat = zendesk.rating()
    _deliver(session_factory, config, "zendesk", csat, zendesk.signed(json.dumps(csat).encode()))
    before = _snapshot(session_factory)
    assert [kind for _day, kind, _amount in movements(session_factory)] == ["new", "expansion"]
    assert len(before["survey_response"]) == 3 and len(before["usage_day"]) == 1
    assert len(before["invoice"]) == 1 and len(before["account"]) == 1

    options = {"typeform": typeform.OPTIONS}
    applied = rebuild(
        session_factory, config=config, options_for=lambda source: options.get(source, {})
    )

    assert applied == 8
    assert _snapshot(session_factory) == before
    with session_scope(session_factory) as session:
        assert set(session.scalars(select(EventLog.status))) == {"applied"}


LARGE_STORE_ACCOUNTS = 10_000  # as many locks, twice: past PostgreSQL's default table (64 x 100)


def test_a_store_of_many_accounts_is_ingested_and_rebuilt_within_the_lock_table(session_factory):
    """On PostgreSQL each applying transaction locks its accounts and survey responses: a
    webhook group of 10,000 responses of 10,000 accounts took 20,000 locks, and a rebuild, one
    transaction over the whole store, two per account ("out of shared memory"). Accounts and
    responses now share a fixed number of locks, and a rebuild, which applies alone, takes none."""

    def subscription(n: int) -> dict[str, Any]:
        return make_subscription("2026-01-05", account_id=f"acc-{n}", subscription_id=f"sub-{n}")

    def response(n: int) -> dict[str, Any]:
        data = {"response_id": f"r-{n}", "account_id": f"acc-{n}", "kind": "nps", "score": 9}
        return {"id": f"e-r-{n}", "type": "survey.responded", **_AT, "data": data}

    accounts = range(LARGE_STORE_ACCOUNTS)
    events = [subscription(n) for n in accounts] + [response(n) for n in accounts]
    batch = len(accounts)  # as large as a webhook group may be (its default largest size)
    report = ingest_in_batches(session_factory, events, config=IngestConfig(), batch_size=batch)
    assert (report.applied, report.rejected) == (len(events), 0)
    before = _snapshot(session_factory)

    assert rebuild(session_factory, config=IngestConfig()) == len(events)
    assert _snapshot(session_factory) == before
    assert len(before["mrr_movement"]) == LARGE_STORE_ACCOUNTS


_AT = {"occurred_at": "2026-01-06T09:00:00Z"}


def test_a_rebuild_applies_again_what_was_applied_under_looser_rules(session_factory):
    """An invoice of 1.234 USD was applied (stored as 1.23) before amounts charged had to be
    to the cent; a rebuild keeps it as it was, where a new delivery of it is rejected."""
    legacy = {**make_invoice("2026-01-02", amount="1.234"), "id": "inv-legacy"}
    with session_scope(session_factory) as session:
        session.add(
            EventLog(
                source="kpibot",
                event_id="inv-legacy",
                type="invoice.paid",
                occurred_at=datetime(2026, 1, 2, tzinfo=UTC),
                received_at=datetime(2026, 1, 2, tzinfo=UTC),
                body=json.dumps(legacy),
                status="applied",
            )
        )
    assert ingest(session_factory, [{**legacy, "id": "inv-new"}]).rejected == 1

    rebuild(session_factory, config=IngestConfig())

    with session_scope(session_factory) as session:
        assert session.scalars(select(Invoice.amount)).all() == [Decimal("1.23")]
        fate = select(EventLog.status).where(EventLog.event_id == "inv-legacy")
        assert session.scalar(fate) == "applied"
