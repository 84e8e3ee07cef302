"""Webhook traffic for load tests and the benchmark: concurrent signed senders, some duplicates,
events of one account spread over senders and out of order."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from storage.ingest import OUTCOMES
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


def onto_accounts(
    events: list[dict[str, Any]], account_ids: list[str], *, last_day: date, days: int, seed: int
) -> list[dict[str, Any]]:
    """The same traffic aimed at a store that already holds years of data, as live webhooks are.

    Each generated account becomes one of `account_ids` (existing accounts), its subscriptions
    new ones beside theirs, and every event falls in the `days` days ending on `last_day`.
    Account events are left out: they would replace the CRM's descriptions of real accounts.
    """
    rng = random.Random(seed)
    first = datetime(last_day.year, last_day.month, last_day.day, 9, tzinfo=UTC)
    first -= timedelta(days=days - 1)
    aimed = []
    for original in events:
        if original["type"] == "account.upserted":
            continue
        data = dict(original["data"])
        data["account_id"] = account_ids[int(data["account_id"].split("-")[1]) % len(account_ids)]
        if "subscription_id" in data:
            data["subscription_id"] = "live-" + data["subscription_id"]
        when = first + timedelta(days=rng.randrange(days), minutes=rng.randrange(600))
        if "day" in data:
            data["day"] = when.date().isoformat()
        aimed.append(_event(original["id"], original["type"], when, data))
    return aimed


def spread(
    events: list[dict[str, Any]],
    *,
    senders: int,
    duplicate_share: float,
    seed: int,
    late_share: float | None = None,
    block: int = 1,
) -> list[list[dict[str, Any]]]:
    """Deal the events to `senders`, re-sending `duplicate_share` of them: in random order (every
    event out of order, the hardest case: each group re-derives half of its accounts' history);
    or, with `late_share`, in time order as a live stream comes, that share of them sent late,
    after events up to two days newer (each account's MRR is re-derived from those days on).

    The senders take `block` events in turn (a request's worth, for batches): a live stream's
    concurrent requests then hold consecutive slices of time, not every eighth event of it."""
    rng = random.Random(seed)
    extra = [rng.choice(events) for _ in range(int(len(events) * duplicate_share))]
    deck = events + extra
    if late_share is None:
        rng.shuffle(deck)
    else:

        def sent_at(event: dict[str, Any]) -> datetime:
            occurred = datetime.fromisoformat(event["occurred_at"])
            late = rng.random() < late_share
            return occurred + timedelta(hours=rng.uniform(0, 48)) if late else occurred

        deck.sort(key=sent_at)
    blocks = [deck[k : k + block] for k in range(0, len(deck), block)]
    return [[event for part in blocks[k::senders] for event in part] for k in range(senders)]


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

    The senders share the benchmark machine's cores with the server, so they cost it as little
    as they can: every request is encoded and signed before the clock starts (the signatures
    are then a few seconds old, well inside the 5 minutes allowed), and each sender writes its
    requests to one keep-alive connection and reads each answer in full (status line, headers,
    body) with a minimal HTTP/1.1 reader. The standard library's client spent more CPU per
    request than the server's own HTTP layer.
    """
    address = urlsplit(base_url)
    host = f"{address.hostname}:{address.port}"
    requests = [
        [
            _signed_request(host, chunk[0] if batch == 1 else {"events": chunk}, secret)
            for chunk in (plan[k : k + batch] for k in range(0, len(plan), batch))
        ]
        for plan in plans
    ]
    result = SendResult(0.0, 0)
    lock = threading.Lock()

    def sender(mine: list[bytes]) -> None:
        statuses: Counter[int] = Counter()
        counts: Counter[str] = Counter()
        with socket.create_connection((address.hostname, address.port), timeout=60) as link:
            link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = link.makefile("rb")
            for request in mine:
                link.sendall(request)
                status, answer = _read_response(reader)
                statuses[status] += 1
                if status in (200, 422):
                    decoded = json.loads(answer)
                    for key in OUTCOMES:
                        counts[key] += decoded[key]
        with lock:
            result.requests += len(mine)
            result.statuses.update(statuses)
            result.counts.update(counts)

    threads = [threading.Thread(target=sender, args=(mine,)) for mine in requests]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result


def _signed_request(host: str, payload: Any, secret: str) -> bytes:
    body = json.dumps(payload).encode()
    headers = {"host": host, **standard_headers(body, secret=secret)}
    headers["content-length"] = str(len(body))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST /webhooks/kpibot HTTP/1.1\r\n{head}\r\n".encode() + body


def _read_response(reader: Any) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response with a Content-Length (what the server always sends)."""
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, reader.read(length)
