"""A deterministic, realistic history of a SaaS company, as native kpibot events (SPEC.md).

`generate_demo_events` yields, lazily and in the same order for the same arguments: every `fx.rate`
first, then each account's events in chronological order, account after account, then the monthly
`cost.recorded` of the CS team. Each account draws from its own random stream, so account N's
history does not depend on how many accounts are generated. Money is in cents internally and leaves
as a string with two decimals; nothing in here imports the rest of kpibot.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from storage import demo_text as text

DEMO_CSMS: tuple[tuple[str, str], ...] = (
    ("camille.martin@kpibot.example", "Camille Martin"),
    ("lucas.bernard@kpibot.example", "Lucas Bernard"),
    ("sarah.johnson@kpibot.example", "Sarah Johnson"),
    ("mehdi.haddad@kpibot.example", "Mehdi Haddad"),
    ("emily.chen@kpibot.example", "Emily Chen"),
    ("julien.moreau@kpibot.example", "Julien Moreau"),
    ("olivia.brown@kpibot.example", "Olivia Brown"),
    ("ines.lefebvre@kpibot.example", "Inès Lefebvre"),
)
# How each CSM's book churns compared with the average: gives `by csm` breakdowns something to show.
_CSM_CHURN = (0.8, 1.0, 0.9, 1.3, 1.0, 1.15, 0.7, 1.2)

CURRENCIES = ("USD", "EUR", "GBP")
PLANS = ("starter", "growth", "scale", "enterprise")
_SEAT_PRICE = {"USD": (15, 29, 49, 89), "EUR": (14, 27, 45, 82), "GBP": (12, 24, 39, 72)}
_ADDON_PRICE = {"USD": 99, "EUR": 89, "GBP": 79}  # a flat monthly analytics add-on
_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}  # rough, for CS costs in the reporting currency


class _Segment(NamedTuple):
    weight: int
    plans: tuple[int, ...]  # weights of PLANS
    seats: tuple[int, int]
    yearly: float  # share of yearly billing
    hazard: float  # monthly churn hazard
    csms: tuple[int, ...]  # weights of DEMO_CSMS: enterprise books sit with the senior CSMs
    contacts: tuple[int, int]


_SEGMENTS = {
    "smb": _Segment(65, (60, 40, 0, 0), (1, 12), 0.2, 0.016, (1, 1, 2, 3, 4, 4, 4, 3), (1, 2)),
    "mid-market": _Segment(
        25, (0, 50, 50, 0), (8, 60), 0.45, 0.01, (2, 2, 4, 4, 3, 3, 1, 1), (1, 3)
    ),
    "enterprise": _Segment(
        10, (0, 0, 30, 70), (40, 300), 0.7, 0.006, (5, 5, 3, 1, 1, 1, 0, 0), (2, 3)
    ),
}


class _Mood(NamedTuple):
    weight: int
    churn: float  # multiplies the segment's hazard
    engagement: tuple[float, float]  # share of seats that are regular users
    nps: tuple[float, ...]  # weights of scores 0..10
    csat: tuple[float, ...]  # weights of scores 1..5


# Overall NPS answers come out near 50 % promoters, 30 % passives, 20 % detractors.
_MOODS = {
    "happy": _Mood(
        60, 0.6, (0.45, 0.8), (0.5, 0.5, 0.5, 1, 1.5, 2.5, 3.5, 12, 16, 27, 35), (1, 4, 10, 35, 50)
    ),
    "neutral": _Mood(
        28, 1.1, (0.3, 0.6), (1, 1, 1.5, 2, 3, 5.5, 8, 19, 19, 20, 20), (3, 6, 18, 40, 33)
    ),
    "unhappy": _Mood(
        12, 2.8, (0.15, 0.4), (5, 4, 5, 7, 9, 11, 14, 17, 13, 9, 6), (12, 18, 30, 28, 12)
    ),
}
_PAYING = frozenset(("active", "past_due"))
_USAGE_DAYS = 120
_USAGE_MINUTE = 23 * 60 + 30
_TIMES = tuple(f"T{m // 60:02d}:{m % 60:02d}:00Z" for m in range(24 * 60))


@lru_cache(maxsize=8192)
def _iso(day: int) -> str:
    return date.fromordinal(day).isoformat()


def _add_months(day: int, months: int) -> int:
    """Return the ordinal `months` after `day`, clamped to the end of shorter months."""
    start = date.fromordinal(day)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    following = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, min(start.day, (following - timedelta(days=1)).day)).toordinal()


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class _Sub:
    """One subscription's current state; `unit` is cents per seat per interval."""

    __slots__ = ("anchor", "billed", "interval", "off", "pct", "plan", "quantity", "sub_id", "unit")

    def __init__(self, sub_id: str, plan: int, unit: int, quantity: int, interval: str) -> None:
        self.sub_id, self.plan, self.unit, self.quantity = sub_id, plan, unit, quantity
        self.interval, self.pct, self.off = interval, 0, 0
        self.anchor, self.billed = 0, 0

    def total(self) -> int:
        """Cents billed per interval, after the recurring discount."""
        gross = self.unit * self.quantity
        if self.pct:
            return (gross * (100 - self.pct) + 50) // 100
        return max(0, gross - self.off)


