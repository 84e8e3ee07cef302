"""Every metric kpibot answers: one entry each (KPIS.md), the source of `/kpi list` and `explain`.

An entry is pure data; `compute` names the function that computes it ("module:function"), imported
only when the metric is computed, so listing, parsing and help stay cheap. Adding a metric is one
entry here plus its function.
"""

from __future__ import annotations

import difflib
import importlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["stock", "flow", "rate"]
Unit = Literal["money", "percent", "count", "score", "ratio"]


@dataclass(frozen=True)
class Metric:
    """A metric's identity, how to read it, and where its computation lives."""

    id: str
    aliases: tuple[str, ...]
    kind: Kind
    unit: Unit
    label_en: str
    label_fr: str
    definition_en: str
    definition_fr: str
    compute: str  # "module:function", see metrics/compute.py for the signature
    higher_is_better: bool = True
    default_period: str = "mtd"
    group: str = "revenue"

    def label(self, locale: str = "en") -> str:
        """Return the metric's name for people."""
        return self.label_fr if locale.startswith("fr") else self.label_en

    def definition(self, locale: str = "en") -> str:
        """Return the metric's definition, as `/kpi explain` states it."""
        return self.definition_fr if locale.startswith("fr") else self.definition_en

    def function(self) -> Callable[..., Any]:
        """Import and return the function that computes this metric."""
        module, _, name = self.compute.partition(":")
        return getattr(importlib.import_module(module), name)


def _m(*args: Any, **kwargs: Any) -> Metric:
    return Metric(*args, **kwargs)


_MOVEMENT_FR = {
    "new": "nouveau MRR",
    "expansion": "MRR d'expansion",
    "contraction": "MRR de contraction",
    "churned": "MRR perdu (churn)",
    "reactivation": "MRR de réactivation",
}

