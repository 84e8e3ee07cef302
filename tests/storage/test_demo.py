"""The demo generator: deterministic, well-formed native events that exercise every KPI."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice, pairwise
from typing import Any

import pytest

from storage.demo import DEMO_CSMS, generate_demo_events

UNTIL = date(2026, 11, 23)
ACCOUNTS = 300
PAYING = {"active", "past_due"}
CURRENCIES = {"USD", "EUR", "GBP"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MONEY = re.compile(r"^\d+\.\d\d$")

Event = dict[str, Any]


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(generate_demo_events(accounts=ACCOUNTS, years=3, seed=42, until=UNTIL))


@pytest.fixture(scope="module")
def blocks(events: list[Event]) -> dict[str, list[Event]]:
    return split_stream(events)[1]


def split_stream(events: list[Event]) -> tuple[list[Event], dict[str, list[Event]], list[Event]]:
    """Split the stream into its fx rates, each account's block of events, and the CS costs."""
    fx = [e for e in events if e["type"] == "fx.rate"]
    assert events[: len(fx)] == fx, "fx.rate events come first"
    costs = [e for e in events if e["type"] == "cost.recorded"]
    assert events[len(events) - len(costs) :] == costs, "cost.recorded events come last"
    blocks: dict[str, list[Event]] = {}
    for event in events[len(fx) : len(events) - len(costs)]:
        account_id = event["data"].get("account_id")
        if event["type"] == "account.upserted" and account_id not in blocks:
            blocks[account_id] = []
        current = next(reversed(blocks))  # accounts come one after the other
        assert account_id in (None, current), event
        blocks[current].append(event)
    return fx, blocks, costs


def digest(events: Any) -> str:
    hashed = hashlib.sha256()
    for event in events:
        hashed.update(json.dumps(event, ensure_ascii=False).encode())
    return hashed.hexdigest()


def money(value: Any) -> Decimal:
    assert isinstance(value, str) and MONEY.match(value), value
    return Decimal(value)


def subscription_mrr(data: dict[str, Any]) -> Decimal:
    """MRR of one subscription state, as KPIS.md defines it."""
    if data["status"] not in PAYING:
        return Decimal(0)
    total = Decimal(data["amount"]) * data["quantity"]
    if "discount_percent" in data:
        total = total * (100 - Decimal(data["discount_percent"])) / 100
    if "discount_amount" in data:
        total = max(Decimal(0), total - Decimal(data["discount_amount"]))
    return total / 12 if data["interval"] == "year" else total


def movements(block: list[Event]) -> list[tuple[str, str]]:
    """(day, kind) of each change of the account's MRR, netted per day, as KPIS.md defines them."""
    states: dict[str, Decimal] = {}
    daily: dict[str, Decimal] = {}
    for event in block:
        if event["type"] == "subscription.updated":
            states[event["data"]["subscription_id"]] = subscription_mrr(event["data"])
            daily[event["occurred_at"][:10]] = sum(states.values(), Decimal(0))
    found, previous, paid_before = [], Decimal(0), False
    for day, mrr in daily.items():
        if mrr == previous:
            continue
        if previous == 0:
            kind = "reactivation" if paid_before else "new"
        else:
            kind = "churn" if mrr == 0 else "expansion" if mrr > previous else "contraction"
        found.append((day, kind))
        paid_before, previous = paid_before or mrr > 0, mrr
    return found


def test_same_arguments_yield_the_same_bytes() -> None:
    def first(seed: int) -> str:
        stream = generate_demo_events(accounts=ACCOUNTS, years=3, seed=seed, until=UNTIL)
        return digest(islice(stream, 20_000))

    assert first(42) == first(42)
    assert first(43) != first(42)


def test_an_account_history_does_not_depend_on_how_many_accounts(
    blocks: dict[str, list[Event]],
) -> None:
    few = split_stream(list(generate_demo_events(accounts=5, seed=42, until=UNTIL)))[1]
    assert list(few) == [f"acc-{n:06d}" for n in range(1, 6)]
    assert all(few[key] == blocks[key] for key in few)


def test_generator_is_lazy() -> None:
    stream = generate_demo_events(accounts=10**9, seed=1, until=UNTIL)
    assert sum(1 for _ in islice(stream, 2_000)) == 2_000


