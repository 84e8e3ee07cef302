"""The account card, a CSM's book, the team's headlines and account lookup (metrics/accounts)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from metrics.accounts import (
    MAX_BOOK_ACCOUNTS,
    RenewalDue,
    SurveyAnswer,
    UnknownAccount,
    account_card,
    book,
    find_accounts,
    team_headlines,
)
from metrics.context import MetricConfig
from metrics.query import BadQuery, QueryError
from storage.db import session_scope
from tests.builders import (
    NOW,
    cancel,
    event,
    ingest,
    make_account,
    make_fx,
    make_response,
    make_subscription,
    paying_accounts,
)

D = Decimal
OWNER = "Camille.Martin@Example.com"  # stored lowercased by ingestion
CONFIG = MetricConfig()  # USD, UTC: today is 2026-11-23


def renewal(
    contract_id: str, account_id: str, due_on: str, amount: str, outcome: str = "pending"
) -> dict[str, Any]:
    """A renewal.updated event (its currency is the account's)."""
    data = {
        "contract_id": contract_id,
        "account_id": account_id,
        "due_on": due_on,
        "amount": amount,
        "outcome": outcome,
    }
    return event("renewal.updated", "2026-11-01", data)


def scenario() -> list[dict[str, Any]]:
    """Four accounts of Camille's (red, yellow, green, unscored) and a few of nobody's."""
    jane = {"email": "jane@acme.example", "name": "Jane Doe", "phone": "+1 212 555 0100"}
    return [
        make_fx("2026-01-01", "1.10"),  # 1 EUR = 1.10 USD
        # Acme: 1,200 a year; NPS 9 then 3; CSAT 4 of 5; a renewal on 10 Dec → yellow 61.5
        make_account(
            "acme",
            "2026-01-02",
            name="Acme Corp",
            plan="scale",
            segment="enterprise",
            owner_email=OWNER,
            contacts=[{"email": "ops@acme.example"}, jane],
        ),
        make_subscription(
            "2026-01-10",
            account_id="acme",
            subscription_id="acme-y",
            amount="1200.00",
            interval="year",
        ),
        make_response("2026-06-01", score=9, account_id="acme", comment="Great"),
        make_response(
            "2026-11-20",
            score=3,
            account_id="acme",
            comment="Too slow",
            respondent_name="Jane Doe",
            respondent_email="jane@acme.example",
        ),
        make_response("2026-11-10", score=4, kind="csat", account_id="acme"),
        renewal("c-acme-1", "acme", "2026-12-10", "1200.00"),
        renewal("c-acme-2", "acme", "2027-02-01", "1300.00"),  # beyond 30 days
        # Bistro: 100 EUR a month = 110.00 USD; NPS 7; renewal of 1,000 EUR → green 70
        make_account("bistro", name="Bistro Dupont", currency="EUR", owner_email=OWNER.upper()),
        make_subscription(
            "2026-02-01",
            account_id="bistro",
            subscription_id="bistro-m",
            amount="100.00",
            currency="EUR",
        ),
        make_response("2026-11-18", score=7, account_id="bistro"),
        renewal("c-bistro", "bistro", "2026-12-01", "1000.00"),
        # Red Co: 50 then 20 a month (shrinking), NPS 0 → red 15
        make_account("red", name="Red Co", owner_email=OWNER),
        make_subscription("2026-01-05", account_id="red", subscription_id="red-m", amount="50.00"),
        make_subscription("2026-11-01", account_id="red", subscription_id="red-m", amount="20.00"),
        make_response("2026-10-20", score=1, account_id="red"),  # a detractor, 34 days ago
        make_response("2026-11-15", score=0, account_id="red", comment="Nothing works"),
        renewal("c-red", "red", "2026-12-05", "600.00", outcome="churned"),
        make_account("empty", name="Empty Ltd", owner_email=OWNER),  # no signal at all
        # Not Camille's
        make_account("acme-eu", name="Acme Corp Europe", owner_email="sam@example.com"),
        make_subscription("2026-01-05", account_id="acme-eu", subscription_id="eu", amount="30.00"),
        make_response("2026-11-21", score=2, account_id="acme-eu"),
        renewal("c-eu", "acme-eu", "2026-12-02", "360.00"),
        make_account("sge", name="Société Générale Énergie"),
        make_account("pure", name="100% Pure_Data"),
        *paying_accounts(1, amount="10.00", since="2026-01-05", prefix="gone"),
        cancel("gone-1", "2026-10-15", amount="10.00"),
    ]


@pytest.fixture
def factory(session_factory: Any) -> Any:
    """The session factory, with the scenario ingested."""
    report = ingest(session_factory, scenario())
    assert report.rejected == 0
    return session_factory


def names(factory: Any, text: str, **options: Any) -> list[str]:
    with session_scope(factory) as session:
        return [account.name for account in find_accounts(session, text, **options)]


def test_card_of_an_account_with_a_yearly_subscription(factory):
    with session_scope(factory) as session:
        card = account_card(session, account_id="acme", config=CONFIG, now=NOW)
    assert (card.account_id, card.name, card.plan, card.segment) == (
        "acme",
        "Acme Corp",
        "scale",
        "enterprise",
    )
    assert card.owner_email == "camille.martin@example.com"
    assert (card.currency, card.reporting_currency) == ("USD", "USD")
    assert card.mrr == D("100.00")  # 1,200 a year
    assert card.customer_since == date(2026, 1, 10)
    assert card.nps == SurveyAnswer(
        3, 0, 10, date(2026, 11, 20), "Too slow", "Jane Doe", "jane@acme.example"
    )
    assert card.previous_nps is not None
    assert (card.previous_nps.score, card.previous_nps.day) == (9, date(2026, 6, 1))
    assert card.csat is not None and (card.csat.score, card.csat.scale_max) == (4, 5)
    assert card.renewal == RenewalDue("acme", "Acme Corp", "c-acme-1", date(2026, 12, 10), D(1200))
    assert [(c.name, c.email, c.phone) for c in card.contacts] == [
        ("Jane Doe", "jane@acme.example", "+1 212 555 0100"),
        (None, "ops@acme.example", None),
    ]
    assert card.contacts_total == 2
    # NPS 3 → 30, MRR flat → 70, CSAT 1 of 1 positive → 100; no usage: weights .25 .25 .15 rescaled
    health = card.health
    assert health.score == D("61.5") and health.band == "yellow"
    assert {name: s.score for name, s in health.signals.items()} == {
        "nps": D(30),
        "mrr_trend": D(70),
        "csat": D(100),
    }
    assert health.signals["nps"].weight == D("0.25") / D("0.65")
    assert card.as_of == date(2026, 11, 23)
    assert card.data_as_of == datetime(2026, 11, 21, 12, tzinfo=UTC)


def test_card_converts_money_to_the_reporting_currency(factory):
    with session_scope(factory) as session:
        card = account_card(session, account_id="bistro", config=CONFIG, now=NOW)
    assert card.currency == "EUR"
    assert card.mrr == D("110.00")  # 100 EUR at 1.10
    assert card.renewal is not None and card.renewal.amount == D("1100.00")
    assert card.previous_nps is None and card.csat is None
    assert (card.health.score, card.health.band) == (D(70), "green")
    assert card.contacts == () and card.contacts_total == 0


def test_card_of_an_account_without_data(factory):
    with session_scope(factory) as session:
        card = account_card(session, account_id="empty", config=CONFIG, now=NOW)
    assert card.mrr == D("0.00")
    assert card.customer_since is None and card.nps is None and card.renewal is None
    assert card.health.score is None and card.health.band is None


def test_card_counts_answers_up_to_today_in_the_configured_zone(factory):
    ingest(factory, [make_response("2026-11-23T20:00", score=10, account_id="acme")])
    with session_scope(factory) as session:
        utc = account_card(session, account_id="acme", config=CONFIG, now=NOW)
        tomorrow = MetricConfig(timezone="Pacific/Kiritimati")  # UTC+14: already 24 Nov
        kiritimati = account_card(session, account_id="acme", config=tomorrow, now=NOW)
    assert utc.nps is not None and utc.nps.score == 10  # 20:00 UTC on the 23rd is today
    assert kiritimati.as_of == date(2026, 11, 24)
    with session_scope(factory) as session:
        before = account_card(
            session, account_id="acme", config=CONFIG, now=datetime(2026, 11, 19, tzinfo=UTC)
        )
    assert before.nps is not None and before.nps.score == 9  # the 3 of the 20th is later
    assert before.previous_nps is None


def test_book_lists_red_first_then_by_mrr_with_totals(factory):
    with session_scope(factory) as session:
        found = book(session, owner_email="CAMILLE.martin@example.com ", config=CONFIG, now=NOW)
    assert found.owner_email == "camille.martin@example.com"
    assert [(a.name, a.mrr, a.health.score, a.health.band) for a in found.accounts] == [
        ("Red Co", D("20.00"), D(15), "red"),  # 0.5 × NPS 0 + 0.5 × shrinking 30
        ("Acme Corp", D("100.00"), D("61.5"), "yellow"),
        ("Bistro Dupont", D("110.00"), D(70), "green"),
        ("Empty Ltd", D("0.00"), None, None),
    ]
    assert (found.total_accounts, found.customers, found.mrr) == (4, 3, D("230.00"))
    assert found.bands == {"red": 1, "yellow": 1, "green": 1, "none": 1}
    assert found.currency == "USD" and found.as_of == date(2026, 11, 23)


def test_book_renewals_due_in_the_window_and_recent_detractors(factory):
    with session_scope(factory) as session:
        found = book(session, owner_email=OWNER, config=CONFIG, now=NOW)
        shorter = book(session, owner_email=OWNER, config=CONFIG, now=NOW, renewal_days=10)
    # pending only (Red's is churned), due by 23 Dec, Camille's only (not c-eu); EUR converted
    assert [(r.account_name, r.due_on, r.amount) for r in found.renewals] == [
        ("Bistro Dupont", date(2026, 12, 1), D("1100.00")),
        ("Acme Corp", date(2026, 12, 10), D("1200.00")),
    ]
    assert found.renewals_total == 2 and found.renewal_days == 30
    assert [r.contract_id for r in shorter.renewals] == ["c-bistro"]
    # NPS ≤ 6 in the 30 days ending today, newest first; Red's 1 of 20 Oct is older
    assert [(d.account_name, d.answer.score, d.answer.comment) for d in found.detractors] == [
        ("Acme Corp", 3, "Too slow"),
        ("Red Co", 0, "Nothing works"),
    ]
    assert found.detractors_total == 2


def test_book_keeps_its_size_bounded_and_its_totals_true(session_factory):
    events = []
    for n in range(1, 56):
        account_id = f"big-{n}"
        events.append(make_account(account_id, name=f"Big {n:02}", owner_email="lee@example.com"))
        events.append(
            make_subscription(
                "2026-01-05", account_id=account_id, subscription_id=account_id, amount=f"{n}.00"
            )
        )
    ingest(session_factory, events)
    with session_scope(session_factory) as session:
        found = book(session, owner_email="lee@example.com", config=CONFIG, now=NOW)
    assert len(found.accounts) == MAX_BOOK_ACCOUNTS
    assert found.total_accounts == 55 and found.customers == 55
    assert found.mrr == D(sum(range(1, 56)))  # 1,540.00
    assert found.accounts[0].name == "Big 55" and found.accounts[-1].name == "Big 06"
    assert found.bands == {"red": 0, "yellow": 0, "green": 55, "none": 0}  # flat MRR: 70


def test_book_of_someone_who_owns_nothing_is_empty(factory):
    with session_scope(factory) as session:
        found = book(session, owner_email="nobody@example.com", config=CONFIG, now=NOW)
    assert found.accounts == () and found.total_accounts == 0 and found.mrr == D("0.00")
    assert found.renewals == () and found.detractors == ()


def test_team_headlines(factory):
    with session_scope(factory) as session:
        results = team_headlines(session, config=CONFIG, now=NOW, locale="fr")
    by_metric = {r.metric: r for r in results}
    assert list(by_metric) == ["mrr", "customers", "churn", "nps", "csat"]
    assert by_metric["mrr"].value == D("260.00")  # 100 + 110 + 20 + 30
    assert by_metric["mrr"].period.start == date(2026, 11, 23)
    assert by_metric["customers"].value == D(4)
    churn = by_metric["churn"]  # October: gone-1 left, 1 of the 5 customers at start
    assert (churn.period.start, churn.period.end) == (date(2026, 10, 1), date(2026, 10, 31))
    assert churn.value == D(20)
    nps = by_metric["nps"]  # 26 Aug – 23 Nov: 7, 3, 2, 1, 0 → 0 promoters, 4 detractors of 5
    assert (nps.period.start, nps.period.end) == (date(2026, 8, 26), date(2026, 11, 23))
    assert nps.value == D(-80)
    assert by_metric["csat"].value == D(100)
    assert by_metric["csat"].label == "CSAT" and by_metric["customers"].label == "Clients payants"


def test_find_by_id_then_exact_name_then_contained_text(factory):
    assert names(factory, "acme") == ["Acme Corp"]  # the id
    assert names(factory, "  ACME   corp ") == ["Acme Corp"]  # exact name only, not Europe
    assert names(factory, "corp") == ["Acme Corp", "Acme Corp Europe"]  # shorter first
    assert names(factory, "co") == ["Red Co", "Acme Corp", "Acme Corp Europe"]
    assert names(factory, "co", limit=2) == ["Red Co", "Acme Corp"]
    assert names(factory, "acme corp e") == ["Acme Corp Europe"]


def test_find_ignores_nul_characters_on_every_backend(factory):
    assert names(factory, "acme\x00") == ["Acme Corp"]  # PostgreSQL refuses NUL in text
    assert names(factory, "Red\x00 Co") == ["Red Co"]


def test_find_treats_like_wildcards_as_text(factory):
    assert names(factory, "%") == ["100% Pure_Data"]
    assert names(factory, "_") == ["100% Pure_Data"]


def test_find_folds_case_and_accents_on_every_backend(factory):
    assert names(factory, "SOCIÉTÉ GÉNÉRALE ÉNERGIE") == ["Société Générale Énergie"]
    assert names(factory, "societe generale") == ["Société Générale Énergie"]
    assert names(factory, "énergie") == ["Société Générale Énergie"]


def test_unknown_account_suggests_the_closest_names(factory):
    with session_scope(factory) as session, pytest.raises(UnknownAccount) as raised:
        find_accounts(session, "Acme Crop")
    error = raised.value
    assert isinstance(error, QueryError) and error.name == "Acme Crop"
    assert error.suggestions[0] == "Acme Corp"
    assert "Did you mean `Acme Corp`" in error.message
    assert error.example == "/kpi account Acme Corp"


def test_unknown_account_without_anything_close(factory):
    with session_scope(factory) as session:
        with pytest.raises(UnknownAccount) as raised:
            find_accounts(session, "' OR 1=1 --")
        assert raised.value.suggestions == ()
        assert "give its name or its id" in raised.value.message
        with pytest.raises(UnknownAccount):
            find_accounts(session, "x" * 5000)
        with pytest.raises(UnknownAccount):
            account_card(session, account_id="nope", config=CONFIG, now=NOW)
        with pytest.raises(BadQuery):
            find_accounts(session, "   ")
