"""Account health (KPIS.md, Engagement and health): four signals, weighted, and the `health` metric.

Each signal scores 0–100 on the day `end` (a local date; "at end" = at the end of that day):

- usage: the account's stickiness over the 30 days ending with `end` (`metrics.usage`) × 2, capped
  at 100 (50 % or more scores 100); missing when the account has no active user in those days;
- NPS: the account's latest NPS response up to `end` (latest `responded_at`, then `response_id`),
  rescaled to 0–100: `(score − min) × 100 ÷ (max − min)`, i.e. score × 10 on 0–10; missing without
  an NPS response;
- MRR trend: MRR at `end` against MRR at `end − 90 days`: higher 100 (growing), equal 70 (flat, to
  the cent), lower 30 (shrinking); missing when the account paid nothing on either day;
- CSAT: "latest positive share", read as the share (× 100) of positive answers among the account's
  CSAT responses of the 90 days ending with `end`, positive as the `csat` metric defines it (top
  quarter of the scale, compared on integers); missing without a CSAT response in those days.

The score is Σ weight × signal score ÷ Σ weight over the signals present (weights from
`MetricConfig.health_weights`: a missing signal's weight is spread over the others in proportion),
rounded half-up to 1 decimal; None when no signal is present. Bands read the rounded score: green
≥ 70, yellow ≥ 40, red below. The `health` metric is the mean of its customers' rounded scores (the
customers without a score are counted in no band and left out of the mean), rounded to 1 decimal.

Each signal is one query for a whole batch of accounts, never one per account: `account_health`
sends its ids in `IN` lists of 500; the metric filters every signal by the customer query itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any, Literal

from sqlalchemy import Select, case, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics import ledger
from metrics.context import TOTAL, HealthWeights, MetricConfig, MetricContext, Scope
from metrics.ledger import ZERO, Running
from metrics.periods import Period
from metrics.responses import csat_signal, kept_responses, nps_signal
from metrics.result import InputValue, Value
from metrics.usage import Usage, account_stickiness, account_usage
from metrics.usage_days import kept_usage
from storage.apply import chunks
from storage.revisions import STOCKS, SURVEYS, USAGE
from storage.tables import MrrMovement, SurveyResponse
from storage.types import Money

Values = dict[str, Value]
Band = Literal["green", "yellow", "red"]
Accounts = Collection[str] | Select[Any] | None  # account ids, a query of them, or all
SIGNALS = ("usage", "nps", "mrr_trend", "csat")
HEALTH_FAMILIES = (STOCKS, SURVEYS, USAGE)  # what the signals are computed from
TREND_DAYS = 90
CSAT_DAYS = 90
GREEN = Decimal(70)
YELLOW = Decimal(40)
TENTH = Decimal("0.1")
HUNDRED = Decimal(100)
NO_CUSTOMERS = "no paying customers at the end of the period"
NO_SIGNAL = "no customer has a health signal"
TREND_SCORES = {"growing": Decimal(100), "flat": Decimal(70), "shrinking": Decimal(30)}


@dataclass(frozen=True)
class Signal:
    """One signal of an account's health: its score (0–100) and the share of the health it has."""

    score: Decimal
    weight: Decimal  # the configured weight rescaled over the signals present: they sum to 1


@dataclass(frozen=True)
class AccountHealth:
    """An account's health (0–100, 1 decimal; None without any signal), band and signals used."""

    score: Decimal | None = None
    band: Band | None = None
    signals: dict[str, Signal] = field(default_factory=dict)


def band(score: Decimal) -> Band:
    """Return the band of a health score: green ≥ 70, yellow ≥ 40, red below."""
    if score >= GREEN:
        return "green"
    return "yellow" if score >= YELLOW else "red"


def combine(scores: dict[str, Decimal], weights: HealthWeights) -> AccountHealth:
    """Return the health of an account from its signal scores: the weights of the present ones."""
    shares = _shares(tuple(name for name in SIGNALS if name in scores), weights)
    score = weighted_score(scores, weights)
    if score is None:
        return AccountHealth()
    signals = {name: Signal(scores[name], share) for name, share in shares}
    return AccountHealth(score, band(score), signals)


def weighted_score(scores: dict[str, Decimal], weights: HealthWeights) -> Decimal | None:
    """Σ weight × score ÷ Σ weight over the signals in `scores`, half-up to 1 decimal.

    None when their weights sum to 0. One division of exact sums: equal to Σ share × score with
    the rescaled shares, without rounding each share first (so a score exactly on a twentieth,
    such as 87.25, is never computed as 87.2499… and rounded down).
    """
    return _rounded(*_sums(scores.items(), _configured(weights)))


