"""Column types that keep money exact and time zone-aware on SQLite and PostgreSQL alike.

SQLite has no decimal type: a `Numeric` column there is stored as a float, and sums drift. Money is
therefore stored as an integer number of hundredths (cents for USD/EUR/GBP) and read back as
`Decimal`; `SUM()` over such a column is exact on both databases.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

CENT = Decimal("0.01")


def round_money(amount: Decimal) -> Decimal:
    """Return `amount` rounded half-up to hundredths, the precision money is stored at."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def from_cents(hundredths: int) -> Decimal:
    """Return the amount of an integer number of hundredths, as `Money` reads it (2 places)."""
    return Decimal(int(hundredths)).scaleb(-2)


class Money(TypeDecorator[Decimal]):
    """A `Decimal` amount stored exactly as a BIGINT of hundredths."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(round_money(Decimal(value)) * 100)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(int(value)) / 100).quantize(CENT)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as naive UTC (SQLite) or timestamptz (PostgreSQL), read as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:  # naive, or a time zone that gives no offset
            raise ValueError("naive datetimes are not stored: give a time zone")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @staticmethod
    def sqlite_text(value: datetime | None) -> str | None:
        """The text this type stores on SQLite, made in one step (bulk writes of thousands of
        instants: `storage.upsert`); the same as `process_bind_param` and then SQLAlchemy's
        SQLite DATETIME processing give, which a test checks."""
        if value is None:
            return None
        offset = value.utcoffset()
        if offset is None:
            raise ValueError("naive datetimes are not stored: give a time zone")
        if offset:
            value -= offset  # the same wall time in UTC (the time zone, still attached, unused)
        # Formatted by hand: a third less than `astimezone` and `isoformat`, on every instant a
        # busy server writes.
        return _SQLITE_INSTANT % (
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
        )


_SQLITE_INSTANT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # what SQLAlchemy's SQLite DATETIME writes


class DecimalText(TypeDecorator[Decimal]):
    """A `Decimal` kept as its exact text (FX rates, scores): never summed in SQL."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def storable(text: str) -> bool:
    """Whether `text` can be stored as UTF-8: it holds no lone surrogate (a JSON escape such
    as \\ud800 decodes to one)."""
    return text.isascii() or _SURROGATE.search(text) is None


_SURROGATE = re.compile("[\ud800-\udfff]")
