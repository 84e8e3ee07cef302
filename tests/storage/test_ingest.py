"""The ingestion service: event log, de-duplication, batches, event-time ordering, attribution."""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import func, select

from storage.apply import IngestConfig
from storage.db import session_scope
from storage.ingest import ingest_in_batches
from storage.tables import (
    Account,
    AccountDomain,
    Contact,
    EventLog,
    FxRate,
    Invoice,
    Subscription,
    SurveyResponse,
    UsageDay,
)
from tests.builders import (
    event,
    ingest,
    make_account,
    make_fx,
    make_invoice,
    make_response,
    make_subscription,
    movements,
)


def _log(factory):
    with session_scope(factory) as session:
        rows = session.scalars(select(EventLog).order_by(EventLog.id)).all()
        return [(r.event_id, r.type, r.status, r.reason) for r in rows]


def _count(factory, table):
    with session_scope(factory) as session:
        return session.scalar(select(func.count()).select_from(table))


def test_every_event_is_logged_with_its_fate(session_factory):
    events = [
        make_subscription("2026-01-01", event_id="e-applied"),
        event("ticket.created", "2026-01-01", {"x": 1}, event_id="e-ignored"),
        {**make_invoice("2026-01-01", amount="-1.00"), "id": "e-rejected"},
        {**make_invoice("2026-01-01"), "id": "e-long-type", "type": "x" * 65},
        {**make_invoice("2026-01-01"), "id": "e-odd-type", "type": 7},
    ]
    report = ingest(session_factory, events)
    assert (report.applied, report.ignored, report.rejected) == (1, 1, 3)
    log = {event_id: rest for event_id, *rest in _log(session_factory)}
    assert log["e-applied"] == ["subscription.updated", "applied", None]
    assert log["e-ignored"] == ["ticket.created", "ignored", None]
    # A rejected event is logged with the type it says it has, when the log can hold it.
    assert log["e-rejected"][:2] == ["invoice.paid", "rejected"]
    assert "data.amount" in log["e-rejected"][2]
    assert "greater than or equal to 0" in log["e-rejected"][2]
    assert log["e-long-type"][:2] == log["e-odd-type"][:2] == [None, "rejected"]


def test_duplicate_deliveries_count_once(session_factory):
    first = make_invoice("2026-01-01", invoice_id="inv-1")
    assert ingest(session_factory, [first, first]).duplicate == 1
    again = ingest(session_factory, [first])
    assert (again.applied, again.duplicate) == (0, 1)
    assert _count(session_factory, Invoice) == 1
    assert _count(session_factory, EventLog) == 1


def test_a_batch_with_one_bad_event_applies_the_good_ones_and_nothing_of_the_bad(session_factory):
    bad = make_subscription("2026-01-02", account_id="acc-2", subscription_id="s-2", quantity=-3)
    report = ingest(
        session_factory,
        [make_account(), make_subscription("2026-01-01"), bad, make_invoice("2026-01-03")],
    )
    assert (report.applied, report.rejected) == (3, 1)
    assert report.rejections[0].index == 2
    assert report.rejections[0].event_id == bad["id"]
    assert report.rejections[0].reason.startswith("data.quantity:")
    with session_scope(session_factory) as session:
        assert session.scalars(select(Subscription.subscription_id)).all() == ["sub-1"]
    assert movements(session_factory, "acc-2") == []


def test_each_item_has_its_fate_by_index_and_a_part_of_the_report_is_its_own(session_factory):
    stored = make_invoice("2026-01-01", invoice_id="inv-0")
    ingest(session_factory, [stored])
    good = make_invoice("2026-01-02", invoice_id="inv-1")
    bad = make_invoice("2026-01-03", invoice_id="inv-2", amount="ten")
    unused = event("ticket.created", "2026-01-01", {"x": 1})
    refused = make_invoice("2026-01-04", invoice_id="inv-3", currency="EUR")  # no EUR rate
    report = ingest(session_factory, [good, stored, bad, good, unused, refused])
    assert report.outcomes == [
        "applied",
        "duplicate",
        "rejected",
        "duplicate",
        "ignored",
        "rejected",
    ]
    assert [r.index for r in report.rejections] == [2, 5]

    second = report.part(2, 5)
    assert (second.applied, second.duplicate, second.ignored, second.rejected) == (0, 1, 1, 1)
    assert [(r.index, r.event_id) for r in second.rejections] == [(0, bad["id"])]
    third = report.part(5, 6)
    assert (third.rejected, [r.index for r in third.rejections]) == (1, [0])
    assert report.part(0, 2).rejections == []