def _sums(
    scores: Iterable[tuple[str, Decimal]], configured: dict[str, Decimal]
) -> tuple[Decimal, Decimal]:
    """(Σ weight × score, Σ weight) over (signal, score) pairs."""
    weighted, total = Decimal(0), Decimal(0)
    for name, score in scores:
        weighted += configured[name] * score
        total += configured[name]
    return weighted, total


def _rounded(weighted: Decimal, total: Decimal) -> Decimal | None:
    """weighted ÷ total, half-up to 1 decimal (None when the weights sum to 0)."""
    if total <= 0:
        return None
    return (weighted / total).quantize(TENTH, rounding=ROUND_HALF_UP)


@cache
def _configured(weights: HealthWeights) -> dict[str, Decimal]:
    return {
        "usage": weights.usage,
        "nps": weights.nps,
        "mrr_trend": weights.mrr_trend,
        "csat": weights.csat,
    }


@cache
def _shares(present: tuple[str, ...], weights: HealthWeights) -> tuple[tuple[str, Decimal], ...]:
    """The weights of the `present` signals rescaled to sum to 1 (none if they sum to 0)."""
    configured = _configured(weights)
    total = sum((configured[name] for name in present), Decimal(0))
    if total <= 0:
        return ()
    return tuple((name, configured[name] / total) for name in present)


def account_health(
    session: Session, config: MetricConfig, account_ids: Iterable[str], end: date
) -> dict[str, AccountHealth]:
    """Return the health of each account at the end of `end`, signals fetched per batch."""
    wanted = sorted(set(account_ids))
    scores: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for part in chunks(wanted):
        _merge(scores, signal_scores(session, part, end))
    return {
        account_id: combine(scores.get(account_id, {}), config.health_weights)
        for account_id in wanted
    }


def signal_scores(session: Session, accounts: Accounts, end: date) -> dict[str, dict[str, Decimal]]:
    """Return each signal's score (0–100) per account of `accounts` (ids or a query) that has it."""
    return {
        "usage": _usage_scores(session, accounts, end),
        "nps": _nps_scores(session, accounts, end),
        "mrr_trend": _trend_scores(session, accounts, end),
        "csat": _csat_scores(session, accounts, end),
    }


def _among(column: Any, accounts: Accounts) -> list[Any]:
    """The condition restricting `column` to `accounts` (none when all accounts are wanted)."""
    return [] if accounts is None else [column.in_(accounts)]


def _merge(scores: dict[str, dict[str, Decimal]], found: dict[str, dict[str, Decimal]]) -> None:
    for name, per_account in found.items():
        for account_id, score in per_account.items():
            scores[account_id][name] = score


def _usage_scores(session: Session, accounts: Accounts, end: date) -> dict[str, Decimal]:
    return _stickiness_scores(account_usage(session, end, accounts).items())


def _stickiness_scores(usage: Iterable[tuple[str, Usage]]) -> dict[str, Decimal]:
    """The usage score of each (account, usage): stickiness × 2, capped at 100."""
    scores = {}
    for account_id, found in usage:
        stickiness = found.stickiness
        if stickiness is not None:
            scores[account_id] = min(HUNDRED, stickiness * 2)
    return scores


def _nps_scores(session: Session, accounts: Accounts, end: date) -> dict[str, Decimal]:
    account = col(SurveyResponse.account_id)
    newest_first = func.row_number().over(
        partition_by=account,
        order_by=(col(SurveyResponse.responded_at).desc(), col(SurveyResponse.response_id).desc()),
    )
    ranked = (
        select(
            account.label("account_id"),
            col(SurveyResponse.score).label("score"),
            col(SurveyResponse.scale_min).label("low"),
            col(SurveyResponse.scale_max).label("high"),
            newest_first.label("rank"),
        )
        .where(
            col(SurveyResponse.kind) == "nps",
            col(SurveyResponse.day) <= end,
            *_among(account, accounts),
        )
        .subquery("ranked")
    )
    latest = select(ranked.c.account_id, ranked.c.score, ranked.c.low, ranked.c.high).where(
        ranked.c.rank == 1
    )
    return {
        account_id: nps_signal(score, low, high)
        for account_id, score, low, high in session.execute(latest)
    }


def _trend_scores(session: Session, accounts: Accounts, end: date) -> dict[str, Decimal]:
    then = end - timedelta(days=TREND_DAYS)
    change = col(MrrMovement.mrr_after) - col(MrrMovement.mrr_before)
    query = (
        select(
            col(MrrMovement.account_id),
            type_coerce(func.sum(case((col(MrrMovement.day) <= then, change), else_=0)), Money),
            type_coerce(func.sum(change), Money),
        )
        .where(col(MrrMovement.day) <= end, *_among(col(MrrMovement.account_id), accounts))
        .group_by(col(MrrMovement.account_id))
    )
    return _trends(
        (account, then or ZERO, now or ZERO) for account, then, now in session.execute(query)
    )


