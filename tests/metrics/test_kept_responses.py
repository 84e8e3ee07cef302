"""Survey responses kept in memory per account (`metrics.responses`): SQL's answers, fresh at once.

Survey events mark the accounts they change (`storage.revisions`: `SURVEYS` is marked per account),
and what is kept (each account's responses, health's NPS and CSAT scores per day) is patched for
just those accounts on the next question. A response may move between accounts (an update that
names another account, or none): both the account it left and the one it joined are marked.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from sqlalchemy import delete

from metrics import ledger, warming
from metrics.context import MetricConfig, MetricContext
from metrics.responses import kept_responses
from storage import revisions
from storage.apply import IngestConfig
from storage.db import make_session_factory, read_only, session_scope
from storage.ingest import ingest_events
from storage.revisions import SURVEYS, state
from storage.tables import DataRevision
from tests.builders import event, ingest, kpi, make_account, paying_accounts

QUESTIONS = (
    ("health", "2026-10", {}),
    ("health", "2026-Q3", {"by": "plan"}),
    ("health", "2026-11", {"filters": [("plan", "pro")]}),
    ("nps", "2026-10", {}),
    ("csat", "2026-Q4", {"by": "plan"}),
)


def response(response_id: str, when: str, **data: Any) -> dict[str, Any]:
    """A survey.responded event of `response_id` (a later one with the same id updates it)."""
    body = {"response_id": response_id, **data}
    return event("survey.responded", when, body) | {"id": f"{response_id}@{when}:{data}"}


def _history(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Eight paying accounts with contacts, domains and plans, responses from August; then
    new responses and updates that move responses to another account, to none, or back."""
    rng = random.Random(seed)
    setup = paying_accounts(8, amount="100.00", since="2026-01-05")
    for n in range(1, 9):
        setup.append(
            make_account(
                f"acc-{n}",
                "2026-01-02",
                plan=rng.choice(["pro", "team"]),
                domains=[f"acc{n}.example"],
                contacts=[{"email": f"ceo@acc{n}.example"}],
            )
        )

    def answer(response_id: str) -> dict[str, Any]:
        kind = rng.choice(["nps", "csat"])
        data: dict[str, Any] = {
            "kind": kind,
            "score": rng.randint(0, 10) if kind == "nps" else rng.randint(1, 5),
        }
        who = rng.random()
        if who < 0.5:
            data["account_id"] = f"acc-{rng.randint(1, 8)}"
        elif who < 0.9:
            data["respondent_email"] = f"someone@acc{rng.randint(1, 8)}.example"
        else:
            data["respondent_email"] = "nobody@elsewhere.example"  # unattributed
        when = f"2026-{rng.randint(8, 11):02d}-{rng.randint(1, 28):02d}T10:00:00Z"
        return response(response_id, when, **data)

    first = [answer(f"r{n}") for n in range(40)]
    later = [answer(f"r{n}") for n in rng.sample(range(40), 15)]  # updates, often moved
    later += [answer(f"r{n}") for n in range(40, 55)]
    for update in later:  # an update is newer than the version it replaces
        update["occurred_at"] = update["occurred_at"].replace("T10:", "T11:")
    return setup + first, later


def _answers(factory) -> list[Any]:
    answers = []
    for metric, period, options in QUESTIONS:
        result = kpi(factory, metric, period, **options)
        answers.append((metric, period, result.current, result.previous, result.breakdown))
    return answers


def _tokens_exist(factory) -> None:
    """Give every family a token, as the migration does (PostgreSQL tests start without)."""
    with session_scope(factory) as session:
        for family in revisions.FAMILIES:
            if state(session, family) is None:
                revisions.touch(session, family)


def _surveys(factory) -> tuple[str, int]:
    with session_scope(factory) as session:
        found = state(session, SURVEYS)
        assert found is not None
        return found.token, found.version