def test_every_event_has_the_native_fields(events: list[Event]) -> None:
    end_of_until = f"{UNTIL.isoformat()}T23:59:59Z"
    for event in events:
        assert set(event) == {"id", "type", "occurred_at", "data"}
        assert isinstance(event["id"], str) and TIMESTAMP.match(event["occurred_at"])
        assert event["occurred_at"] <= end_of_until
        data, kind = event["data"], event["type"]
        if "currency" in data:
            assert data["currency"] in CURRENCIES
        if kind == "account.upserted":
            assert data["segment"] in {"smb", "mid-market", "enterprise"}
            assert data["plan"] in {"starter", "growth", "scale", "enterprise"}
            assert data["owner_email"] in {email for email, _ in DEMO_CSMS}
            [domain] = data["domains"]
            assert domain.endswith(".example") and isinstance(data["name"], str)
            assert 1 <= len(data["contacts"]) <= 3
            for contact in data["contacts"]:
                assert contact["email"].endswith(f"@{domain}") and contact["name"]
                assert re.match(r"^\+\d{9,15}$", contact["phone"]), contact
            assert set(data["attributes"]) == {"industry", "country"}
        elif kind == "subscription.updated":
            assert data["status"] in {"active", "trialing", "past_due", "paused", "canceled"}
            assert data["interval"] in {"month", "year"} and data["interval_count"] == 1
            assert isinstance(data["quantity"], int) and data["quantity"] >= 1
            assert money(data["amount"]) > 0 and data["subscription_id"]
            assert not ("discount_percent" in data and "discount_amount" in data)
            if "discount_percent" in data:
                assert isinstance(data["discount_percent"], int)
                assert 0 < data["discount_percent"] < 100
            if "discount_amount" in data:
                assert money(data["discount_amount"]) > 0
        elif kind == "invoice.paid":
            assert money(data["amount"]) >= 0 and data["invoice_id"] and data["account_id"]
        elif kind == "survey.responded":
            assert data.get("account_id") or data.get("respondent_email")
            assert data["kind"] in {"nps", "csat"} and data["source"] in {
                "delighted",
                "typeform",
                "in-app",
            }
            scale = (0, 10) if data["kind"] == "nps" else (1, 5)
            assert (data["scale_min"], data["scale_max"]) == scale
            assert isinstance(data["score"], int) and scale[0] <= data["score"] <= scale[1]
            assert isinstance(data["respondent_name"], str) and data["response_id"]
            assert isinstance(data.get("comment", ""), str)
        elif kind == "usage.recorded":
            assert data["day"] == event["occurred_at"][:10]
            assert all(user.startswith(f"{data['account_id']}-u") for user in data["user_ids"])
            assert len(set(data["user_ids"])) == len(data["user_ids"])
        elif kind == "renewal.updated":
            assert data["outcome"] in {"pending", "renewed", "churned"}
            assert money(data["amount"]) >= 0 and date.fromisoformat(data["due_on"])
            assert ("renewed_amount" in data) == (data["outcome"] == "renewed")
            if "renewed_amount" in data:
                assert money(data["renewed_amount"]) >= 0
        elif kind == "cost.recorded":
            assert data["category"] in {"cs-salaries", "cs-tools"} and data["currency"] == "USD"
            assert data["period_start"] <= data["period_end"] and money(data["amount"]) > 0
        else:
            assert kind == "fx.rate", kind


def test_ids_are_unique(events: list[Event]) -> None:
    def unique(values: list[str]) -> bool:
        return len(values) == len(set(values))

    assert unique([e["id"] for e in events])
    assert unique([e["data"]["invoice_id"] for e in events if e["type"] == "invoice.paid"])
    assert unique([e["data"]["response_id"] for e in events if e["type"] == "survey.responded"])
    assert unique([e["data"]["cost_id"] for e in events if e["type"] == "cost.recorded"])
    days = [(e["data"]["account_id"], e["data"]["day"]) for e in events if "day" in e["data"]]
    assert unique(days)


def test_each_account_is_in_time_order(blocks: dict[str, list[Event]]) -> None:
    assert len(blocks) == ACCOUNTS
    for block in blocks.values():
        times = [event["occurred_at"] for event in block]
        assert times == sorted(times)
        assert block[0]["type"] == "account.upserted"


def test_domains_and_names_are_unique(blocks: dict[str, list[Event]]) -> None:
    domains = {block[0]["data"]["domains"][0] for block in blocks.values()}
    assert len(domains) == ACCOUNTS


def test_fx_rates_are_in_force_from_the_first_day(events: list[Event]) -> None:
    fx, blocks, _ = split_stream(events)
    first_subscription = min(
        e["occurred_at"][:10] for b in blocks.values() for e in b if e["type"] != "account.upserted"
    )
    for base, (low, high) in {"EUR": ("1.00", "1.20"), "GBP": ("1.15", "1.40")}.items():
        rates = [e["data"] for e in fx if e["data"]["base"] == base]
        assert {r["quote"] for r in rates} == {"USD"}
        days = [date.fromisoformat(r["on"]) for r in rates]
        assert days == sorted(days) and days[0].isoformat() <= first_subscription
        assert all((b - a).days <= 7 for a, b in pairwise(days))
        assert all(day.weekday() == 0 for day in days[1:]) and (UNTIL - days[-1]).days < 7
        for rate in rates:
            assert re.match(r"^\d+\.\d{4,6}$", rate["rate"])
            assert Decimal(low) < Decimal(rate["rate"]) < Decimal(high)
        assert len({r["rate"] for r in rates}) > len(rates) / 2, "rates drift"