def test_a_rejected_event_resent_after_a_fix_is_applied(session_factory):
    broken = make_invoice("2026-01-01", amount="ten")
    assert ingest(session_factory, [broken]).rejected == 1
    fixed = {**broken, "data": {**broken["data"], "amount": "10.00"}}
    report = ingest(session_factory, [fixed])
    assert (report.applied, report.duplicate) == (1, 0)
    assert [status for _, _, status, _ in _log(session_factory)] == ["applied"]
    assert _count(session_factory, Invoice) == 1


def test_out_of_order_subscription_events_give_the_same_state_and_movements(session_factory):
    history = [
        make_subscription("2026-01-01", status="trialing"),
        make_subscription("2026-01-15", quantity=2),
        make_subscription("2026-03-01", quantity=5),
        make_subscription("2026-04-01", quantity=3),
        make_subscription("2026-06-01", status="canceled"),
        make_subscription("2026-09-01", quantity=1),
    ]
    expected = [
        ("2026-01-15", "new", "100.00"),
        ("2026-03-01", "expansion", "150.00"),
        ("2026-04-01", "contraction", "100.00"),
        ("2026-06-01", "churn", "150.00"),
        ("2026-09-01", "reactivation", "50.00"),
    ]
    shuffled = history[:]
    random.Random(7).shuffle(shuffled)
    for single in shuffled:  # one delivery at a time, in the wrong order
        ingest(session_factory, [single])
    assert movements(session_factory) == expected
    with session_scope(session_factory) as session:
        current = session.get(Subscription, "sub-1")
        assert current is not None and (current.status, current.quantity) == ("active", 1)


def test_an_older_account_update_does_not_overwrite_a_newer_one(session_factory):
    newer = make_account(when="2026-03-01", plan="scale", contacts=[{"email": "new@acme.example"}])
    older = make_account(
        when="2026-01-01", plan="starter", contacts=[{"email": "old@acme.example"}]
    )
    ingest(session_factory, [newer])
    ingest(session_factory, [older])
    with session_scope(session_factory) as session:
        account = session.get(Account, "acc-1")
        assert account is not None and account.plan == "scale"
        assert session.scalars(select(Contact.email)).all() == ["new@acme.example"]


def test_a_rate_correction_wins_over_the_original_whichever_arrives_first(session_factory):
    original = event(
        "fx.rate",
        "2026-02-01T06:00:00Z",
        {"base": "EUR", "quote": "USD", "rate": "1.07", "on": "2026-02-01"},
        event_id="fx-original",
    )
    corrected = {**original, "id": "fx-corrected", "occurred_at": "2026-02-01T12:00:00Z"}
    corrected["data"] = {**original["data"], "rate": "1.08"}
    ingest(session_factory, [corrected])
    ingest(session_factory, [make_invoice("2026-02-10", currency="EUR", amount="100.00")])
    ingest(session_factory, [original])  # the older rate, arriving last
    with session_scope(session_factory) as session:
        assert session.execute(select(FxRate.rate)).scalars().all() == [Decimal("1.08")]
        assert session.execute(select(Invoice.amount_reporting)).scalars().all() == [
            Decimal("108.00")
        ]


def test_a_domain_belongs_to_the_account_that_claimed_it_last_by_event_time(session_factory):
    newer = make_account("globex", when="2026-03-01", domains=["shared.com"])
    older = make_account("acme", when="2026-01-01", domains=["shared.com"])
    ingest(session_factory, [newer])
    ingest(session_factory, [older])  # arrives last, but claimed the domain first
    answer = make_response("2026-03-05", score=3, account_id=None, respondent_email="x@shared.com")
    ingest(session_factory, [answer])
    with session_scope(session_factory) as session:
        assert session.scalar(select(AccountDomain.account_id)) == "globex"
        assert session.scalar(select(SurveyResponse.account_id)) == "globex"
    ingest(session_factory, [make_account("acme", when="2026-04-01", domains=["shared.com"])])
    with session_scope(session_factory) as session:
        assert session.scalar(select(AccountDomain.account_id)) == "acme"


