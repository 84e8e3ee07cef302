"""Answer what a user types after `/kpi` or `kpibot kpi`: the one service behind both surfaces.

`ask` parses the text and returns a `Reply`: a computed `KpiResult`, or the lines of help, the
metric list or a metric's definition. Problems with the text raise `QueryError` (see query.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from metrics.accounts import AccountCard, account_card, find_accounts
from metrics.compute import compute_kpi
from metrics.context import MetricConfig
from metrics.periods import PERIOD_EXAMPLES
from metrics.query import DIMENSIONS, Command, KpiQuery, parse_command
from metrics.registry import METRICS, Metric
from metrics.result import KpiResult

MAX_OTHER_MATCHES = 4  # other accounts named after a card, when the name matched several

_GROUPS = {
    "revenue": ("Revenue", "Revenu"),
    "churn": ("Churn and retention", "Churn et rétention"),
    "satisfaction": ("Satisfaction", "Satisfaction"),
    "value": ("Value and cost", "Valeur et coûts"),
    "engagement": ("Engagement and health", "Engagement et santé"),
}


@dataclass(frozen=True)
class Reply:
    """What to show: a KPI `result` (with the `query` behind it), an account card, or lines."""

    command: Command
    result: KpiResult | None = None
    lines: tuple[str, ...] = field(default_factory=tuple)
    card: AccountCard | None = None  # kind == "account"; `lines` then names other matches

    @property
    def query(self) -> KpiQuery | None:
        """The parsed KPI question, when the text was one."""
        return self.command.query


def ask(
    text: str, *, session: Session, config: MetricConfig, now: datetime, locale: str = "en"
) -> Reply:
    """Parse `text` and answer it: a KPI result, help, the metric list or a definition."""
    command = parse_command(text, now=now, timezone=config.timezone, fiscal=config.fiscal)
    return answer(command, session=session, config=config, now=now, locale=locale)


def answer(
    command: Command, *, session: Session, config: MetricConfig, now: datetime, locale: str = "en"
) -> Reply:
    """Answer a parsed command (callers that check who may ask what parse first, then answer)."""
    french = locale.startswith("fr")
    if command.kind == "metric":
        assert command.query is not None
        query = command.query
        result = compute_kpi(
            session=session,
            metric=query.metric,
            period=query.period,
            config=config,
            locale=locale,
            filters=query.filters,
            by=query.by,
            compare=query.compare,
        )
        return Reply(command, result=result)
    if command.kind == "list":
        return Reply(command, lines=tuple(metric_list(locale)))
    if command.kind == "explain":
        assert command.metric is not None
        return Reply(command, lines=tuple(explain(command.metric, config, locale)))
    if command.kind == "account":
        matches = find_accounts(session, command.argument, limit=MAX_OTHER_MATCHES + 1)
        card = account_card(session, account_id=matches[0].account_id, config=config, now=now)
        others = tuple(f"{m.name} ({m.account_id})" for m in matches[1:])
        return Reply(command, card=card, lines=others)
    if command.kind == "digest":
        waiting = (
            "Les digests arrivent bientôt : cette commande n'est pas encore disponible."
            if french
            else "Digests are coming: this command is not available yet."
        )
        return Reply(command, lines=(waiting,))
    return Reply(command, lines=tuple(help_lines(locale)))


def metric_list(locale: str = "en") -> list[str]:
    """Return every metric, grouped, with its aliases."""
    french = locale.startswith("fr")
    lines = []
    for group, names in _GROUPS.items():
        lines.append(names[1] if french else names[0])
        for metric in (m for m in METRICS if m.group == group):
            aliases = ", ".join(metric.aliases[:3])
            lines.append(f"  {metric.id:<22} {metric.label(locale)}  ({aliases})")
    return lines


def explain(metric: Metric, config: MetricConfig, locale: str = "en") -> list[str]:
    """Return a metric's definition, kind, unit and the conventions in force."""
    french = locale.startswith("fr")
    definition = metric.definition(locale).format(convention=config.churn_convention)
    lines = [f"{metric.label(locale)} ({metric.id})", definition]
    better = (
        ("plus haut est mieux" if french else "higher is better")
        if metric.higher_is_better
        else ("plus bas est mieux" if french else "lower is better")
    )
    lines.append(
        (f"Période par défaut : {metric.default_period} ; {better}.")
        if french
        else f"Default period: {metric.default_period}; {better}."
    )
    zone = (
        f"{config.timezone}, {config.currency}, fiscal year from month {config.fiscal.start_month}"
    )
    lines.append(f"Conventions : {zone}." if french else f"Conventions: {zone}.")
    if metric.aliases:
        lines.append(("Autres noms : " if french else "Also: ") + ", ".join(metric.aliases))
    return lines


def help_lines(locale: str = "en") -> list[str]:
    """Return how to ask, with examples."""
    periods = ", ".join(PERIOD_EXAMPLES[:10])
    dimensions = "|".join(DIMENSIONS)
    if locale.startswith("fr"):
        return [
            "Demandez un indicateur : /kpi <indicateur> [période] [par "
            f"{dimensions}] [où dim=valeur] [vs précédent|annee-derniere] [partager]",
            "Exemples : /kpi churn trimestre-dernier · /kpi mrr par offre · /kpi nps 2026-Q3 "
            "où segment=enterprise",
            f"Périodes : {periods}, …",
            "/kpi liste : tous les indicateurs · /kpi explique <indicateur> : sa définition",
        ]
    return [
        f"Ask for a KPI: /kpi <metric> [period] [by {dimensions}] [where dim=value] "
        "[vs previous|last-year] [share]",
        "Examples: /kpi churn last-quarter · /kpi mrr by plan · /kpi nps 2026-Q3 where "
        "segment=enterprise",
        f"Periods: {periods}, …",
        "/kpi list: every metric · /kpi explain <metric>: its definition and conventions",
    ]