def test_fx_rates_convert_to_any_reporting_currency() -> None:
    events = list(generate_demo_events(accounts=3, seed=42, until=UNTIL, currency="EUR"))
    pairs = {(e["data"]["base"], e["data"]["quote"]) for e in events if e["type"] == "fx.rate"}
    assert pairs == {("USD", "EUR"), ("GBP", "EUR")}
    assert {e["data"]["currency"] for e in events if e["type"] == "cost.recorded"} == {"EUR"}
    with pytest.raises(ValueError, match="CHF"):
        next(generate_demo_events(until=UNTIL, currency="CHF"))


def test_the_history_has_every_kind_of_mrr_movement(blocks: dict[str, list[Event]]) -> None:
    kinds = Counter(kind for block in blocks.values() for _, kind in movements(block))
    assert kinds["new"] > ACCOUNTS / 2
    assert min(kinds["churn"], kinds["reactivation"], kinds["expansion"], kinds["contraction"]) > 5
    assert kinds["expansion"] > kinds["contraction"]


def test_subscriptions_have_trials_states_and_discounts(blocks: dict[str, list[Event]]) -> None:
    converted = lost = 0
    seen: Counter[str] = Counter()
    for block in blocks.values():
        history: dict[str, list[str]] = defaultdict(list)
        for event in block:
            if event["type"] == "subscription.updated":
                data = event["data"]
                history[data["subscription_id"]].append(data["status"])
                seen.update(key for key in ("discount_percent", "discount_amount") if key in data)
                seen[data["status"]] += 1
                seen[data["interval"]] += 1
        for statuses in history.values():
            if statuses[0] == "trialing":
                converted += statuses[1:2] == ["active"]
                lost += statuses[1:2] == ["canceled"]
        seen["subscriptions"] += len(history)
        upserts = [e["data"] for e in block if e["type"] == "account.upserted"]
        seen["plan changes"] += len({u["plan"] for u in upserts}) > 1
        seen["owner changes"] += len({u["owner_email"] for u in upserts}) > 1
    assert converted > 2 * lost > 0
    assert ACCOUNTS <= seen["subscriptions"] <= 2 * ACCOUNTS
    for key in ("past_due", "paused", "discount_percent", "discount_amount", "year", "month"):
        assert seen[key] > 0, key
    assert seen["plan changes"] > 0 and seen["owner changes"] > 0


def test_monthly_logo_churn_is_one_to_two_percent(blocks: dict[str, list[Event]]) -> None:
    churned = customer_months = 0
    for block in blocks.values():
        moves = movements(block)
        churned += sum(kind == "churn" for _, kind in moves)
        paying_since = None
        for day, kind in [*moves, (UNTIL.isoformat(), "end")]:
            if kind in ("new", "reactivation"):
                paying_since = date.fromisoformat(day)
            elif kind in ("churn", "end") and paying_since:
                customer_months += (date.fromisoformat(day) - paying_since).days / 30.44
                paying_since = None
    assert 0.008 < churned / customer_months < 0.025


def test_signups_reach_every_month_and_grow(blocks: dict[str, list[Event]]) -> None:
    signups = Counter(block[0]["occurred_at"][:7] for block in blocks.values())
    first_year = sum(n for month, n in signups.items() if month < "2024-11")
    last_year = sum(n for month, n in signups.items() if month >= "2025-12")
    assert last_year > 1.5 * first_year
    assert len(signups) >= 36


def billed_amounts(block: list[Event]) -> Iterator[tuple[Event, list[tuple[str, str]]]]:
    """Yield each event of the account with what its paying subscriptions bill per interval then."""
    billable: dict[str, tuple[str, str]] = {}  # subscription -> (interval, amount billed)
    for event in block:
        data = event["data"]
        if event["type"] == "subscription.updated":
            total = Decimal(data["amount"]) * data["quantity"]
            total *= 1 - Decimal(data.get("discount_percent", 0)) / 100
            total = max(Decimal(0), total - Decimal(data.get("discount_amount", 0)))
            amount = str(total.quantize(Decimal("0.01"), ROUND_HALF_UP))
            billable[data["subscription_id"]] = (data["interval"], amount)
            if data["status"] not in PAYING:
                del billable[data["subscription_id"]]
        yield event, list(billable.values())