def test_usage_keeps_the_latest_report_of_a_day(session_factory):
    day = {"account_id": "acc-1", "day": "2026-01-05"}
    ingest(
        session_factory,
        [
            event("usage.recorded", "2026-01-05T23:00", {**day, "user_ids": ["u1", "u2", "u2"]}),
            event("usage.recorded", "2026-01-05T08:00", {**day, "user_ids": ["u1"]}),
        ],
    )
    with session_scope(session_factory) as session:
        usage = session.scalars(select(UsageDay)).one()
        assert (usage.active_users, usage.user_ids) == (2, ["u1", "u2"])


def test_responses_are_attributed_by_account_then_contact_then_domain(session_factory):
    ingest(
        session_factory,
        [
            make_account(
                "acc-1", domains=["acme.example"], contacts=[{"email": "ana@acme.example"}]
            ),
            make_account("acc-2", domains=["globex.example"]),
        ],
    )
    report = ingest(
        session_factory,
        [
            make_response("2026-02-01", score=9, account_id="acc-2", response_id="r-id"),
            make_response(
                "2026-02-01",
                score=3,
                account_id=None,
                respondent_email="Ana@Acme.example",
                response_id="r-contact",
            ),
            make_response(
                "2026-02-01",
                score=7,
                account_id=None,
                respondent_email="bob@globex.example",
                response_id="r-domain",
            ),
            make_response(
                "2026-02-01",
                score=2,
                account_id=None,
                respondent_email="x@unknown.example",
                response_id="r-none",
            ),
        ],
    )
    assert report.applied == 4
    with session_scope(session_factory) as session:
        found = {
            r.response_id: (r.account_id, r.attribution)
            for r in session.scalars(select(SurveyResponse))
        }
    assert found == {
        "r-id": ("acc-2", "account_id"),
        "r-contact": ("acc-1", "contact"),
        "r-domain": ("acc-2", "domain"),
        "r-none": (None, "none"),
    }


def test_score_outside_its_scale_is_rejected_with_the_reason(session_factory):
    report = ingest(session_factory, [make_response("2026-02-01", score=11)])
    assert report.rejected == 1
    assert report.rejections[0].reason == "data: score 11 is outside the scale 0..10"
    assert _count(session_factory, SurveyResponse) == 0


def test_a_time_at_the_calendars_end_is_rejected_not_a_crash(session_factory):
    """9999-12-31T23:59:59Z is a valid ISO time, but its reporting day in Paris would be in the
    year 10000: such times are refused at the door, with the reason."""
    late = {
        **make_invoice("2026-01-02", invoice_id="inv-late"),
        "occurred_at": "9999-12-31T23:59:59Z",
    }
    report = ingest(session_factory, [late], timezone="Europe/Paris")
    assert report.rejected == 1
    assert report.rejections[0].reason == (
        "occurred_at: must be between 1970-01-01 and 2999-12-31 (UTC)"
    )
    assert _count(session_factory, Invoice) == 0


