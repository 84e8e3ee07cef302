"""Exchange rates into the reporting currency, as in force on a given day."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.tables import FxRate
from storage.types import round_money


class MissingRate(LookupError):
    """No rate converts `currency` to the reporting currency on or before `day`."""

    def __init__(self, currency: str, reporting: str, day: date) -> None:
        super().__init__(
            f"no exchange rate {currency}→{reporting} in force on {day.isoformat()}: "
            f"send an fx.rate event (base {currency}, quote {reporting}, on or before that day)"
        )
        self.currency = currency
        self.day = day


class FxBook:
    """Rates to one reporting currency, by currency and day; a rate holds until the next one.

    `stored` gives the rates to start from; it is called on first need only, so a book that
    converts nothing but the reporting currency itself (most batches) reads no rates at all.
    """

    def __init__(
        self,
        reporting_currency: str,
        rates: Iterable[FxRate] = (),
        *,
        stored: Callable[[], Iterable[FxRate]] | None = None,
    ) -> None:
        self.reporting = reporting_currency
        self._days: dict[str, list[date]] = {}
        self._rates: dict[str, list[Decimal]] = {}
        self._direct: set[tuple[str, date]] = set()
        self._stored = stored
        for rate in rates:
            self.add(rate.base, rate.quote, rate.on, rate.rate)

    @classmethod
    def load(cls, session: Session, reporting_currency: str) -> FxBook:
        """Return a book of every stored rate that involves the reporting currency (read when
        first needed)."""

        def stored() -> Iterable[FxRate]:
            return session.scalars(
                select(FxRate).where(
                    (col(FxRate.quote) == reporting_currency)
                    | (col(FxRate.base) == reporting_currency)
                )
            )

        return cls(reporting_currency, stored=stored)

    def _read_stored(self) -> None:
        if self._stored is not None:
            stored, self._stored = self._stored, None
            for rate in stored():
                self.add(rate.base, rate.quote, rate.on, rate.rate)

    def add(self, base: str, quote: str, on: date, rate: Decimal) -> bool:
        """Record a rate; return False when it does not involve the reporting currency."""
        self._read_stored()
        if quote == self.reporting:
            currency, to_reporting, direct = base, rate, True
        elif base == self.reporting:
            currency, to_reporting, direct = quote, 1 / rate, False
        else:
            return False
        if not direct and (currency, on) in self._direct:
            return True  # a quoted rate (base → reporting) wins over an inverted one
        if direct:
            self._direct.add((currency, on))
        days = self._days.setdefault(currency, [])
        rates = self._rates.setdefault(currency, [])
        index = bisect_right(days, on)
        if index and days[index - 1] == on:
            rates[index - 1] = to_reporting
        else:
            days.insert(index, on)
            rates.insert(index, to_reporting)
        return True

    def rate(self, currency: str, day: date) -> Decimal:
        """Return the rate converting `currency` to the reporting currency on `day`."""
        if currency == self.reporting:
            return Decimal(1)
        self._read_stored()
        days = self._days.get(currency, [])
        index = bisect_right(days, day)
        if not index:
            raise MissingRate(currency, self.reporting, day)
        return self._rates[currency][index - 1]

    def has_rate(self, currency: str, day: date) -> bool:
        """Tell whether `currency` converts on `day`."""
        if currency == self.reporting:
            return True
        self._read_stored()
        return bool(bisect_right(self._days.get(currency, []), day))

    def convert(self, amount: Decimal, currency: str, day: date) -> Decimal:
        """Return `amount` in the reporting currency at the rate in force on `day`, to the cent."""
        if currency == self.reporting:
            return round_money(amount)
        return round_money(amount * self.rate(currency, day))