def test_invoices_bill_a_paying_subscription(blocks: dict[str, list[Event]]) -> None:
    for block in blocks.values():
        currency = block[0]["data"]["currency"]
        for event, billed in billed_amounts(block):
            if event["type"] == "invoice.paid":
                assert event["data"]["currency"] == currency
                assert event["data"]["amount"] in {amount for _, amount in billed}, event


def test_usage_only_while_paying(blocks: dict[str, list[Event]]) -> None:
    window_start = (UNTIL - timedelta(days=119)).isoformat()
    active_days = 0
    for block in blocks.values():
        statuses: dict[str, str] = {}
        for event in block:
            if event["type"] == "subscription.updated":
                statuses[event["data"]["subscription_id"]] = event["data"]["status"]
            elif event["type"] == "usage.recorded":
                assert PAYING & set(statuses.values()), event
                assert event["data"]["day"] >= window_start
                active_days += bool(event["data"]["user_ids"])
        paying_at_end = PAYING & set(statuses.values())
        usage_days = {e["data"]["day"] for e in block if e["type"] == "usage.recorded"}
        assert (UNTIL.isoformat() in usage_days) == bool(paying_at_end)
    assert active_days > 10_000


def test_renewals_follow_the_yearly_subscriptions(blocks: dict[str, list[Event]]) -> None:
    outcomes: Counter[str] = Counter()
    for block in blocks.values():
        contracts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in block:
            if event["type"] == "renewal.updated":
                contracts[event["data"]["contract_id"]].append(event["data"])
        for states in contracts.values():
            due_on, outcome = states[0]["due_on"], states[-1]["outcome"]
            assert {s["due_on"] for s in states} == {due_on}
            assert all(s["outcome"] == "pending" for s in states[:-1])
            assert (outcome == "pending") == (due_on > UNTIL.isoformat())
            on_due = [e for e in block if e["occurred_at"][:10] == due_on]
            cancels = [
                e
                for e in on_due
                if e["type"] == "subscription.updated"
                and e["data"]["status"] == "canceled"
                and e["data"]["interval"] == "year"
            ]
            if outcome == "churned":
                assert cancels
            elif outcome == "renewed":
                assert not cancels
                paid = [e["data"]["amount"] for e in on_due if e["type"] == "invoice.paid"]
                assert states[-1]["renewed_amount"] in paid
            outcomes[outcome] += 1
        open_contract: dict[str, Any] = {}
        for event, billed in billed_amounts(block):
            if event["type"] == "renewal.updated":
                open_contract = event["data"] if event["data"]["outcome"] == "pending" else {}
            elif event["type"] == "subscription.updated":
                continue  # a change of a yearly subscription is followed by its renewal update
            if open_contract:  # the amount due is the yearly amount in force
                assert ("year", open_contract["amount"]) in billed, event
    assert min(outcomes.values()) > 3 and len(outcomes) == 3


def test_survey_answers_look_real(events: list[Event], blocks: dict[str, list[Event]]) -> None:
    responses = [e["data"] for e in events if e["type"] == "survey.responded"]
    nps = [r["score"] for r in responses if r["kind"] == "nps"]
    promoters = sum(s >= 9 for s in nps) / len(nps)
    detractors = sum(s <= 6 for s in nps) / len(nps)
    assert 0.4 < promoters < 0.6 and 0.12 < detractors < 0.28
    assert sum(r["kind"] == "csat" for r in responses) > len(responses) / 5
    comments = [r["comment"] for r in responses if "comment" in r]
    assert 0.4 < len(comments) / len(responses) < 0.6
    assert any("ne marche plus" in c or "é" in c for c in comments), "some comments are French"
    contacts = {c["email"] for b in blocks.values() for c in b[0]["data"]["contacts"]}
    domains = {b[0]["data"]["domains"][0] for b in blocks.values()}
    by_route = Counter(
        "account"
        if "respondent_email" not in r
        else "contact"
        if r["respondent_email"] in contacts
        else "domain"
        if r["respondent_email"].split("@")[1] in domains
        else "unknown"
        for r in responses
    )
    assert by_route["contact"] > len(responses) / 2
    assert min(by_route["account"], by_route["domain"], by_route["unknown"]) > 0


def test_costs_cover_every_month(events: list[Event]) -> None:
    costs = [e["data"] for e in events if e["type"] == "cost.recorded"]
    months = {c["period_start"][:7] for c in costs}
    assert len(months) == 37 and len(costs) == 2 * 37
    assert min(c["period_start"] for c in costs) == (UNTIL - timedelta(days=1096)).isoformat()
