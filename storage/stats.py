"""What the store holds: counts for `kpibot serve`'s start-up report and `/healthz`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.tables import Account, EventLog, MrrMovement, SurveyResponse
from storage.types import Money


@dataclass(frozen=True)
class StoreStats:
    """Event log counts by status, main table sizes, and MRR as of the latest movement."""

    events_by_status: dict[str, int]
    accounts: int
    responses: int
    customers: int
    mrr: Decimal
    latest_event_at: datetime | None


def store_stats(session: Session) -> StoreStats:
    """Count what the store holds."""
    by_status = {
        status: count
        for status, count in session.execute(
            select(col(EventLog.status), func.count()).group_by(col(EventLog.status))
        )
    }
    kinds: dict[str, int] = {
        kind: count
        for kind, count in session.execute(
            select(col(MrrMovement.kind), func.count()).group_by(col(MrrMovement.kind))
        )
    }
    mrr = session.scalar(
        select(
            type_coerce(
                func.sum(col(MrrMovement.mrr_after)) - func.sum(col(MrrMovement.mrr_before)), Money
            )
        )
    )
    return StoreStats(
        events_by_status=by_status,
        accounts=session.scalar(select(func.count()).select_from(Account)) or 0,
        responses=session.scalar(select(func.count()).select_from(SurveyResponse)) or 0,
        customers=kinds.get("new", 0) + kinds.get("reactivation", 0) - kinds.get("churn", 0),
        mrr=mrr or Decimal("0.00"),
        latest_event_at=session.scalar(
            select(func.max(col(EventLog.occurred_at))).where(col(EventLog.status) == "applied")
        ),
    )
