"""Webhook traffic for load tests and the benchmark: concurrent signed senders, some duplicates,
events of one account spread over senders and out of order."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tests.signing import standard_headers


def unique_events(*, total: int, accounts: int, seed: int) -> list[dict[str, Any]]:
    """`total` distinct native events over `accounts` accounts (subscriptions change over time)."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 9, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    for n in range(accounts):
        events.append(
            _event(
                f"a{n}",
                "account.upserted",
                start,
                {
                    "account_id": f"acc-{n}",
                    "name": f"Account {n}",
                    "plan": rng.choice(["starter", "scale"]),
                },
            )
        )
    n = 0
    while len(events) < total:
        account = rng.randrange(accounts)
        when = start + timedelta(days=rng.randrange(600), minutes=rng.randrange(600))
        kind = rng.random()
        n += 1
        if kind < 0.45:
            data = {
                "account_id": f"acc-{account}",
                "subscription_id": f"sub-{account}-{rng.randrange(2)}",
                "status": rng.choice(["active", "active", "active", "canceled", "trialing"]),
                "amount": f"{rng.choice([29, 49, 99])}.00",
                "currency": "USD",
                "interval": "month",
                "quantity": rng.randint(1, 20),
            }
            events.append(_event(f"s{n}", "subscription.updated", when, data))
        elif kind < 0.7:
            events.append(
                _event(
                    f"i{n}",
                    "invoice.paid",
                    when,
                    {
                        "account_id": f"acc-{account}",
                        "invoice_id": f"inv-{n}",
                        "amount": f"{rng.randint(10, 900)}.00",
                        "currency": "USD",
                    },
                )
            )
        elif kind < 0.85:
            events.append(
                _event(
                    f"r{n}",
                    "survey.responded",
                    when,
                    {
                        "response_id": f"resp-{n}",
                        "account_id": f"acc-{account}",
                        "kind": "nps",
                        "score": rng.randint(0, 10),
                    },
                )
            )
        else:
            users = [f"u{rng.randrange(30)}" for _ in range(rng.randint(1, 6))]
            events.append(
                _event(
                    f"u{n}",
                    "usage.recorded",
                    when,
                    {
                        "account_id": f"acc-{account}",
                        "day": when.date().isoformat(),
                        "user_ids": users,
                    },
                )
            )
    return events[:total]


def _event(event_id: str, type_: str, when: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type_,
        "occurred_at": when.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def spread(
    events: list[dict[str, Any]], *, senders: int, duplicate_share: float, seed: int
) -> list[list[dict[str, Any]]]:
    """Deal the events to `senders` in random order, re-sending `duplicate_share` of them."""
    rng = random.Random(seed)
    extra = [rng.choice(events) for _ in range(int(len(events) * duplicate_share))]
    deck = events + extra
    rng.shuffle(deck)
    return [deck[k::senders] for k in range(senders)]


@dataclass
class SendResult:
    """What the senders saw."""

    seconds: float
    requests: int
    statuses: Counter[int] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)


def send(
    base_url: str, secret: str, plans: list[list[dict[str, Any]]], *, batch: int = 1
) -> SendResult:
    """Post every plan from its own thread (one event per request, or `batch` per request).

    Each sender holds one keep-alive HTTP/1.1 connection (the standard library's client: the
    senders share the benchmark machine's cores with the server, and httpx cost about three
    times as much CPU per request). Every request is signed and every answer read in full.
    """
    result = SendResult(0.0, 0)
    lock = threading.Lock()
    address = urlsplit(base_url)

    def sender(plan: list[dict[str, Any]]) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            for start in range(0, len(plan), batch):
                chunk = plan[start : start + batch]
                payload = chunk[0] if batch == 1 else {"events": chunk}
                body = json.dumps(payload).encode()
                connection.request(
                    "POST",
                    "/webhooks/kpibot",
                    body=body,
                    headers=standard_headers(body, secret=secret),
                )
                response = connection.getresponse()
                answer = response.read()
                with lock:
                    result.requests += 1
                    result.statuses[response.status] += 1
                    if response.status in (200, 422):
                        counts = json.loads(answer)
                        for key in ("queued", "duplicate", "ignored", "rejected"):
                            result.counts[key] += counts[key]
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(plan,)) for plan in plans]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result
