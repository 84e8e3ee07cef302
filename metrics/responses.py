"""Each account's NPS and CSAT responses kept in memory per data revision, for health's signals.

Health asks, for every account and for two days (the period's end and the previous period's), the
latest NPS response up to that day and the share of positive CSAT responses in the 90 days before
it: two window queries over every response. Both signals are read from this per-account copy
instead. Responses change with survey events, which mark their accounts (`storage.revisions`:
`SURVEYS` is marked per account), and the copy is patched for the accounts marked since it was
read (`metrics.ledger.tracked`); a new token (`kpibot rebuild`, a backfill marking more than
`MARK_LIMIT` accounts) has it read again whole.

The scores are computed exactly as `metrics.health`'s SQL reads them: the latest NPS response is the
greatest (`responded_at`, `response_id`) among those of a `day` up to the end, rescaled to 0–100; a
CSAT response is positive in the top quarter of its scale, compared on integers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics import ledger
from metrics.context import MetricContext
from storage.apply import chunks
from storage.revisions import SURVEYS
from storage.tables import SurveyResponse

HUNDRED = Decimal(100)
FETCH_ROWS = 10_000  # rows fetched at a time when reading every response


@cache  # a handful of distinct (score, scale) pairs, read once per response
def nps_signal(score: int, low: int, high: int) -> Decimal:
    """An NPS answer rescaled to 0–100: `(score − min) × 100 ÷ (max − min)`."""
    return Decimal(score - low) * HUNDRED / Decimal(high - low)


def csat_signal(positives: int, responses: int) -> Decimal:
    """The share (× 100) of positive CSAT answers among `responses`."""
    return Decimal(positives) * HUNDRED / Decimal(responses)


@dataclass(frozen=True)
class KeptResponses:
    """Per account: NPS responses as (day, score 0–100) and CSAT ones as (day, positive).

    Both in (`responded_at`, `response_id`) order.
    """

    nps: dict[str, Sequence[tuple[date, Decimal]]]
    csat: dict[str, Sequence[tuple[date, bool]]]

    def nps_scores(self, end: date, accounts: Collection[str] | None = None) -> dict[str, Decimal]:
        """Each account's (of `accounts`, default all) latest NPS response of a day up to `end`,
        rescaled to 0–100."""
        scores = {}
        for account_id, answers in _of(self.nps, accounts):
            for day, score in reversed(answers):
                if day <= end:
                    scores[account_id] = score
                    break
        return scores

    def csat_scores(
        self, end: date, days: int, accounts: Collection[str] | None = None
    ) -> dict[str, Decimal]:
        """Each account's (of `accounts`, default all) share (× 100) of positive CSAT responses
        of the `days` ending on `end`."""
        after = end - timedelta(days=days)
        scores = {}
        for account_id, answers in _of(self.csat, accounts):
            window = [positive for day, positive in answers if after < day <= end]
            if window:
                scores[account_id] = csat_signal(sum(window), len(window))
        return scores

    def patched(self, session: Session, changed: frozenset[str]) -> KeptResponses:
        """This copy with the responses of the `changed` accounts read again."""
        fresh = _read(session, changed)
        return KeptResponses(
            ledger.replaced(self.nps, changed, fresh.nps),
            ledger.replaced(self.csat, changed, fresh.csat),
        )


def _of(
    per_account: Mapping[str, Sequence[tuple[date, Any]]], accounts: Collection[str] | None
) -> Iterable[tuple[str, Sequence[tuple[date, Any]]]]:
    if accounts is None:
        return per_account.items()
    return ((a, per_account[a]) for a in accounts if a in per_account)


def _read(session: Session, accounts: Collection[str] | None = None) -> KeptResponses:
    """Every attributed response, or those of `accounts`."""
    if accounts is not None:
        parts = [
            _read_where(session, col(SurveyResponse.account_id).in_(part))
            for part in chunks(sorted(accounts))
        ]
        return KeptResponses(
            {a: found for part in parts for a, found in part.nps.items()},
            {a: found for part in parts for a, found in part.csat.items()},
        )
    return _read_where(session, col(SurveyResponse.account_id).is_not(None))


def _read_where(session: Session, where: Any) -> KeptResponses:
    nps: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    csat: dict[str, list[tuple[date, bool]]] = defaultdict(list)
    query = (
        select(
            col(SurveyResponse.kind),
            col(SurveyResponse.account_id),
            col(SurveyResponse.day),
            col(SurveyResponse.score),
            col(SurveyResponse.scale_min),
            col(SurveyResponse.scale_max),
        )
        .where(where)
        .order_by(
            col(SurveyResponse.kind),
            col(SurveyResponse.account_id),
            col(SurveyResponse.responded_at),
            col(SurveyResponse.response_id),
        )
    )
    # Core, fetched many rows at a time: rows stream (the ORM would buffer every response first).
    # The option goes on the statement: on the connection it would stay for the transaction.
    rows = session.connection().execute(query.execution_options(yield_per=FETCH_ROWS))
    for kind, account_id, day, score, low, high in rows:
        account = cast(str, account_id)  # never None: filtered above
        if kind == "nps":
            nps[account].append((day, nps_signal(score, low, high)))
        elif kind == "csat":
            csat[account].append((day, (score - low) * 4 >= (high - low) * 3))
    return KeptResponses(dict(nps), dict(csat))  # the lists are never changed after this


def kept_responses(ctx: MetricContext) -> KeptResponses | None:
    """The responses of the current revision, from memory (None: no token, read the database)."""
    return ledger.tracked(
        ctx,
        SURVEYS,
        "responses",
        refresh=lambda kept, changed: kept.patched(ctx.session, changed),
        build=lambda: _read(ctx.session),
    )
