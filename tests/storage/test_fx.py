"""The FX book reads stored rates only when a conversion needs them, and once."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from storage.fx import FxBook, MissingRate
from storage.tables import FxRate


def _book(rates: list[FxRate]) -> tuple[FxBook, list[int]]:
    reads: list[int] = []

    def stored() -> list[FxRate]:
        reads.append(1)
        return rates

    return FxBook("USD", stored=stored), reads


def test_the_reporting_currency_converts_without_reading_rates():
    book, reads = _book([])

    assert book.convert(Decimal("12.345"), "USD", date(2026, 1, 1)) == Decimal("12.35")
    assert book.has_rate("USD", date(2026, 1, 1))
    assert reads == []


def test_a_foreign_currency_reads_the_stored_rates_once():
    eur = FxRate(base="EUR", quote="USD", on=date(2026, 1, 1), rate=Decimal("1.10"))
    book, reads = _book([eur])

    assert book.convert(Decimal("10"), "EUR", date(2026, 2, 1)) == Decimal("11.00")
    assert book.has_rate("EUR", date(2026, 3, 1))
    with pytest.raises(MissingRate):
        book.rate("EUR", date(2025, 12, 31))
    assert reads == [1]


def test_a_rate_added_before_any_lookup_keeps_the_stored_ones():
    eur = FxRate(base="EUR", quote="USD", on=date(2026, 1, 1), rate=Decimal("1.10"))
    book, reads = _book([eur])

    book.add("EUR", "USD", date(2026, 6, 1), Decimal("1.20"))

    assert book.rate("EUR", date(2026, 2, 1)) == Decimal("1.10")
    assert book.rate("EUR", date(2026, 7, 1)) == Decimal("1.20")
    assert reads == [1]