def test_an_amount_charged_with_a_fraction_of_a_cent_is_rejected_not_rounded(session_factory):
    """Money is stored exactly, in hundredths: an invoice, a contract or a cost of 1.234 would
    be rounded, so it is refused with the reason (and kept for a replay); a subscription's price
    per unit may hold fractions of a cent, its MRR being the product, rounded."""
    contract = {"contract_id": "ctr-1", "account_id": "acc-1", "due_on": "2026-12-31"}
    cost = {"cost_id": "cost-1", "period_start": "2026-01-01", "period_end": "2026-01-31"}
    events = [
        make_invoice("2026-01-02", invoice_id="inv-fine", amount="12.340"),
        make_invoice("2026-01-02", invoice_id="inv-fils", amount="12.345", currency="KWD"),
        event(
            "renewal.updated",
            "2026-01-02",
            {**contract, "amount": "1200.005", "currency": "USD", "outcome": "pending"},
        ),
        event(
            "renewal.updated",
            "2026-01-03",
            {
                **contract,
                "amount": "1200",
                "currency": "USD",
                "outcome": "renewed",
                "renewed_amount": "1300.001",
            },
        ),
        event("cost.recorded", "2026-02-01", {**cost, "amount": "0.001", "currency": "USD"}),
        make_subscription("2026-01-02", amount="0.125", quantity=8),
    ]
    report = ingest(session_factory, events)

    assert (report.applied, report.rejected) == (2, 4)
    reason = "has more than 2 decimals: kpibot keeps money exactly, in hundredths"
    assert [r.reason for r in report.rejections] == [
        f"data.amount: 12.345 {reason} (send the amount rounded as it was charged)",
        f"data.amount: 1200.005 {reason} (send the amount rounded as it was charged)",
        f"data.renewed_amount: 1300.001 {reason} (send the amount rounded as it was charged)",
        f"data.amount: 0.001 {reason} (send the amount rounded as it was charged)",
    ]
    with session_scope(session_factory) as session:
        assert session.scalars(select(Invoice.amount)).all() == [Decimal("12.34")]
    assert movements(session_factory) == [("2026-01-02", "new", "1.00")]


def test_a_file_batch_with_an_amount_the_store_cannot_hold_loses_only_that_event(
    session_factory,
):
    """10^12 EUR at 10^9 passes the schema but no money column holds it in USD: the batch is
    stored again event by event, and only that event is rejected, with the reason."""
    ingest(session_factory, [make_fx("2026-01-01", "1000000000")])
    good = [make_invoice("2026-01-02", invoice_id=f"inv-{n}") for n in range(4)]
    huge = make_invoice("2026-01-02", invoice_id="inv-huge", amount="1000000000000", currency="EUR")

    report = ingest_in_batches(session_factory, [*good[:2], huge, *good[2:]], config=IngestConfig())

    assert (report.applied, report.rejected) == (4, 1)
    [rejection] = report.rejections
    assert (rejection.index, rejection.event_id) == (2, huge["id"])
    assert rejection.reason.startswith("could not be applied")
    assert _count(session_factory, Invoice) == 4
    rejected = [(event_id, status) for event_id, _, status, _ in _log(session_factory)]
    assert [row for row in rejected if row[1] != "applied"] == [(huge["id"], "rejected")]


def test_a_fixed_copy_later_in_the_same_batch_takes_the_rejected_ones_place(session_factory):
    """As across batches: a file whose bad line is followed by its corrected copy applies it."""
    bad = make_invoice("2026-01-02", invoice_id="inv-x", amount="ten")
    fixed = {**bad, "data": {**bad["data"], "amount": "10.00"}}
    again = dict(fixed)

    report = ingest(session_factory, [bad, fixed, again])

    assert (report.applied, report.rejected, report.duplicate) == (1, 1, 1)
    assert report.outcomes == ["rejected", "applied", "duplicate"]
    assert report.rejections[0].index == 0
    assert [(event_id, status) for event_id, _, status, _ in _log(session_factory)] == [
        (bad["id"], "applied")
    ]
    assert _count(session_factory, Invoice) == 1


def test_a_large_batch_logs_each_event_once_with_its_fate(session_factory):
    """Batches of COPY_THRESHOLD events or more take PostgreSQL's COPY path: same outcome."""
    events = [make_invoice("2026-03-01", invoice_id=f"inv-{n:03d}") for n in range(120)]
    events[7] = make_invoice("2026-03-01", invoice_id="inv-bad", currency="XYZ")
    first = ingest(session_factory, events[:60])
    assert (first.applied, first.duplicate, first.rejected) == (59, 0, 1)
    second = ingest(session_factory, list(reversed(events)))
    assert (second.applied, second.duplicate, second.rejected) == (60, 59, 1)
    with session_scope(session_factory) as session:
        logged = dict(
            session.execute(
                select(EventLog.status, func.count()).group_by(EventLog.status)  # type: ignore[arg-type]
            ).all()
        )
        invoices = session.scalar(select(func.count()).select_from(Invoice))
    assert logged == {"applied": 119, "rejected": 1}
    assert invoices == 119
