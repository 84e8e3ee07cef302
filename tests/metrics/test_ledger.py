"""Stocks and movements kept in memory per data revision (`metrics.ledger`): same answers, fresh.

The kept path and the database path must agree on every revenue and churn metric, with
breakdowns and filters; a change that can move stocks must be seen at once; one that cannot
(usage, surveys) must not throw away what is kept.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, select

from metrics import ledger
from metrics.context import MetricConfig, MetricContext
from storage.apply import IngestConfig
from storage.db import make_session_factory, read_only, session_scope
from storage.rebuild import rebuild
from storage.revisions import FAMILIES, INVOICES, STOCKS, SURVEYS, USAGE, state, token, touch
from storage.tables import DataRevision
from tests.builders import (
    cancel,
    change,
    event,
    ingest,
    kpi,
    make_account,
    make_fx,
    make_invoice,
    make_response,
    make_subscription,
    paying_accounts,
)

MOVEMENT_METRICS = (
    "mrr",
    "customers",
    "arpa",
    "net-new-mrr",
    "expansion-mrr",
    "contraction-mrr",
    "churned-mrr",
    "reactivation-mrr",
    "churn",
    "nrr",
    "grr",
    "retention",
    "clv-arpa",
    "health",
)
QUESTIONS = (
    ("2026-Q3", {}),
    ("2026", {"by": "plan"}),
    ("2026-10", {"by": "segment", "filters": [("plan", "pro")]}),
    ("2026-01-01..2026-06-30", {"filters": [("segment", "(none)")]}),
    ("2026-08-16..2026-09-15", {"by": "csm"}),  # ends on a day with movements
)


def _history(seed: int) -> list[dict]:
    """Accounts on several plans and segments that join, change, churn and come back in 2026."""
    rng = random.Random(seed)
    events: list[dict] = []
    for n in range(1, 31):
        account_id = f"acc-{n}"
        attributes = {"plan": rng.choice(["pro", "team", None]), "owner_email": f"csm{n % 3}@x.io"}
        if rng.random() < 0.7:
            attributes["segment"] = rng.choice(["smb", "enterprise"])
        start_month = rng.randint(1, 6)
        events.append(make_account(account_id, f"2026-0{start_month}-01", **attributes))
        amount = Decimal(rng.randint(10, 500))
        events.append(
            make_subscription(
                f"2026-0{start_month}-{rng.randint(1, 28):02d}",
                account_id=account_id,
                subscription_id=f"{account_id}-s",
                amount=f"{amount}.00",
            )
        )
        for month in range(start_month + 1, 12):
            roll = rng.random()
            when = f"2026-{month:02d}-{rng.randint(1, 28):02d}"
            if roll < 0.25:
                amount = Decimal(rng.randint(10, 500))
                events.append(change(account_id, when, amount=f"{amount}.00"))
            elif roll < 0.35:
                events.append(cancel(account_id, when, amount=f"{amount}.00"))
            elif roll < 0.45:
                events.append(change(account_id, when, amount=f"{amount}.00"))
    events.append(make_subscription("2026-09-15", account_id="acc-31", subscription_id="new"))
    for _ in range(60):  # NPS and CSAT answers, some on the same instant (ordered by response id)
        when = f"2026-{rng.randint(1, 11):02d}-{rng.choice([1, 15, 28]):02d}"
        kind = rng.choice(["nps", "csat"])
        score = rng.randint(0, 10) if kind == "nps" else rng.randint(1, 5)
        scale = {} if kind == "nps" else {"scale_min": 1, "scale_max": 5}
        account_id = f"acc-{rng.randint(1, 12)}"
        events.append(make_response(when, score=score, kind=kind, account_id=account_id, **scale))
    return events


def _answers(factory) -> list:
    answers = []
    for metric in MOVEMENT_METRICS:
        for period, options in QUESTIONS:
            result = kpi(factory, metric, period, **options)
            answers.append((metric, period, result.current, result.previous, result.breakdown))
    return answers


@pytest.mark.parametrize("seed", [1, 2])
def test_kept_and_database_paths_give_the_same_answers(session_factory, seed):
    report = ingest(session_factory, _history(seed))
    assert report.rejected == 0
    ledger.forget()
    kept = _answers(session_factory)
    with session_scope(session_factory) as session:
        assert token(session, STOCKS) is not None
        session.execute(delete(DataRevision))  # without a token nothing is kept or reused
    ledger.forget()
    from_database = _answers(session_factory)
    assert kept == from_database
    assert any(result != Decimal(0) for _, _, result, _, _ in kept)
    health = [current for metric, _, current, _, _ in kept if metric == "health"]
    assert any(value.value is not None for value in health)


def test_a_subscription_change_is_seen_by_the_next_question(session_factory):
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05"))
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("200.00")
    ingest(session_factory, [change("acc-1", "2026-03-01", amount="150.00")])
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("250.00")
    ingest(session_factory, [cancel("acc-2", "2026-09-30", amount="100.00")])
    result = kpi(session_factory, "churn", "2026-Q3")
    assert result.current.inputs["churned"] == 1
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("150.00")


def test_an_account_moved_to_another_plan_moves_in_the_breakdown(session_factory):
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05", plan="pro"))
    parts = {p.key: p.value.value for p in kpi(session_factory, "mrr", by="plan").breakdown}
    assert parts == {"pro": Decimal("200.00")}
    ingest(session_factory, [make_account("acc-2", "2026-06-01", plan="team")])
    parts = {p.key: p.value.value for p in kpi(session_factory, "mrr", by="plan").breakdown}
    assert parts == {"pro": Decimal("100.00"), "team": Decimal("100.00")}


def _tokens(factory) -> dict[str, str]:
    with session_scope(factory) as session:
        rows = session.execute(select(DataRevision.name, DataRevision.token))
        return {name: value for name, value in rows}


def _version(factory, family: str) -> int:
    with session_scope(factory) as session:
        found = state(session, family)
        assert found is not None
        return found.version


def test_each_family_gets_a_new_token_only_from_what_can_change_it(session_factory):
    with session_scope(session_factory) as session:  # as the migration does
        for family in FAMILIES:
            if state(session, family) is None:
                touch(session, family)
    ingest(session_factory, paying_accounts(1, amount="100.00", since="2026-01-05"))
    first = _tokens(session_factory)
    assert {STOCKS, SURVEYS} <= set(first)
    usage = event(
        "usage.recorded",
        "2026-10-01",
        {"account_id": "acc-1", "user_ids": ["u1"], "day": "2026-10-01"},
    )
    ingest(session_factory, [usage])  # marked per account (tests/metrics/test_usage_days.py)
    first = _tokens(session_factory)  # on a store emptied of tokens, usage gets its first one
    ingest(session_factory, [usage | {"id": "another"}])
    assert _tokens(session_factory) == first
    surveys = _version(session_factory, SURVEYS)
    ingest(session_factory, [make_response("2026-10-02", score=9)])
    second = _tokens(session_factory)
    assert second == first  # a response marks its account: SURVEYS is marked per account
    assert _version(session_factory, SURVEYS) == surveys + 1
    ingest(session_factory, [change("acc-1", "2026-10-03", amount="120.00")])
    third = _tokens(session_factory)
    assert third[STOCKS] != second[STOCKS] and third[SURVEYS] == second[SURVEYS]
    assert third.get(INVOICES) == second.get(INVOICES)
    ingest(session_factory, [make_invoice("2026-10-04")])
    fourth = _tokens(session_factory)
    assert fourth[INVOICES] != third.get(INVOICES)
    assert {n: fourth[n] for n in third if n != INVOICES} == {
        n: third[n] for n in third if n != INVOICES
    }
    assert first[USAGE] == second[USAGE] == third[USAGE]
    ingest(session_factory, [make_account("acc-1", plan="scale")])  # responses stay where they are
    assert _tokens(session_factory)[SURVEYS] == third[SURVEYS]
    rebuild(session_factory, config=IngestConfig(reporting_currency="USD", timezone="UTC"))
    rebuilt = _tokens(session_factory)
    assert all(rebuilt[name] not in (first[name], third[name]) for name in first)


def test_a_new_survey_answer_moves_health_at_once(session_factory):
    ingest(session_factory, paying_accounts(1, amount="100.00", since="2026-01-05"))
    ingest(session_factory, [make_response("2026-10-02", score=10)])
    assert kpi(session_factory, "health", "2026-10").current.inputs["green"] == 1
    ingest(session_factory, [make_response("2026-10-20", score=0)])
    assert kpi(session_factory, "health", "2026-10").current.inputs["red"] == 1


def _warm(factory) -> bool:
    with session_scope(factory) as session:
        return ledger.warm(MetricContext(session, MetricConfig()))


def test_warming_builds_once_per_revision(session_factory):
    ledger.forget()
    _warm(session_factory)  # a new store: the migration gave it a first token
    assert _warm(session_factory) is False
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05"))
    assert _warm(session_factory) is True
    assert _warm(session_factory) is False
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("200.00")
    ingest(session_factory, [change("acc-1", "2026-03-01", amount="150.00")])
    assert _warm(session_factory) is True
    assert kpi(session_factory, "mrr", "2026-10").value == Decimal("250.00")


def test_warming_builds_the_breakdowns_recently_asked(session_factory, monkeypatch):
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05", plan="pro"))
    ledger.forget()
    _warm(session_factory)
    assert len(kpi(session_factory, "mrr", "2026-10", by="plan").breakdown) == 1
    built: list[object] = []
    group_series = ledger._group_series
    monkeypatch.setattr(
        ledger, "_group_series", lambda ctx: built.append(ctx.scope) or group_series(ctx)
    )
    ingest(session_factory, [make_account("acc-2", "2026-06-01", plan="team")])
    assert _warm(session_factory) is True
    assert [scope.by for scope in built] == [None, "plan"]  # all accounts, then by plan
    built.clear()
    parts = {
        p.key: p.value.value for p in kpi(session_factory, "mrr", "2026-10", by="plan").breakdown
    }
    assert parts == {"pro": Decimal("100.00"), "team": Decimal("100.00")}
    assert built == []  # the question found them built


INVOICE_METRICS = ("clv", "net-clv", "arpu")


def _invoice_history(seed: int) -> list[dict]:
    """Paying accounts, invoices in two currencies on many days, and an FX rate per month."""
    rng = random.Random(seed)
    events = paying_accounts(12, amount="80.00", since="2025-06-01")
    events += [make_fx(f"2025-{m:02d}-01", f"1.{m:02d}") for m in range(6, 13)]
    events += [make_fx(f"2026-{m:02d}-01", f"1.{m + 12:02d}") for m in range(1, 13)]
    for _ in range(150):
        when = f"{rng.choice([2025, 2026])}-{rng.randint(6, 12):02d}-{rng.randint(1, 28):02d}"
        events.append(
            make_invoice(
                when,
                account_id=f"acc-{rng.randint(1, 12)}",
                amount=f"{rng.randint(1, 90_000)}.{rng.randint(0, 99):02d}",
                currency=rng.choice(["USD", "EUR"]),
            )
        )
    events.append(cancel("acc-3", "2026-02-10", amount="80.00"))  # some churn: a CLV lifetime
    return events


def _invoice_answers(factory) -> list:
    periods = ("2026-10", "2026-Q3", "2025-12-31..2026-01-01", "2026-06-15", "2027-03")
    return [
        (metric, period, kpi(factory, metric, period).current)
        for metric in INVOICE_METRICS
        for period in periods
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_invoice_totals_give_the_database_answers(session_factory, seed):
    # Without a breakdown or filter, a period's paid invoices are summed from a copy kept per
    # revision of the invoices (`metrics.invoices.totals`); the SQL sums them otherwise.
    assert ingest(session_factory, _invoice_history(seed)).rejected == 0
    ledger.forget()
    kept = _invoice_answers(session_factory)
    with session_scope(session_factory) as session:
        assert token(session, INVOICES) is not None
        session.execute(delete(DataRevision))
    ledger.forget()
    assert kept == _invoice_answers(session_factory)
    assert any(value.value is not None and value.value != 0 for _, _, value in kept)
    assert any(value.value is None for _, _, value in kept)  # a period without invoices


def test_a_new_invoice_and_a_rate_correction_are_seen_by_the_next_question(session_factory):
    ingest(session_factory, paying_accounts(1, amount="100.00", since="2026-01-05"))
    ingest(session_factory, [make_fx("2026-10-01", "1.10"), make_invoice("2026-10-02")])
    arpu = kpi(session_factory, "arpu", "2026-10").value
    assert arpu == Decimal("50.00")
    ingest(session_factory, [make_invoice("2026-10-03", amount="100.00", currency="EUR")])
    assert kpi(session_factory, "arpu", "2026-10").value == Decimal("160.00")
    ingest(session_factory, [make_fx("2026-10-01", "1.20")])  # converts the EUR invoice again
    assert kpi(session_factory, "arpu", "2026-10").value == Decimal("170.00")


def test_a_value_of_a_newer_revision_replaces_the_older_one_of_the_same_slot():
    """Under a stream of webhooks each revision's copies would otherwise stay until pushed out,
    each as large as the data."""
    kept = ledger._Kept(8)
    kept.get(("movements", "token-1"), lambda: "old copy", slot="movements")
    kept.get(("accounts", "token-1"), lambda: "accounts", slot="accounts")
    assert kept.get(("movements", "token-2"), lambda: "new copy", slot="movements") == "new copy"
    assert kept.peek(("movements", "token-1")) is None
    assert kept.peek(("movements", "token-2")) == "new copy"
    assert kept.peek(("accounts", "token-1")) == "accounts"  # another slot stays
    assert kept.get(("movements", "token-2"), lambda: "recomputed", slot="movements") == "new copy"


def test_a_question_that_read_older_revisions_does_not_push_out_a_newer_copy():
    """A slow question still at the older revision asks again: its copy is kept beside the newer
    one, which stays for the questions after it (each copy is a full read of a table)."""
    kept = ledger._Kept(8)
    computed: list[str] = []

    def compute(name: str) -> Any:
        return lambda: computed.append(name) or name

    kept.get(("accounts", "token-1"), compute("old"), slot="accounts", stamp=1)
    kept.get(("accounts", "token-2"), compute("new"), slot="accounts", stamp=3)
    kept.get(("accounts", "token-1"), compute("old"), slot="accounts", stamp=2)
    kept.get(("accounts", "token-1"), compute("old again"), slot="accounts", stamp=2)
    kept.get(("accounts", "token-2"), compute("new again"), slot="accounts", stamp=4)
    assert computed == ["old", "new", "old"]  # not "new again": the newer copy stayed


def test_a_question_reads_every_familys_revision_at_its_first_read(session_factory, engine):
    """Its stamp orders it among questions for every family: a question that read invoices
    first, and stocks only after they changed, would hold a newer stocks revision than a
    question stamped after it, whose older copy would then push out the newer one."""
    ingest(session_factory, paying_accounts(1, amount="100.00", since="2026-01-05"))
    reader = make_session_factory(read_only(engine))  # SQLite: no wait for the writer
    with session_scope(reader) as session:
        asked = MetricContext(session, MetricConfig())
        ledger.revision(asked, INVOICES)
        with session_scope(session_factory) as writer:
            touch(writer, STOCKS)
        stocks = ledger.revision(asked, STOCKS)
    with session_scope(session_factory) as session:
        now = state(session, STOCKS)
    assert stocks is not None and now is not None
    assert stocks[1] != now.token  # the question kept what it read first