METRICS: tuple[Metric, ...] = (
    _m(
        "mrr",
        ("revenue", "revenu-recurrent", "revenu-recurrent-mensuel"),
        "stock",
        "money",
        "MRR",
        "MRR",
        "Monthly recurring revenue at the end of the period: the sum of paying accounts' "
        "subscriptions normalised to a month, less recurring discounts.",
        "Revenu récurrent mensuel en fin de période : somme des abonnements des comptes payants "
        "ramenés au mois, remises récurrentes déduites.",
        "metrics.revenue:mrr",
        default_period="today",
    ),
    _m(
        "net-new-mrr",
        ("net-mrr", "mrr-net", "nouveau-mrr-net"),
        "flow",
        "money",
        "Net new MRR",
        "MRR net nouveau",
        "New + expansion + reactivation − contraction − churned MRR over the period.",
        "Nouveau + expansion + réactivation − contraction − churn du MRR sur la période.",
        "metrics.revenue:net_new_mrr",
    ),
    *(
        _m(
            f"{kind}-mrr",
            (f"mrr-{kind}", f"{kind}_mrr"),
            "flow",
            "money",
            f"{kind.capitalize()} MRR",
            _MOVEMENT_FR[kind][0].upper() + _MOVEMENT_FR[kind][1:],
            f"Sum of the {kind} MRR movements of the period (one per account per day, netted).",
            f"Somme des mouvements de {_MOVEMENT_FR[kind]} de la période (un par compte et par "
            "jour, nets).",
            f"metrics.revenue:{kind}_mrr",
            higher_is_better=kind not in ("contraction", "churned"),
        )
        for kind in ("new", "expansion", "contraction", "churned", "reactivation")
    ),
    _m(
        "expansion-rate",
        ("taux-expansion", "taux-d-expansion"),
        "rate",
        "percent",
        "Expansion rate",
        "Taux d'expansion",
        "(Expansion MRR of the period − of the previous period) ÷ expansion MRR of the previous "
        "period × 100.",
        "(MRR d'expansion de la période − celui de la période précédente) ÷ celui de la période "
        "précédente × 100.",
        "metrics.revenue:expansion_rate",
    ),
    _m(
        "arpa",
        ("revenu-moyen-par-compte",),
        "stock",
        "money",
        "ARPA",
        "Revenu moyen par compte",
        "MRR at the end of the period ÷ paying customers at the end.",
        "MRR en fin de période ÷ clients payants en fin de période.",
        "metrics.revenue:arpa",
        default_period="today",
    ),
    _m(
        "arpu",
        ("revenu-moyen", "revenu-moyen-par-utilisateur"),
        "flow",
        "money",
        "ARPU",
        "Revenu moyen par client",
        "Paid invoices in the period ÷ accounts that were customers at any time in it.",
        "Factures payées sur la période ÷ comptes clients à un moment de la période.",
        "metrics.revenue:arpu",
    ),
    _m(
        "churn",
        ("logo-churn", "churn-rate", "attrition", "desabonnement", "taux-de-churn"),
        "rate",
        "percent",
        "Logo churn",
        "Taux de churn (clients)",
        "Customers lost in the period ÷ customers at its start × 100 ({convention} convention).",
        "Clients perdus sur la période ÷ clients en début de période × 100 (convention "
        "{convention}).",
        "metrics.churn:churn",
        higher_is_better=False,
        group="churn",
    ),
    _m(
        "gross-revenue-churn",
        ("revenue-churn", "mrr-churn", "attrition-revenus", "grc"),
        "rate",
        "percent",
        "Gross revenue churn",
        "Churn de revenu brut",
        "(Churned + contraction MRR of the period) ÷ MRR at its start × 100.",
        "(MRR perdu + MRR de contraction de la période) ÷ MRR en début de période × 100.",
        "metrics.churn:gross_revenue_churn",
        higher_is_better=False,
        group="churn",
    ),
    _m(
        "net-revenue-churn",
        ("nrc", "churn-revenu-net"),
        "rate",
        "percent",
        "Net revenue churn",
        "Churn de revenu net",
        "(Churned + contraction − expansion − reactivation MRR) ÷ MRR at the start × 100; "
        "negative when growth from customers outweighs losses.",
        "(MRR perdu + contraction − expansion − réactivation) ÷ MRR en début de période × 100 ; "
        "négatif quand la croissance des clients dépasse les pertes.",
        "metrics.churn:net_revenue_churn",
        higher_is_better=False,
        group="churn",
    ),
    _m(
        "nrr",
        ("net-revenue-retention", "ndr", "retention-nette"),
        "rate",
        "percent",
        "Net revenue retention",
        "Rétention nette du revenu",
        "(MRR at the start + expansion − contraction − churned MRR) ÷ MRR at the start × 100.",
        "(MRR en début de période + expansion − contraction − churn) ÷ MRR en début × 100.",
        "metrics.churn:nrr",
        group="churn",
    ),
    _m(
        "grr",
        ("gross-revenue-retention", "retention-brute"),
        "rate",
        "percent",
        "Gross revenue retention",
        "Rétention brute du revenu",
        "(MRR at the start − contraction − churned MRR) ÷ MRR at the start × 100.",
        "(MRR en début de période − contraction − churn) ÷ MRR en début × 100.",
        "metrics.churn:grr",
        group="churn",
    ),
    _m(
        "retention",
        ("customer-retention", "crr", "fidelisation", "retention-clients"),
        "rate",
        "percent",
        "Customer retention",
        "Taux de rétention client",
        "(Customers at the end − new customers of the period) ÷ customers at the start × 100.",
        "(Clients en fin de période − nouveaux clients de la période) ÷ clients au début × 100.",
        "metrics.churn:retention",
        group="churn",
    ),
    _m(
        "renewal-rate",
        ("renouvellement", "taux-de-renouvellement", "renewals"),
        "rate",
        "percent",
        "Renewal rate",
        "Taux de renouvellement",
        "Contracts renewed ÷ contracts due in the period whose outcome is known × 100.",
        "Contrats renouvelés ÷ contrats arrivés à échéance sur la période au résultat connu × 100.",
        "metrics.churn:renewal_rate",
        group="churn",
    ),
    _m(
        "revenue-renewal-rate",
        ("renouvellement-revenu",),
        "rate",
        "percent",
        "Revenue renewal rate",
        "Taux de renouvellement du revenu",
        "Renewed amount ÷ amount due on the contracts due in the period with a known outcome "
        "× 100.",
        "Montant renouvelé ÷ montant dû des contrats arrivés à échéance au résultat connu × 100.",
        "metrics.churn:revenue_renewal_rate",
        group="churn",
    ),
    _m(
        "nps",
        ("net-promoter-score",),
        "rate",
        "score",
        "NPS",
        "NPS",
        "% promoters (9–10) − % detractors (0–6) of the NPS answers in the period, from −100 to "
        "100.",
        "% de promoteurs (9–10) − % de détracteurs (0–6) des réponses NPS de la période, de −100 "
        "à 100.",
        "metrics.satisfaction:nps",
        group="satisfaction",
    ),
    _m(
        "csat",
        ("satisfaction", "customer-satisfaction"),
        "rate",
        "percent",
        "CSAT",
        "CSAT",
        "Positive answers ÷ answers × 100; positive = in the top quarter of its scale (4–5 of "
        "1–5, 8–10 of 0–10).",
        "Réponses positives ÷ réponses × 100 ; positive = dans le quart haut de l'échelle (4–5 "
        "sur 1–5, 8–10 sur 0–10).",
        "metrics.satisfaction:csat",
        group="satisfaction",
    ),
    _m(
        "csat-avg",
        ("csat-moyen", "satisfaction-moyenne"),
        "rate",
        "ratio",
        "Average CSAT",
        "CSAT moyen",
        "Mean CSAT score on a 1–5 scale (other scales rescaled linearly).",
        "Note CSAT moyenne sur une échelle de 1 à 5 (les autres échelles ramenées linéairement).",
        "metrics.satisfaction:csat_avg",
        group="satisfaction",
    ),
    _m(
        "retention-cost",
        ("cout-de-retention", "cost-of-retention"),
        "flow",
        "money",
        "Retention cost per customer",
        "Coût de rétention par client",
        "Customer-success costs of the period (prorated by day) ÷ accounts that were customers "
        "at any time in it.",
        "Coûts du customer success sur la période (au prorata des jours) ÷ comptes clients à un "
        "moment de la période.",
        "metrics.value:retention_cost",
        higher_is_better=False,
        group="value",
    ),
    _m(
        "clv",
        ("ltv", "valeur-vie", "valeur-vie-client", "cltv"),
        "stock",
        "money",
        "Customer lifetime value",
        "Valeur vie client",
        "Average purchase × purchases per customer per year × lifetime in years, over the 12 "
        "months ending with the period; lifetime = 1 ÷ annual logo churn unless set.",
        "Achat moyen × achats par client et par an × durée de vie en années, sur les 12 mois "
        "finissant avec la période ; durée de vie = 1 ÷ churn annuel sauf réglage.",
        "metrics.value:clv",
        group="value",
    ),
    _m(
        "net-clv",
        ("clv-net", "valeur-vie-nette"),
        "stock",
        "money",
        "Net customer lifetime value",
        "Valeur vie client nette",
        "CLV − retention cost per customer per year × lifetime in years.",
        "Valeur vie client − coût de rétention par client et par an × durée de vie en années.",
        "metrics.value:net_clv",
        group="value",
    ),
    _m(
        "clv-arpa",
        ("ltv-arpa",),
        "stock",
        "money",
        "CLV (ARPA ÷ churn)",
        "Valeur vie (ARPA ÷ churn)",
        "ARPA ÷ monthly logo churn (mean of the 6 complete months before the period's end).",
        "ARPA ÷ churn mensuel (moyenne des 6 mois complets avant la fin de la période).",
        "metrics.value:clv_arpa",
        group="value",
    ),
    _m(
        "stickiness",
        ("dau-mau", "adherence", "engagement"),
        "rate",
        "percent",
        "Stickiness (DAU/MAU)",
        "Adhérence (DAU/MAU)",
        "Mean daily active users ÷ distinct users active over the 30 days ending with the period "
        "× 100.",
        "Utilisateurs actifs par jour en moyenne ÷ utilisateurs distincts actifs sur les 30 jours "
        "finissant avec la période × 100.",
        "metrics.usage:stickiness",
        default_period="today",
        group="engagement",
    ),
    _m(
        "repeat-purchase-rate",
        ("achat-repete", "repeat-purchase"),
        "rate",
        "percent",
        "Repeat purchase rate",
        "Taux d'achat répété",
        "Customers with 2+ paid invoices in the period ÷ customers with 1+ × 100.",
        "Clients avec 2 factures payées ou plus sur la période ÷ clients avec au moins 1 × 100.",
        "metrics.engagement:repeat_purchase_rate",
        group="engagement",
    ),
    _m(
        "health",
        ("health-score", "sante", "score-de-sante"),
        "stock",
        "score",
        "Account health",
        "Santé des comptes",
        "Mean health (0–100) of customers at the end of the period and how many are green "
        "(≥ 70), yellow (40–69) and red (< 40).",
        "Santé moyenne (0–100) des clients en fin de période, et combien sont verts (≥ 70), "
        "jaunes (40–69) et rouges (< 40).",
        "metrics.health:health",
        default_period="today",
        group="engagement",
    ),
    _m(
        "customers",
        ("clients", "accounts", "comptes", "logos"),
        "stock",
        "count",
        "Paying customers",
        "Clients payants",
        "Accounts with MRR above 0 at the end of the period.",
        "Comptes dont le MRR est supérieur à 0 en fin de période.",
        "metrics.revenue:customers",
        default_period="today",
    ),
)

_BY_NAME: dict[str, Metric] = {}
for _metric in METRICS:
    for _name in (_metric.id, *_metric.aliases):
        _BY_NAME[_name] = _metric


def normalise_name(text: str) -> str:
    """Fold case, accents, spaces and underscores: 'Désabonnement' → 'desabonnement'."""
    folded = unicodedata.normalize("NFKD", text.strip().lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return folded.replace("_", "-").replace(" ", "-").replace("'", "-")


def find_metric(name: str) -> Metric | None:
    """Return the metric named `name` (id or alias, English or French), if any."""
    return _BY_NAME.get(normalise_name(name))


def suggest_metrics(name: str, limit: int = 3) -> list[str]:
    """Return the ids of the metrics whose names are closest to `name`, best first."""
    matches = difflib.get_close_matches(normalise_name(name), list(_BY_NAME), n=10, cutoff=0.6)
    ids: list[str] = []
    for match in matches:
        metric_id = _BY_NAME[match].id
        if metric_id not in ids:
            ids.append(metric_id)
    return ids[:limit]


def get_metric(metric_id: str) -> Metric:
    """Return the metric with this exact id."""
    return next(m for m in METRICS if m.id == metric_id)