class _Account:
    """Simulates one account from signup to `until` and returns its events in time order."""

    def __init__(self, n: int, seed: int, start: int, until: int, used_slugs: set[str]) -> None:
        self.rng = rng = random.Random(f"kpibot-demo:{seed}:{n}")
        self.key, self.until = f"{n:06d}", until
        self.account_id = f"acc-{self.key}"
        self.log: list[tuple[int, int, int, str, str, dict[str, Any]]] = []
        self.counts: dict[str, int] = {}
        country = rng.choices(text.COUNTRIES, [c[1] for c in text.COUNTRIES])[0]
        self.country, _, self.currency, fr_share, self.phone_prefix, self.phone_digits = country
        self.lang = "fr" if rng.random() < fr_share else "en"
        self.segment = rng.choices(list(_SEGMENTS), [s.weight for s in _SEGMENTS.values()])[0]
        segment = _SEGMENTS[self.segment]
        self.plan = rng.choices(range(len(PLANS)), segment.plans)[0]
        self.seat_range, self.yearly_share = segment.seats, segment.yearly
        self.mood = rng.choices(list(_MOODS), [m.weight for m in _MOODS.values()])[0]
        mood = _MOODS[self.mood]
        self.engagement = rng.uniform(*mood.engagement)
        self.owner = rng.choices(range(len(DEMO_CSMS)), segment.csms)[0]
        self.hazard = segment.hazard * mood.churn * _CSM_CHURN[self.owner]
        self.industry = rng.choice(text.INDUSTRIES)
        self.name, self.domain = text.company(rng, self.lang, used_slugs)
        self.contacts: list[dict[str, str]] = []
        contacts = rng.randint(*segment.contacts)
        while len(self.contacts) < contacts:
            name, local = text.person(rng, self.lang)
            email = f"{local}@{self.domain}"
            if all(c["email"] != email for c in self.contacts):
                phone = text.phone(rng, self.phone_prefix, self.phone_digits)
                self.contacts.append({"email": email, "name": name, "phone": phone})
        span = until - start
        u = rng.random()  # signups grow over the history: a uniform part plus a linear ramp
        self.signup = start + int(span * (u if rng.random() < 0.4 else math.sqrt(u)))
        self.addon: _Sub | None = None
        self.contract: tuple[str, int] | None = None  # (contract_id, due_on) of the open term

    # -- events ---------------------------------------------------------------------------

    def add(self, day: int, minute: int, kind: str, data: dict[str, Any]) -> None:
        """Log one event unless it falls after `until`."""
        if day > self.until:
            return
        event_id = f"demo-{kind[:3]}-{self.key}-{self._number(kind):04d}"
        self.log.append((day, minute, len(self.log), event_id, kind, data))

    def _number(self, what: str) -> int:
        number = self.counts[what] = self.counts.get(what, 0) + 1
        return number

    def _minute(self) -> int:
        return self.rng.randint(8 * 60, 19 * 60)

    def _upsert(self, day: int, minute: int) -> None:
        self.add(
            day,
            minute,
            "account.upserted",
            {
                "account_id": self.account_id,
                "name": self.name,
                "owner_email": DEMO_CSMS[self.owner][0],
                "segment": self.segment,
                "plan": PLANS[self.plan],
                "currency": self.currency,
                "domains": [self.domain],
                "contacts": [dict(contact) for contact in self.contacts],
                "attributes": {"industry": self.industry, "country": self.country},
            },
        )

    def _set(self, sub: _Sub, status: str, day: int, minute: int) -> None:
        data: dict[str, Any] = {
            "account_id": self.account_id,
            "subscription_id": sub.sub_id,
            "status": status,
            "amount": _money(sub.unit),
            "currency": self.currency,
            "interval": sub.interval,
            "interval_count": 1,
            "quantity": sub.quantity,
        }
        if sub.pct:
            data["discount_percent"] = sub.pct
        elif sub.off:
            data["discount_amount"] = _money(sub.off)
        self.add(day, minute, "subscription.updated", data)
        if sub.interval == "year" and self.contract and status in _PAYING:
            self._renewal(day, minute, "pending", sub.total())

    def _invoice(self, sub: _Sub, day: int, minute: int) -> None:
        data = {
            "account_id": self.account_id,
            "invoice_id": f"inv-{self.key}-{self._number('invoice'):04d}",
            "amount": _money(sub.total()),
            "currency": self.currency,
        }
        self.add(day, minute, "invoice.paid", data)

    def _renewal(self, day: int, minute: int, outcome: str, amount: int, renewed: int = -1) -> None:
        assert self.contract is not None
        data = {
            "contract_id": self.contract[0],
            "account_id": self.account_id,
            "due_on": _iso(self.contract[1]),
            "amount": _money(amount),
            "currency": self.currency,
            "outcome": outcome,
        }
        if renewed >= 0:
            data["renewed_amount"] = _money(renewed)
        self.add(day, minute, "renewal.updated", data)

    def _open_contract(self, sub: _Sub, day: int, minute: int, due: int) -> None:
        self.contract = (f"ctr-{self.key}-{self._number('contract'):02d}", due)
        self._renewal(day, minute, "pending", sub.total())

    # -- lifecycle ------------------------------------------------------------------------

    def _new_sub(self) -> _Sub:
        rng = self.rng
        lo, hi = self.seat_range
        interval = "year" if rng.random() < self.yearly_share else "month"
        sub = _Sub(f"sub-{self.key}-{self._number('sub'):02d}", self.plan, 0, 0, interval)
        sub.quantity = lo + int((hi - lo) * rng.random() ** 2)
        self._price(sub)
        r = rng.random()
        if r < 0.15:
            sub.pct = rng.choice((10, 10, 15, 20, 20, 25, 30))
        elif r < 0.18:
            sub.off = max(500, sub.unit * sub.quantity * rng.randint(10, 25) // 100 // 500 * 500)
        return sub

    def _price(self, sub: _Sub) -> None:
        monthly = _SEAT_PRICE[self.currency][sub.plan] * 100
        sub.unit = monthly * 10 if sub.interval == "year" else monthly

    def run(self) -> None:
        """Simulate the account: signup, trial, paying stretches, churn and reactivation."""
        rng, day = self.rng, self.signup
        minute = self._minute()
        self._upsert(day, minute)
        first = True
        while day <= self.until:
            sub = self._new_sub()
            if first and rng.random() < 0.45:
                self._set(sub, "trialing", day, minute + 1)
                day += 14
                if rng.random() < 0.22:
                    self._set(sub, "canceled", day, minute)
                    if rng.random() < 0.88:
                        return
                    day += rng.randint(30, 300)  # comes back later, never having paid
                    first = False
                    continue
            ended = self._episode(sub, day, minute + 1)
            if ended is None:
                self._bill_addon(self.until + 1)
                return
            if rng.random() >= 0.25:
                return
            day, first, minute = ended + rng.randint(45, 420), False, self._minute()
            if rng.random() < 0.3 and day <= self.until:  # back on another plan
                self.plan = min(len(PLANS) - 1, max(0, self.plan + rng.choice((-1, 1))))
                self._upsert(day, minute - 1)

    def _episode(self, sub: _Sub, start: int, minute: int) -> int | None:
        """Run one paying stretch; return the day it ended, or None if it lasts past `until`."""
        rng, until = self.rng, self.until
        self._set(sub, "active", start, minute)
        self._invoice(sub, start, minute + 1)
        if sub.interval == "year":
            self._open_contract(sub, start, minute + 2, _add_months(start, 12))
        anchor, k, current, earliest = start, 0, start, 1
        discount_ends = rng.choice((0, 0, 3, 6, 12)) if sub.pct and sub.interval == "month" else 0
        while True:
            following = _add_months(anchor, k + 1)
            day = current + rng.randint(earliest, following - current - 1)
            earliest = 1
            r = rng.random()
            if r < 0.004 and sub.interval == "month" and self.addon is None and day <= until:
                self._set(sub, "paused", day, self._minute())
                resume = day + rng.randint(30, 90)
                if resume > until:
                    return None
                if rng.random() < 0.2:
                    self._set(sub, "canceled", resume, self._minute())
                    return resume
                minute = self._minute()
                self._set(sub, "active", resume, minute)
                self._invoice(sub, resume, minute + 1)
                anchor, k, current, discount_ends = resume, 0, resume, 0
                continue
            self._change(sub, r, day)
            if self.addon is not None:
                after = max(current, self.addon.anchor) + 1
                if after < following and rng.random() < 0.03:
                    self._end_addon(rng.randint(after, following - 1))
                else:
                    self._bill_addon(following)
            if following > until:
                return None
            k, current, minute = k + 1, following, self._minute()
            if sub.interval == "month":
                if rng.random() < self.hazard:
                    return self._end(sub, following, minute)
                if rng.random() < 0.02:
                    if k == discount_ends:  # ends next period, once the card works again
                        discount_ends += 1
                    self._set(sub, "past_due", following, rng.randint(5 * 60, 7 * 60))
                    if rng.random() < 0.15:  # the card never works again: involuntary churn
                        return self._end(sub, following + 14, minute)
                    paid = following + rng.randint(2, 12)
                    self._set(sub, "active", paid, minute)
                    self._invoice(sub, paid, minute + 1)
                    earliest = paid - following + 1
                else:
                    self._invoice(sub, following, minute)
                if k == discount_ends:
                    sub.pct = 0
                    self._set(sub, "active", following, minute + 2)
            elif k % 12 == 0 and not self._renew(sub, following, minute):
                return self._end(sub, following, minute)

    def _renew(self, sub: _Sub, due: int, minute: int) -> bool:
        """Settle the yearly contract due on `due`; False when the customer leaves."""
        rng = self.rng
        assert self.contract is not None
        amount = sub.total()
        if rng.random() < 1 - (1 - self.hazard) ** 12:
            self._renewal(due, minute, "churned", amount)
            self.contract = None
            return False
        r = rng.random()
        if r < 0.25:
            sub.quantity += max(1, round(sub.quantity * rng.uniform(0.05, 0.3)))
        elif r < 0.37:
            sub.unit = (sub.unit * 106 + 50) // 100  # list price uplift
        elif r < 0.45 and sub.quantity > 1:
            sub.quantity -= max(1, round(sub.quantity * rng.uniform(0.1, 0.25)))
        self._renewal(due, minute, "renewed", amount, sub.total())
        self.contract = None
        if r < 0.45:
            self._set(sub, "active", due, minute + 1)
        self._open_contract(sub, due, minute + 2, _add_months(due, 12))
        self._invoice(sub, due, minute + 3)
        return True

    def _change(self, sub: _Sub, r: float, day: int) -> None:
        """Apply at most one mid-period change (seats, plan, add-on, owner, discount) on `day`."""
        rng, monthly, minute = self.rng, sub.interval == "month", self._minute()
        if r < 0.04:
            sub.quantity += max(1, round(sub.quantity * rng.uniform(0.1, 0.5)))
        elif r < 0.06:
            if not monthly or sub.quantity == 1:
                return  # yearly seats only go down at renewal
            sub.quantity -= max(1, round(sub.quantity * rng.uniform(0.1, 0.3)))
        elif r < 0.075:
            step = 1 if r < 0.07 else -1
            if not 0 <= sub.plan + step < len(PLANS) or (step < 0 and not monthly):
                return
            sub.plan = self.plan = sub.plan + step
            self._price(sub)
            self._upsert(day, minute - 1)
        elif r < 0.075 + (0.004 if self.segment == "smb" else 0.012):
            if self.addon is not None:
                return
            addon_id, addon_price = f"sub-{self.key}-{self._number('sub'):02d}", _ADDON_PRICE
            self.addon = _Sub(addon_id, 0, addon_price[self.currency] * 100, 1, "month")
            self.addon.anchor, self.addon.billed = day, 1
            self._set(self.addon, "active", day, minute)
            self._invoice(self.addon, day, minute + 1)
            return
        elif r < 0.09:
            if rng.random() < 0.4:  # a reassignment
                self.owner = rng.choice([i for i in range(len(DEMO_CSMS)) if i != self.owner])
                self._upsert(day, minute)
            return
        elif r < 0.12 and self.mood == "unhappy" and not sub.pct and not sub.off:
            sub.pct = 20  # a retention offer
        else:
            return
        self._set(sub, "active", day, minute)

    def _bill_addon(self, before: int) -> None:
        addon = self.addon
        while addon is not None:
            due = _add_months(addon.anchor, addon.billed)
            if due >= before or due > self.until:
                return
            addon.billed += 1
            self._invoice(addon, due, 10 * 60)

    def _end_addon(self, day: int) -> None:
        if self.addon is not None:
            self._bill_addon(day)
            self._set(self.addon, "canceled", day, 9 * 60)
            self.addon = None

    def _end(self, sub: _Sub, day: int, minute: int) -> int | None:
        self._end_addon(day)
        self._set(sub, "canceled", day, minute)
        return day if day <= self.until else None

    # -- derived activity: surveys and product usage --------------------------------------

    def events(self, month_starts: list[int], customers: list[int]) -> list[dict[str, Any]]:
        """Return the account's events in time order, adding surveys and usage; count customers."""
        changes, stretches = self.count_customers(month_starts, customers)
        for first, end in stretches:
            self._surveys(first, end)
        self._usage(changes)
        self.log.sort()
        return [
            {"id": eid, "type": kind, "occurred_at": _iso(day) + _TIMES[minute], "data": data}
            for day, minute, _, eid, kind, data in self.log
        ]

    def count_customers(
        self, month_starts: list[int], customers: list[int]
    ) -> tuple[list[tuple[int, bool, int]], list[tuple[int, int]]]:
        """Count the account in `customers` for each month it pays in; return its seat changes
        (day, paying at end of day, seats) and its paying stretches (first day, day after)."""
        self.log.sort()
        updates = [(e[0], e[5]) for e in self.log if e[4] == "subscription.updated"]
        states: dict[str, tuple[bool, int]] = {}
        changes: list[tuple[int, bool, int]] = []  # (day, paying at end of day, seats)
        for index, (day, data) in enumerate(updates):
            states[data["subscription_id"]] = (data["status"] in _PAYING, data["quantity"])
            if index + 1 < len(updates) and updates[index + 1][0] == day:
                continue  # the day's last update decides the state at its end
            seats = max((q for paying, q in states.values() if paying), default=0)
            if not changes or changes[-1][1:] != (seats > 0, seats):
                changes.append((day, seats > 0, seats))
        stretches = [
            (day, next((d for d, p, _ in changes[i + 1 :] if not p), self.until + 1))
            for i, (day, paying, _) in enumerate(changes)
            if paying and (i == 0 or not changes[i - 1][1])
        ]
        for first, end in stretches:
            for month in range(bisect_left(month_starts, first), bisect_left(month_starts, end)):
                customers[month] += 1
        return changes, stretches

    def _surveys(self, first: int, end: int) -> None:
        rng, left = self.rng, end <= self.until
        day = first + rng.randint(21, 75)
        while day < end:  # NPS waves a few times a year
            for _ in range(rng.randint(1, 2 if self.segment == "smb" else 3)):
                self._response("nps", day, left and end - day < 90)
            day += rng.randint(75, 140)
        day = first + rng.randint(5, 60)
        gap = 45 if self.segment == "enterprise" else 90
        while day < end:  # CSAT after some support tickets
            if rng.random() < 0.45:
                self._response("csat", day, left and end - day < 90)
            day += rng.randint(gap // 3, gap)

    def _response(self, kind: str, day: int, leaving: bool) -> None:
        rng = self.rng
        mood = _MOODS["unhappy" if leaving else self.mood]
        weights = mood.nps if kind == "nps" else mood.csat
        low, high = (0, 10) if kind == "nps" else (1, 5)
        score = rng.choices(range(low, high + 1), weights)[0]
        data: dict[str, Any] = {"response_id": f"resp-{self.key}-{self._number('response'):04d}"}
        r = rng.random()
        if r < 0.80:
            contact = rng.choice(self.contacts)
            data["respondent_email"], name = contact["email"], contact["name"]
        elif r < 0.90:
            data["account_id"], name = self.account_id, text.person(rng, self.lang)[0]
        else:
            name, local = text.person(rng, self.lang)
            domain = rng.choice(text.UNKNOWN_DOMAINS) if r >= 0.99 else self.domain
            data["respondent_email"] = f"{local}@{domain}"
        source = "in-app" if "account_id" in data else rng.choice(("delighted", "typeform"))
        data.update(respondent_name=name, kind=kind, score=score, scale_min=low, scale_max=high)
        if rng.random() < 0.5:
            if kind == "nps":
                group = "detractor" if score <= 6 else "passive" if score <= 8 else "promoter"
            else:
                group = "bad" if score <= 2 else "ok" if score == 3 else "good"
            data["comment"] = text.comment(rng, f"{kind}-{group}", self.lang)
        data["source"] = source
        self.add(day, rng.randint(7 * 60, 21 * 60), "survey.responded", data)

    def _usage(self, changes: list[tuple[int, bool, int]]) -> None:
        rng, until, log = self.rng, self.until, self.log
        window = until - _USAGE_DAYS + 1
        stops = [day for day, paying, _ in changes if not paying]
        max_seats = max((seats for _, _, seats in changes), default=0)
        users = [f"{self.account_id}-u{n}" for n in range(1, max_seats + 1)]
        index = bisect_right([day for day, _, _ in changes], window - 1) - 1
        core: list[str] = []
        for day in range(window, until + 1):
            while index + 1 < len(changes) and changes[index + 1][0] <= day:
                index += 1
            if index < 0 or not changes[index][1]:
                continue
            seats = changes[index][2]
            regulars = max(1, min(seats, round(seats * self.engagement * 1.2)))
            if len(core) != 2 * regulars:
                core = users[:regulars] * 2
            level = 0.5 if day % 7 not in (0, 6) else 0.1  # ordinal % 7: 6 is Saturday, 0 Sunday
            stop = stops[bisect_right(stops, day)] if stops and stops[-1] > day else 0
            if stop and stop - day < 75:  # disengages before leaving
                level *= 0.25 + 0.75 * (stop - day) / 75
            elif self.mood == "unhappy":
                level *= 1 - 0.5 * (day - window) / _USAGE_DAYS
            count = int(regulars * level * (0.8 + 0.4 * rng.random()) + rng.random())
            offset = int(rng.random() * regulars)
            active = core[offset : offset + count]
            if seats > regulars and rng.random() < 0.3:
                active.append(users[regulars + int(rng.random() * (seats - regulars))])
            data = {"account_id": self.account_id, "day": _iso(day), "user_ids": active}
            event_id = f"demo-usa-{self.key}-{_iso(day)}"
            log.append((day, _USAGE_MINUTE, len(log), event_id, "usage.recorded", data))


def _fx_events(seed: int, start: int, until: int, reporting: str) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"kpibot-demo:{seed}:fx")
    usd = {"USD": 1.0, "EUR": rng.uniform(1.06, 1.10), "GBP": rng.uniform(1.24, 1.29)}
    bounds = {"EUR": (1.03, 1.17, 1.10), "GBP": (1.18, 1.36, 1.27)}  # low, high, long-run mean
    monday = start + 7 - date.fromordinal(start).weekday()
    for day in [start, *range(monday, until + 1, 7)]:
        if day != start:
            for currency, (low, high, mean) in bounds.items():
                moved = usd[currency] + 0.05 * (mean - usd[currency]) + rng.gauss(0, 0.007)
                usd[currency] = min(high, max(low, moved))
        for base in CURRENCIES:
            if base == reporting:
                continue
            value = usd[base] / usd[reporting]
            rate = f"{value:.4f}" if reporting == "USD" else f"{value:.6f}"
            yield {
                "id": f"demo-fx-{base}{reporting}-{_iso(day)}",
                "type": "fx.rate",
                "occurred_at": _iso(day) + _TIMES[0],
                "data": {"base": base, "quote": reporting, "rate": rate, "on": _iso(day)},
            }


def _cost_events(
    seed: int, start: int, month_starts: list[int], customers: list[int], currency: str
) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"kpibot-demo:{seed}:costs")
    first_year = date.fromordinal(start).year
    for month, month_start in enumerate(month_starts):
        period_start = max(start, month_start)
        period_end = _add_months(month_start, 1) - 1
        share = (period_end - period_start + 1) / (period_end - month_start + 1)
        scale = (
            share * 1.03 ** (date.fromordinal(month_start).year - first_year) * _PER_USD[currency]
        )
        csms = max(1, math.ceil(customers[month] / 700))
        amounts = {
            "cs-salaries": (csms * 7400 + 10500) * rng.uniform(0.98, 1.02) * scale,
            "cs-tools": (350 + 1.6 * customers[month]) * rng.uniform(0.95, 1.05) * scale,
        }
        for category, amount in amounts.items():
            yield {
                "id": f"demo-cost-{_iso(month_start)[:7]}-{category}",
                "type": "cost.recorded",
                "occurred_at": _iso(period_start) + _TIMES[8 * 60],
                "data": {
                    "cost_id": f"cost-{_iso(month_start)[:7]}-{category}",
                    "period_start": _iso(period_start),
                    "period_end": _iso(period_end),
                    "amount": _money(round(amount * 100)),
                    "currency": currency,
                    "category": category,
                },
            }


