"""MRR movements as KPIS.md defines them, built from events through the ingestion service."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.builders import ingest, kpi, make_account, make_fx, make_subscription, movements

GOLD_YEARLY = {"amount": "500.00", "interval": "year", "subscription_id": "gold"}


def test_lifecycle_example_gives_each_movement_type(session_factory):
    report = ingest(
        session_factory,
        [
            make_account(),
            make_subscription("2026-01-10", quantity=4, **GOLD_YEARLY),
            make_subscription("2026-02-10", subscription_id="silver", amount="30.00", quantity=2),
            make_subscription(
                "2026-03-10",
                subscription_id="silver",
                amount="30.00",
                quantity=2,
                status="canceled",
            ),
            make_subscription("2026-04-10", quantity=4, status="canceled", **GOLD_YEARLY),
            make_subscription("2026-09-10", subscription_id="gold-m", amount="50.00", quantity=3),
        ],
    )
    assert report.applied == 6 and report.rejected == 0
    assert movements(session_factory) == [
        ("2026-01-10", "new", "166.67"),
        ("2026-02-10", "expansion", "60.00"),
        ("2026-03-10", "contraction", "60.00"),
        ("2026-04-10", "churn", "166.67"),
        ("2026-09-10", "reactivation", "150.00"),
    ]


@pytest.mark.parametrize(
    ("interval", "amount", "quantity", "extra", "expected"),
    [
        ("year", "120.00", 1, {}, "10.00"),
        ("quarter", "90.00", 1, {}, "30.00"),
        ("week", "12.00", 1, {}, "52.00"),
        ("day", "1.20", 1, {}, "36.50"),
        ("month", "10.00", 1, {"discount_percent": 50}, "5.00"),
        ("month", "10.00", 3, {"discount_amount": "6.00"}, "24.00"),
        ("month", "10.00", 1, {"discount_percent": 100}, None),
        ("month", "10.00", 1, {"interval_count": 2}, "5.00"),
    ],
)
def test_normalisation_to_a_month(session_factory, interval, amount, quantity, extra, expected):
    ingest(
        session_factory,
        [
            make_subscription(
                "2026-01-05", interval=interval, amount=amount, quantity=quantity, **extra
            )
        ],
    )
    assert movements(session_factory) == ([("2026-01-05", "new", expected)] if expected else [])


def test_trial_that_converts_is_new_only_when_it_converts(session_factory):
    ingest(
        session_factory,
        [
            make_subscription("2026-01-01", status="trialing"),
            make_subscription("2026-01-15", status="active"),
        ],
    )
    assert movements(session_factory) == [("2026-01-15", "new", "50.00")]


def test_churn_only_when_the_last_paying_subscription_ends(session_factory):
    ingest(
        session_factory,
        [
            make_subscription("2026-01-01", subscription_id="a", amount="40.00"),
            make_subscription("2026-01-02", subscription_id="b", amount="10.00"),
            make_subscription("2026-02-01", subscription_id="a", amount="40.00", status="canceled"),
            make_subscription("2026-03-01", subscription_id="b", amount="10.00", status="paused"),
        ],
    )
    assert movements(session_factory) == [
        ("2026-01-01", "new", "40.00"),
        ("2026-01-02", "expansion", "10.00"),
        ("2026-02-01", "contraction", "40.00"),
        ("2026-03-01", "churn", "10.00"),
    ]


@pytest.mark.parametrize(
    ("new_amount", "kind", "amount"),
    [("80.00", "expansion", "30.00"), ("20.00", "contraction", "30.00")],
)
def test_plan_switch_on_one_day_is_one_movement(session_factory, new_amount, kind, amount):
    ingest(
        session_factory,
        [
            make_subscription("2026-01-01", subscription_id="basic"),
            make_subscription("2026-02-01T09:00", subscription_id="basic", status="canceled"),
            make_subscription("2026-02-01T09:01", subscription_id="pro", amount=new_amount),
        ],
    )
    assert movements(session_factory) == [
        ("2026-01-01", "new", "50.00"),
        ("2026-02-01", kind, amount),
    ]


def test_cancel_and_resubscribe_on_the_same_day_moves_nothing(session_factory):
    ingest(
        session_factory,
        [
            make_subscription("2026-01-01", subscription_id="a"),
            make_subscription("2026-02-01T09:00", subscription_id="a", status="canceled"),
            make_subscription("2026-02-01T17:00", subscription_id="b"),
        ],
    )
    assert movements(session_factory) == [("2026-01-01", "new", "50.00")]


def test_days_are_counted_in_the_reporting_time_zone(session_factory):
    # 23:30 UTC on 31 January is already 1 February in Paris.
    ingest(
        session_factory,
        [make_subscription("2026-01-31T23:30")],
        timezone="Europe/Paris",
    )
    assert movements(session_factory) == [("2026-02-01", "new", "50.00")]


def test_foreign_currency_converts_at_the_rate_of_the_movement_day(session_factory):
    ingest(
        session_factory,
        [
            make_fx("2026-01-01", "1.10"),
            make_fx("2026-03-01", "1.20"),
            make_subscription("2026-01-15", currency="EUR", amount="100.00"),
            make_subscription("2026-03-15", currency="EUR", amount="150.00"),
            make_subscription("2026-04-15", currency="EUR", amount="150.00", status="canceled"),
        ],
    )
    assert movements(session_factory) == [
        ("2026-01-15", "new", "110.00"),
        ("2026-03-15", "expansion", "60.00"),
        ("2026-04-15", "churn", "170.00"),  # exactly what the account had, whatever the rate
    ]


def test_a_three_decimal_currency_keeps_its_third_decimal_until_converted(session_factory):
    """1.000 KWD a year is 0.083333 KWD a month: 0.27 USD at 3.25, not 0.08 KWD × 3.25 = 0.26."""
    ingest(
        session_factory,
        [
            make_fx("2026-01-01", "3.25", base="KWD"),
            make_subscription("2026-01-15", currency="KWD", amount="1.000", interval="year"),
        ],
    )
    assert movements(session_factory) == [("2026-01-15", "new", "0.27")]


def test_a_subscription_moved_to_another_account_counts_once(session_factory):
    """A CRM merges accounts: the subscription's versions now name the group account. Its MRR
    leaves the first account (churn) and arrives in the other (new), whatever the arrival order."""
    moved = make_subscription(
        "2026-03-10", account_id="acme-group", subscription_id="s1", amount="100.00"
    )
    first = make_subscription(
        "2026-01-10", account_id="acme", subscription_id="s1", amount="100.00"
    )
    ingest(session_factory, [moved])
    ingest(session_factory, [first])
    assert sorted(movements(session_factory, "acme")) == [
        ("2026-01-10", "new", "100.00"),
        ("2026-03-10", "churn", "100.00"),
    ]
    assert movements(session_factory, "acme-group") == [("2026-03-10", "new", "100.00")]
    assert kpi(session_factory, "mrr", "2026-04").current.value == Decimal("100.00")


def test_a_currency_switch_at_equal_value_is_no_movement(session_factory):
    ingest(
        session_factory,
        [
            make_fx("2026-01-01", "1.25", base="GBP"),
            make_subscription("2026-01-15", subscription_id="gbp", currency="GBP", amount="80.00"),
            make_subscription(
                "2026-02-01T10:00",
                subscription_id="gbp",
                currency="GBP",
                amount="80.00",
                status="canceled",
            ),
            make_subscription("2026-02-01T10:00", subscription_id="usd", amount="100.00"),
        ],
    )
    assert movements(session_factory) == [("2026-01-15", "new", "100.00")]


def test_missing_rate_is_a_clear_rejection_and_leaves_nothing(session_factory):
    report = ingest(session_factory, [make_subscription("2026-01-15", currency="EUR")])
    assert report.rejected == 1 and report.applied == 0
    assert "no exchange rate EUR→USD in force on 2026-01-15" in report.rejections[0].reason
    assert movements(session_factory) == []


def test_a_late_rate_rederives_movements_in_force_from_its_day(session_factory):
    ingest(
        session_factory,
        [
            make_fx("2026-01-01", "1.10"),
            make_subscription("2026-02-15", currency="EUR", amount="100.00"),
        ],
    )
    assert movements(session_factory) == [("2026-02-15", "new", "110.00")]
    ingest(session_factory, [make_fx("2026-02-01", "1.30")])
    assert movements(session_factory) == [("2026-02-15", "new", "130.00")]


def test_a_late_rate_rederives_a_switch_away_from_its_currency(session_factory):
    # The EUR version predates the rate; the switch to USD removes EUR MRR at the new rate.
    ingest(
        session_factory,
        [
            make_fx("2026-01-01", "1.10"),
            make_subscription("2026-01-15", currency="EUR", amount="100.00"),
            make_subscription("2026-03-15", currency="USD", amount="100.00"),
        ],
    )
    assert movements(session_factory) == [
        ("2026-01-15", "new", "110.00"),
        ("2026-03-15", "contraction", "10.00"),
    ]
    ingest(session_factory, [make_fx("2026-03-01", "1.30")])
    assert movements(session_factory) == [
        ("2026-01-15", "new", "110.00"),
        ("2026-03-15", "contraction", "30.00"),
    ]
