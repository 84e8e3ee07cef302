"""Usage days kept in memory per account (`metrics.usage_days`): SQL's answers, fresh at once.

Usage changes with every product event, so each ingestion marks the accounts it changed
(`storage.revisions.record_changes`) and the kept copy reloads just those on the next question.
These tests show that the kept path and the SQL path agree on stickiness and health (breakdowns,
filters, an account without an account row, users leaving a day), that a usage event is seen by the
very next question without warming again, and how marks and tokens move.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete

from metrics import health, ledger, warming
from metrics.context import MetricConfig, MetricContext
from metrics.usage_days import kept_usage
from storage import revisions
from storage.db import session_scope
from storage.revisions import STOCKS, SURVEYS, USAGE, changed_since, state
from storage.tables import DataRevision
from tests.builders import (
    change,
    event,
    ingest,
    kpi,
    make_account,
    make_response,
    paying_accounts,
)

FIRST_DAY = date(2026, 8, 1)
QUESTIONS = (
    ("2026-10", {}),
    ("2026-Q3", {"by": "plan"}),
    ("2026-11", {"filters": [("segment", "(none)")]}),
    ("2026-09-01..2026-09-20", {"by": "segment"}),
    ("2026-11-01..2026-12-15", {"by": "csm", "filters": [("plan", "pro")]}),  # ends after usage
)


def recorded(account_id: str, day: date, user_ids: list[str], **extra: Any) -> dict[str, Any]:
    """A usage.recorded event: these users of the account were active on `day`."""
    data = {"account_id": account_id, "day": day.isoformat(), "user_ids": user_ids, **extra}
    return event("usage.recorded", day.isoformat(), data)


def _history(seed: int) -> list[dict[str, Any]]:
    """Twelve accounts with plans, segments and owners, most paying, with usage from August."""
    rng = random.Random(seed)
    events = paying_accounts(8, amount="100.00", since="2026-01-05")
    for n in range(1, 13):
        attributes = {"plan": rng.choice(["pro", "team", None]), "owner_email": f"csm{n % 3}@x.io"}
        if rng.random() < 0.6:
            attributes["segment"] = rng.choice(["smb", "enterprise"])
        events.append(make_account(f"acc-{n}", "2026-01-02", **attributes))
    for _ in range(9):
        events.append(
            make_response(
                f"2026-{rng.randint(8, 11):02d}-10",
                score=rng.randint(0, 10),
                account_id=f"acc-{rng.randint(1, 8)}",
            )
        )
    accounts = [f"acc-{n}" for n in range(1, 13)] + ["no-row-1"]  # usage of an unknown account
    for account_id in accounts:
        users = [f"{account_id}-u{k}" for k in range(rng.randint(2, 12))]
        for offset in range(0, 110):
            if rng.random() < 0.35:
                continue
            active = rng.sample(users, rng.randint(1, len(users)))
            events.append(recorded(account_id, FIRST_DAY + timedelta(days=offset), active))
    # Full reports that drop users of a day already stored: the coverage is re-derived.
    events.append(recorded("acc-1", date(2026, 10, 20), ["acc-1-u0"]))
    events.append(recorded("acc-2", date(2026, 9, 10), []))
    return events


def _answers(factory) -> list[Any]:
    answers = []
    for metric in ("stickiness", "health"):
        for period, options in QUESTIONS:
            result = kpi(factory, metric, period, **options)
            answers.append((metric, period, result.current, result.previous, result.breakdown))
    return answers


def _warm(factory) -> None:
    with session_scope(factory) as session:
        warming.warm(MetricContext(session, MetricConfig()))


def _is_kept(factory) -> bool:
    with session_scope(factory) as session:
        return kept_usage(MetricContext(session, MetricConfig())) is not None


def _tokens_exist(factory) -> None:
    """Give every family a token, as the migration does (PostgreSQL tests start without)."""
    with session_scope(factory) as session:
        for family in revisions.FAMILIES:
            if state(session, family) is None:
                revisions.touch(session, family)


@pytest.mark.parametrize("seed", [1, 2])
def test_kept_and_database_paths_give_the_same_answers(session_factory, seed):
    _tokens_exist(session_factory)
    # The history arrives in two parts: the second is marked per account, not a new token.
    history = _history(seed)
    assert ingest(session_factory, history[: len(history) // 2]).rejected == 0
    ledger.forget()
    _warm(session_factory)
    _answers(session_factory)  # what the answers keep is then patched for the marked accounts
    assert ingest(session_factory, history[len(history) // 2 :]).rejected == 0
    assert _is_kept(session_factory)  # refreshed for the accounts of the second part
    kept = _answers(session_factory)
    with session_scope(session_factory) as session:
        session.execute(delete(DataRevision))  # without a token nothing is kept or reused
    ledger.forget()
    assert not _is_kept(session_factory)
    assert kept == _answers(session_factory)
    assert any(current.value is not None for metric, _, current, _, _ in kept)


def test_a_usage_event_is_seen_by_the_next_question_without_warming(session_factory):
    _tokens_exist(session_factory)
    days = [date(2026, 10, 2) + timedelta(days=n) for n in range(30)]
    ingest(session_factory, [recorded("acc-1", day, ["a", "b"]) for day in days])
    ledger.forget()
    _warm(session_factory)
    before = kpi(session_factory, "stickiness", "2026-10")
    assert before.current.inputs == {"dau": 2, "mau": 2}
    ingest(session_factory, [recorded("acc-1", days[-1], ["c"], merge=True)])
    after = kpi(session_factory, "stickiness", "2026-10")
    assert after.current.inputs["mau"] == 3
    assert str(after.current.inputs["dau"]) == "2.03"  # 61 user-days over 30
    ingest(session_factory, [recorded("acc-1", days[-1], ["a"])])  # b and c were not active
    assert kpi(session_factory, "stickiness", "2026-10").current.inputs["mau"] == 2
    assert _is_kept(session_factory)


def test_health_follows_usage_without_warming(session_factory):
    _tokens_exist(session_factory)
    ingest(session_factory, paying_accounts(1, amount="100.00", since="2026-01-05"))
    days = [date(2026, 10, 2) + timedelta(days=n) for n in range(30)]
    users = [f"u{n}" for n in range(10)]
    ingest(session_factory, [recorded("acc-1", day, users[:1]) for day in days])
    ledger.forget()
    _warm(session_factory)
    # 1 of 1 user a day: stickiness 100 %, usage scores 100; MRR flat scores 70: (35 + 17.5) / 0.6.
    assert kpi(session_factory, "health", "2026-10").value == Decimal("87.5")
    # 10 users, 39 user-days: stickiness 13 %, usage scores 26: (9.1 + 17.5) / 0.6 = 44.3.
    ingest(session_factory, [recorded("acc-1", days[0], users)])
    result = kpi(session_factory, "health", "2026-10")
    assert result.value == Decimal("44.3") and result.current.inputs["yellow"] == 1
    assert _is_kept(session_factory)


def test_usage_marks_its_accounts_and_keeps_the_token(session_factory, monkeypatch):
    _tokens_exist(session_factory)
    with session_scope(session_factory) as session:
        before = {family: state(session, family) for family in revisions.FAMILIES}
    ingest(
        session_factory,
        [recorded("acc-2", date(2026, 10, 1), ["u"]), recorded("acc-1", date(2026, 10, 1), ["u"])],
    )
    with session_scope(session_factory) as session:
        after = {family: state(session, family) for family in revisions.FAMILIES}
        assert after[USAGE].token == before[USAGE].token
        assert after[USAGE].version == before[USAGE].version + 1
        assert sorted(changed_since(session, USAGE, before[USAGE].version)) == ["acc-1", "acc-2"]
        assert changed_since(session, USAGE, after[USAGE].version) == []
    assert after[STOCKS] == before[STOCKS] and after[SURVEYS] == before[SURVEYS]
    monkeypatch.setattr(revisions, "MARK_LIMIT", 1)  # a bulk change renews the token instead
    ingest(
        session_factory,
        [recorded("acc-3", date(2026, 10, 1), ["u"]), recorded("acc-4", date(2026, 10, 1), ["u"])],
    )
    with session_scope(session_factory) as session:
        bulk = state(session, USAGE)
        assert bulk is not None and bulk.token != after[USAGE].token
        assert changed_since(session, USAGE, after[USAGE].version) == []


def test_after_a_bulk_change_questions_read_sql_until_warmed(session_factory, monkeypatch):
    _tokens_exist(session_factory)
    days = [date(2026, 10, 2) + timedelta(days=n) for n in range(30)]
    ingest(session_factory, [recorded("acc-1", day, ["a"]) for day in days])
    ledger.forget()
    _warm(session_factory)
    monkeypatch.setattr(revisions, "MARK_LIMIT", 1)
    ingest(
        session_factory,
        [recorded("acc-1", days[-1], ["a", "b"]), recorded("acc-2", days[-1], ["c"])],
    )
    assert not _is_kept(session_factory)  # held for the old token: never read
    assert kpi(session_factory, "stickiness", "2026-10").current.inputs["mau"] == 3
    _warm(session_factory)
    assert _is_kept(session_factory)
    assert kpi(session_factory, "stickiness", "2026-10").current.inputs["mau"] == 3


def test_the_warmer_computes_the_health_of_recently_asked_days_again(session_factory, monkeypatch):
    _tokens_exist(session_factory)
    ingest(session_factory, paying_accounts(2, amount="100.00", since="2026-01-05"))
    days = [date(2026, 10, 2) + timedelta(days=n) for n in range(30)]
    ingest(session_factory, [recorded("acc-1", day, ["a"]) for day in days])
    ledger.forget()
    _warm(session_factory)
    asked = kpi(session_factory, "health", "2026-10")
    computed: list[int] = []
    scores = health._scores
    monkeypatch.setattr(health, "_scores", lambda *a: computed.append(1) or scores(*a))
    ingest(session_factory, [change("acc-2", "2026-10-15", amount="80.00")])  # a new stocks token
    _warm(session_factory)
    assert computed  # the warmer computed the asked days again...
    computed.clear()
    again = kpi(session_factory, "health", "2026-10")
    assert computed == []  # ...so the question did not
    assert again.current.inputs != asked.current.inputs  # acc-2 shrank: its trend scores 30