def _trends(rows: Iterable[tuple[str, Decimal, Decimal]]) -> dict[str, Decimal]:
    """The trend score of each (account, MRR then, MRR now) where either is above 0."""
    scores = {}
    for account_id, mrr_then, mrr_now in rows:
        if not mrr_then and not mrr_now:
            continue
        trend = "growing" if mrr_now > mrr_then else "flat" if mrr_now == mrr_then else "shrinking"
        scores[account_id] = TREND_SCORES[trend]
    return scores


def _kept_trends(kept: dict[str, Running], end: date) -> dict[str, Decimal]:
    """`_trend_scores` of every account, from the running MRR kept in memory."""
    then = end - timedelta(days=TREND_DAYS)
    return _trends(
        (account_id, run.mrr_at(then), run.mrr_at(end)) for account_id, run in kept.items()
    )


def _csat_scores(session: Session, accounts: Accounts, end: date) -> dict[str, Decimal]:
    score, low, high = (
        col(SurveyResponse.score),
        col(SurveyResponse.scale_min),
        col(SurveyResponse.scale_max),
    )
    positive = (score - low) * 4 >= (high - low) * 3  # top quarter of the scale, as `csat` reads
    query = (
        select(
            col(SurveyResponse.account_id),
            func.sum(case((positive, 1), else_=0)),
            func.count(),
        )
        .where(
            col(SurveyResponse.kind) == "csat",
            col(SurveyResponse.day) > end - timedelta(days=CSAT_DAYS),
            col(SurveyResponse.day) <= end,
            *_among(col(SurveyResponse.account_id), accounts),
        )
        .group_by(col(SurveyResponse.account_id))
    )
    return {
        account_id: csat_signal(int(positives), int(responses))
        for account_id, positives, responses in session.execute(query)
    }


def customers_query(ctx: MetricContext, day: date) -> Select[Any]:
    """The (group key, account id) of the accounts whose MRR at the end of `day` is above 0."""
    key = ctx.scope.key_column().label("key")
    account = col(MrrMovement.account_id)
    mrr = func.sum(col(MrrMovement.mrr_after)) - func.sum(col(MrrMovement.mrr_before))
    query: Select[Any] = (
        select(key, account.label("account_id"))
        .where(col(MrrMovement.day) <= day)
        .group_by(account, key)
        .having(mrr > 0)
    )
    return ctx.scope.restrict(query, account)


def _paying(ctx: MetricContext, day: date) -> frozenset[str]:
    """Every account paying at the end of `day`, whatever the scope: kept per stocks revision."""

    def read() -> frozenset[str]:
        kept = ledger.account_series(ctx)
        if kept is None:
            everyone = ctx.with_scope(Scope())
            return frozenset(a for _, a in ctx.session.execute(customers_query(everyone, day)))
        return frozenset(a for a, run in kept.items() if run.mrr_at(day) > 0)

    return ledger.per_day(ctx, (STOCKS,), ("paying", day), read)


def _customers(ctx: MetricContext, day: date) -> dict[str, list[str]]:
    """The accounts paying at the end of `day`, per group: from memory when kept, else SQL."""

    def read() -> dict[str, list[str]]:
        group_of = ledger.members(ctx)
        groups: dict[str, list[str]] = defaultdict(list)
        if group_of is None:
            for group, account_id in ctx.session.execute(customers_query(ctx, day)):
                groups[group].append(account_id)
            return groups
        paying = _paying(ctx, day)
        for account_id, group in group_of.items():
            if account_id in paying:
                groups[group].append(account_id)
        return groups

    return ledger.per_day(ctx, (STOCKS,), ("customers", ctx.scope, day), read)


def account_scores(ctx: MetricContext, end: date) -> dict[str, Decimal]:
    """The health score at the end of `end` of every account paying then that has a signal.

    Kept until the stocks change, whatever scope asks; usage and survey events patch the
    accounts they marked. Each signal's scores are kept the same way, per its own family.
    """
    weights = ctx.config.health_weights

    def compute() -> dict[str, Decimal]:
        return _scores(_signals(ctx, end), weights, _paying(ctx, end))

    def patch(scores: dict[str, Decimal], changed: frozenset[str]) -> dict[str, Decimal]:
        fresh = _scores(_signals(ctx, end), weights, changed & _paying(ctx, end))
        return ledger.replaced(scores, changed, fresh)

    return ledger.per_day(ctx, HEALTH_FAMILIES, ("health", end, weights), compute, patch=patch)