def generate_demo_events(
    *,
    accounts: int = 200,
    years: int = 3,
    seed: int = 42,
    until: date,
    currency: str = "USD",
    shard: tuple[int, int] = (0, 1),
) -> Iterator[dict[str, Any]]:
    """Yield native events for `accounts` accounts over `years` years ending on `until`.

    Deterministic: the same arguments always yield the same events, in the same order.
    With `shard=(k, n)` only the k-th of n slices is yielded, for parallel loading: the exchange
    rates (in every slice, so each one converts on its own), account N's events when N % n == k,
    and the costs in slice 0. The n slices together hold exactly the events of one whole run.
    """
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    if currency not in CURRENCIES:
        raise ValueError(f"the demo reports in one of {', '.join(CURRENCIES)}, not {currency!r}")
    if years < 1 or accounts < 0:
        raise ValueError("years must be at least 1 and accounts at least 0")
    end = until.toordinal()
    start = (until - timedelta(days=round(365.25 * years))).toordinal()
    first_month = date.fromordinal(start).replace(day=1).toordinal()
    month_starts = []
    while first_month <= end:
        month_starts.append(first_month)
        first_month = _add_months(first_month, 1)
    customers = [0] * len(month_starts)
    yield from _fx_events(seed, start, end, currency)
    used_slugs: set[str] = set()
    for n in range(1, accounts + 1):
        account = _Account(n, seed, start, end, used_slugs)  # every slice takes every name
        if n % count == index:
            account.run()
            yield from account.events(month_starts, customers)
        elif index == 0:  # the costs, in slice 0, follow every account's customer months
            account.run()
            account.count_customers(month_starts, customers)
    if index == 0:
        yield from _cost_events(seed, start, month_starts, customers, currency)