def _kept(factory) -> Any:
    with session_scope(factory) as session:
        return kept_responses(MetricContext(session, MetricConfig()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_patched_responses_give_what_reading_them_again_gives(session_factory, seed):
    _tokens_exist(session_factory)
    history, later = _history(seed)
    assert ingest(session_factory, history).rejected == 0
    ledger.forget()
    with session_scope(session_factory) as session:
        warming.warm(MetricContext(session, MetricConfig()))
    _answers(session_factory)  # what the answers keep is then patched for the marked accounts
    token, version = _surveys(session_factory)
    for part in (later[:10], later[10:]):
        assert ingest(session_factory, part).rejected == 0
    assert _surveys(session_factory)[0] == token  # marked, not renewed: the patch path is taken
    assert _surveys(session_factory)[1] == version + 2
    patched = _kept(session_factory)
    kept = _answers(session_factory)
    ledger.forget()
    assert _kept(session_factory) == patched  # read again whole: the same copy
    with session_scope(session_factory) as session:
        session.execute(delete(DataRevision))  # without a token nothing is kept or reused
    ledger.forget()
    assert kept == _answers(session_factory)
    assert any(current.value is not None for metric, _, current, _, _ in kept)


def _r1_kept_under_acc_1(factory, accounts: int) -> None:
    """`accounts` paying accounts, and response r1 (NPS 2) of acc-1, kept by a reader."""
    _tokens_exist(factory)
    ingest(factory, paying_accounts(accounts, amount="100.00", since="2026-01-05"))
    ingest(
        factory, [response("r1", "2026-10-05T10:00:00Z", kind="nps", score=2, account_id="acc-1")]
    )
    ledger.forget()
    assert _kept(factory).nps.keys() == {"acc-1"}


def test_a_response_moved_to_another_account_leaves_the_first(session_factory):
    _r1_kept_under_acc_1(session_factory, accounts=2)
    moved = response("r1", "2026-10-05T11:00:00Z", kind="nps", score=2, account_id="acc-2")
    ingest(session_factory, [moved])
    assert _kept(session_factory).nps.keys() == {"acc-2"}


def test_two_transactions_moving_one_response_mark_every_account_it_left(session_factory, engine):
    """T1 moves r1 from acc-1 to acc-2 and has not committed; T2 moves it on to acc-3. T2 must
    read the owner after T1's commit (acc-2), or no one marks acc-2, and a question asked
    between the two commits keeps r1 under acc-2 for good."""
    _r1_kept_under_acc_1(session_factory, accounts=3)
    config = IngestConfig(reporting_currency="USD", timezone="UTC")
    first = session_factory()
    moved = response("r1", "2026-10-05T11:00:00Z", kind="nps", score=3, account_id="acc-2")
    ingest_events(first, [moved], config=config)
    applied, release = threading.Event(), threading.Event()

    def second() -> None:
        with session_scope(session_factory) as session:
            again = response("r1", "2026-10-05T12:00:00Z", kind="nps", score=3, account_id="acc-3")
            ingest_events(session, [again], config=config)
            applied.set()
            release.wait(30)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        time.sleep(1.5)  # the second has begun, and waits for the first
        assert not applied.is_set()
        first.commit()
        first.close()
        assert applied.wait(30)
        reader = make_session_factory(read_only(engine))  # SQLite: no wait for the writer
        assert _kept(reader).nps.keys() == {"acc-2"}  # asked between the two commits
    finally:
        release.set()
        thread.join()
    assert _kept(session_factory).nps.keys() == {"acc-3"}


def test_reading_every_response_leaves_the_transaction_as_it_was(session_factory):
    """Rows are fetched 10,000 at a time: on PostgreSQL through a server-side cursor, which must
    not stay the way every later statement of the transaction runs."""
    _tokens_exist(session_factory)
    ingest(
        session_factory,
        [response("r1", "2026-10-05T10:00:00Z", kind="nps", score=3, account_id="acc-1")],
    )
    ledger.forget()
    with session_scope(session_factory) as session:
        assert kept_responses(MetricContext(session, MetricConfig())) is not None
        assert "yield_per" not in session.connection().get_execution_options()