def _scores(
    signals: dict[str, dict[str, Decimal]], weights: HealthWeights, accounts: Iterable[str]
) -> dict[str, Decimal]:
    """The health score of each of `accounts` that has a signal, from each signal's scores.

    The sums of the signals other than usage are computed once per distinct set of their scores
    (a few hundred for thousands of accounts), then each account adds its usage score.
    """
    configured = _configured(weights)
    usage, usage_weight = signals["usage"], configured["usage"]
    others = [(name, found) for name, found in signals.items() if name != "usage"]
    sums: dict[tuple[Decimal | None, ...], tuple[Decimal, Decimal]] = {}
    scores = {}
    for account_id in accounts:
        key = tuple(found.get(account_id) for _, found in others)
        rest = sums.get(key)
        if rest is None:
            named = zip((name for name, _ in others), key, strict=True)
            present = [(name, score) for name, score in named if score is not None]
            rest = sums[key] = _sums(present, configured)
        weighted, total = rest
        found = usage.get(account_id)
        if found is not None:
            weighted, total = weighted + usage_weight * found, total + usage_weight
        score = _rounded(weighted, total)
        if score is not None:
            scores[account_id] = score
    return scores


_RECENT_DAYS = 4  # days recently asked, whose health the warmer computes again after a change
_recent_days: ledger.Recent[date] = ledger.Recent(_RECENT_DAYS)


def warm(ctx: MetricContext) -> None:
    """Compute the health of the days recently asked, if the data changed since (the warmer).

    Nothing without every family's token: nothing would be kept.
    """
    if any(ledger.revision(ctx, family) is None for family in HEALTH_FAMILIES):
        return
    for end in _recent_days.items():
        account_scores(ctx, end)


def _signals(ctx: MetricContext, end: date) -> dict[str, dict[str, Decimal]]:
    """Each signal's scores of every account, at `end`: from memory when kept, else one query."""
    session = ctx.session

    def usage(accounts: Collection[str] | None = None) -> dict[str, Decimal]:
        kept = kept_usage(ctx)
        if kept is not None:
            windows = kept.windows(end)
            wanted = windows.keys() if accounts is None else windows.keys() & accounts
            return _stickiness_scores((a, Usage(*windows[a])) for a in wanted)
        if accounts is None:
            return _usage_scores(session, None, end)
        return {
            account_id: min(HUNDRED, stickiness * 2)
            for account_id, stickiness in account_stickiness(session, accounts, end).items()
            if stickiness is not None
        }

    def patch_usage(scores: dict[str, Decimal], changed: frozenset[str]) -> dict[str, Decimal]:
        return ledger.replaced(scores, changed, usage(changed))

    def trend() -> dict[str, Decimal]:
        series = ledger.account_series(ctx)
        return _trend_scores(session, None, end) if series is None else _kept_trends(series, end)

    def nps(accounts: Collection[str] | None = None) -> dict[str, Decimal]:
        kept = kept_responses(ctx)
        if kept is None:
            return _nps_scores(session, accounts, end)
        return kept.nps_scores(end, accounts)

    def csat(accounts: Collection[str] | None = None) -> dict[str, Decimal]:
        kept = kept_responses(ctx)
        if kept is None:
            return _csat_scores(session, accounts, end)
        return kept.csat_scores(end, CSAT_DAYS, accounts)

    def patch_nps(scores: dict[str, Decimal], changed: frozenset[str]) -> dict[str, Decimal]:
        return ledger.replaced(scores, changed, nps(changed))

    def patch_csat(scores: dict[str, Decimal], changed: frozenset[str]) -> dict[str, Decimal]:
        return ledger.replaced(scores, changed, csat(changed))

    return {
        "usage": ledger.per_day(ctx, (USAGE,), ("usage scores", end), usage, patch=patch_usage),
        "nps": ledger.per_day(ctx, (SURVEYS,), ("nps scores", end), nps, patch=patch_nps),
        "mrr_trend": ledger.per_day(ctx, (STOCKS,), ("trend scores", end), trend),
        "csat": ledger.per_day(ctx, (SURVEYS,), ("csat scores", end), csat, patch=patch_csat),
    }


def health(ctx: MetricContext, period: Period) -> Values:
    """Mean health of the customers at the period's end, with how many fall in each band."""
    groups = _customers(ctx, period.end)
    if ctx.scope.by is None:
        groups = {TOTAL: [], **groups}
    _recent_days.note(period.end)
    scores = account_scores(ctx, period.end)
    values: Values = {}
    for group, members in groups.items():
        scored = [scores[account_id] for account_id in members if account_id in scores]
        bands = [band(score) for score in scored]
        inputs: dict[str, InputValue] = {
            name: bands.count(name) for name in ("green", "yellow", "red")
        }
        inputs["scored"] = len(scored)
        if scored:
            mean = sum(scored, Decimal(0)) / len(scored)
            values[group] = Value(mean.quantize(TENTH, rounding=ROUND_HALF_UP), inputs)
        else:
            values[group] = Value.undefined(NO_SIGNAL if members else NO_CUSTOMERS, **inputs)
    return values
