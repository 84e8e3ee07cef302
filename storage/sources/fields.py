"""Small readers shared by the provider sources: lenient field parsing and the native envelope."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from storage.schemas import MAX_EMAIL, MAX_TYPE, email_address, within_range
from storage.types import storable


def native_event(event_id: str, type_: str, when: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """Return a native event envelope (type cut to the log's column, time as UTC ISO 8601)."""
    return {"id": event_id, "type": type_[:MAX_TYPE], "occurred_at": utc_iso(when), "data": data}


def utc_iso(when: datetime) -> str:
    """Return an instant as native events write it: ISO 8601 in UTC (`2026-03-02T08:30:00Z`)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def text(value: Any) -> str | None:
    """Return a non-empty string or whole number as text, else None (placeholders left empty,
    and text no database can store: half of a surrogate pair)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and storable(value):
        return value.strip()
    return None


def optional_email(value: Any) -> str | None:
    """An email address as native events take it, else None: a provider's optional email that
    is not one (a free-text answer, a placeholder) must not cost a response its score; the
    response is then attributed by its account id, or left unattributed."""
    found = text(value)
    if found is None or len(found) > MAX_EMAIL:
        return None
    try:
        return email_address(found)
    except ValueError:
        return None


def clipped(value: Any, limit: int) -> str | None:
    """`text(value)` cut to `limit` characters: a provider's comment or name longer than kpibot
    keeps is shortened rather than lose the response it belongs to."""
    found = text(value)
    return None if found is None else found[:limit]


def instant(value: Any) -> datetime | None:
    """Return an ISO 8601 time as a UTC datetime (UTC when no offset is given), or None when it
    is not one, or lies outside the years an event may carry (`storage.schemas.within_range`)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return within_range(moment)
    except (ValueError, OverflowError):
        return None


def body_id(body: bytes) -> str:
    """Return an id for a delivery that carries none: a digest of its exact bytes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()[:40]
