"""Small builders of native events for tests: each returns one event as a sender would post it."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import UTC, date, datetime
from typing import Any

from storage.rebuild import rebuild

_ids = itertools.count(1)


def at(text: str) -> str:
    """Return an ISO UTC instant for '2026-01-15' or '2026-01-15T10:00'."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if len(text) == 10:
        moment = moment.replace(hour=12)
    return moment.isoformat().replace("+00:00", "Z")


def event(
    type_: str, when: str, data: dict[str, Any], *, event_id: str | None = None
) -> dict[str, Any]:
    """A native event envelope."""
    return {
        "id": event_id or f"evt-{next(_ids)}",
        "type": type_,
        "occurred_at": at(when),
        "data": data,
    }


def make_account(
    account_id: str = "acc-1", when: str = "2026-01-01", **data: Any
) -> dict[str, Any]:
    """An account.upserted event."""
    fields: dict[str, Any] = {
        "account_id": account_id,
        "name": account_id.title(),
        "currency": "USD",
    }
    fields.update(data)
    return event("account.upserted", when, fields)


def make_subscription(
    when: str,
    *,
    account_id: str = "acc-1",
    subscription_id: str = "sub-1",
    status: str = "active",
    amount: str = "50.00",
    currency: str = "USD",
    interval: str = "month",
    quantity: int = 1,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A subscription.updated event carrying the subscription's full state."""
    data = {
        "account_id": account_id,
        "subscription_id": subscription_id,
        "status": status,
        "amount": amount,
        "currency": currency,
        "interval": interval,
        "interval_count": 1,
        "quantity": quantity,
        **extra,
    }
    return event("subscription.updated", when, data, event_id=event_id)


def make_invoice(
    when: str,
    *,
    account_id: str = "acc-1",
    amount: str = "50.00",
    currency: str = "USD",
    invoice_id: str | None = None,
) -> dict[str, Any]:
    """An invoice.paid event."""
    return event(
        "invoice.paid",
        when,
        {
            "account_id": account_id,
            "invoice_id": invoice_id or f"inv-{next(_ids)}",
            "amount": amount,
            "currency": currency,
        },
    )


def make_response(
    when: str, *, score: int, kind: str = "nps", account_id: str | None = "acc-1", **extra: Any
) -> dict[str, Any]:
    """A survey.responded event."""
    data: dict[str, Any] = {
        "response_id": f"resp-{next(_ids)}",
        "kind": kind,
        "score": score,
        **extra,
    }
    if account_id is not None:
        data["account_id"] = account_id
    return event("survey.responded", when, data)


def make_fx(on: str, rate: str, *, base: str = "EUR", quote: str = "USD") -> dict[str, Any]:
    """An fx.rate event: 1 base = rate quote from `on`."""
    return event(
        "fx.rate",
        on,
        {"base": base, "quote": quote, "rate": rate, "on": date.fromisoformat(on).isoformat()},
    )


def ingest(factory: Any, events: list[Any], *, currency: str = "USD", timezone: str = "UTC") -> Any:
    """Ingest `events` as one batch through the ingestion service; return its report."""
    from storage.apply import IngestConfig
    from storage.db import session_scope
    from storage.ingest import ingest_events

    with session_scope(factory) as session:
        return ingest_events(
            session, events, config=IngestConfig(reporting_currency=currency, timezone=timezone)
        )


def ingest_shuffled(factory: Any, events: list[Any], *, seed: int, batches: int) -> None:
    """Ingest `events` in a random order (`seed`), split into `batches` batches: with each one
    by one in time order, what order-independence tests compare."""
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)
    size = -(-len(shuffled) // batches)
    for start in range(0, len(shuffled), size):
        ingest(factory, shuffled[start : start + size])


def movements(factory: Any, account_id: str | None = None) -> list[tuple[str, str, str]]:
    """Return the stored MRR movements as (day, kind, amount) strings, oldest first."""
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.tables import MrrMovement

    with session_scope(factory) as session:
        query = select(MrrMovement).order_by(MrrMovement.day, MrrMovement.account_id)  # type: ignore[arg-type]
        if account_id is not None:
            query = query.where(MrrMovement.account_id == account_id)  # type: ignore[arg-type]
        return [(m.day.isoformat(), m.kind, str(m.amount)) for m in session.scalars(query)]


NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def paying_accounts(
    count: int, *, amount: str, since: str, prefix: str = "acc", **account: Any
) -> list[dict[str, Any]]:
    """Accounts `prefix-1`… each with one active monthly subscription of `amount` from `since`."""
    events: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        account_id = f"{prefix}-{n}"
        events.append(make_account(account_id, when=since, **account))
        events.append(
            make_subscription(
                since, account_id=account_id, subscription_id=f"{account_id}-s", amount=amount
            )
        )
    return events


def cancel(account_id: str, when: str, *, amount: str) -> dict[str, Any]:
    """Cancel the subscription `paying_accounts` gave `account_id`."""
    return make_subscription(
        when,
        account_id=account_id,
        subscription_id=f"{account_id}-s",
        amount=amount,
        status="canceled",
    )


def change(account_id: str, when: str, *, amount: str) -> dict[str, Any]:
    """Change the amount of the subscription `paying_accounts` gave `account_id`."""
    return make_subscription(
        when, account_id=account_id, subscription_id=f"{account_id}-s", amount=amount
    )


def kpi(
    factory: Any, metric: str, period: str = "2026-10", *, now: datetime = NOW, **options: Any
) -> Any:
    """Compute `metric` over `period` as `/kpi` would; options: by, filters, compare, config."""
    from metrics.compute import compute_kpi
    from metrics.context import MetricConfig
    from metrics.periods import parse_period
    from metrics.registry import find_metric
    from storage.db import session_scope

    by = options.pop("by", None)
    filters = tuple(options.pop("filters", ()))
    compare = options.pop("compare", "previous")
    config = MetricConfig(**options)
    found = find_metric(metric)
    assert found is not None, metric
    resolved = parse_period(period, now=now, timezone=config.timezone, fiscal=config.fiscal)
    with session_scope(factory) as session:
        return compute_kpi(
            session=session,
            metric=found,
            period=resolved,
            config=config,
            by=by,
            filters=filters,
            compare=compare,
        )


class PausedRebuild:
    """`kpibot rebuild` stopped in the middle of its transaction (after its first chunk), so
    that a test can see what other writers do meanwhile; `resume` lets it commit."""

    def __init__(self, factory: Any, config: Any) -> None:
        self._paused, self._go = threading.Event(), threading.Event()
        self.result: list[int] = []

        def pause(_count: int) -> None:
            self._paused.set()
            self._go.wait(60)

        self._thread = threading.Thread(
            target=lambda: self.result.append(rebuild(factory, config=config, progress=pause))
        )

    def __enter__(self) -> PausedRebuild:
        self._thread.start()
        if not self._paused.wait(30):
            raise TimeoutError("the rebuild did not reach its pause")
        return self

    def resume(self) -> int:
        """Let the rebuild commit; return how many events it re-applied."""
        self._go.set()
        self._thread.join(60)
        if not self.result:
            raise RuntimeError("the rebuild did not finish")
        return self.result[0]

    def __exit__(self, *_exc: object) -> None:
        self._go.set()
        self._thread.join(60)
