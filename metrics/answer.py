"""The plain-text answer to a KPI question, in English or French: `kpibot kpi` and Slack's fallback.

One short line per idea, no Markdown, so it reads the same in a terminal and in a notification:

    Logo churn — Q3 2026 (1 Jul – 30 Sep 2026, Europe/Paris) where segment = enterprise
    1%
    ↓ -0.5 pts vs Q2 2026: 1.5% (better)
    5 of 500 customers at start churned
    By plan:
      gold    2.5%  5 of 200 customers at start churned
      silver    0%  0 of 300 customers at start churned
    Definition: Customers lost in the period ÷ customers at its start × 100.
    Data as of 23 Nov 2026, 14:05 (Europe/Paris)

Inputs are told in words where a metric has a sentence for them ("5 of 500 customers at start
churned"); any other input is "label: value". Whether an input is money is decided by its name
(`is_money_key`): computations name counts `new_customers`, `reactivated`, `churned` and amounts
`new`, `reactivation`, `churned_mrr`, `mrr_*`, `amount_*`. The undefined reason is shown as the
computation wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from metrics.format import (
    format_change,
    format_count,
    format_instant,
    format_money,
    format_percent,
    format_value,
    language,
    not_available,
    rounded_change,
)
from metrics.result import InputValue, KpiResult, Value

__all__ = [
    "MONEY_KEYS",
    "answer_lines",
    "answer_text",
    "describe_inputs",
    "format_input",
    "input_label",
    "is_money_key",
    "main_input",
]

MONEY_KEYS = frozenset(
    {"new", "expansion", "contraction", "reactivation", "churned_mrr", "mrr_start", "mrr_end"}
    | {"expansion_previous", "arpa", "arpu", "invoices_paid", "costs", "clv", "average_purchase"}
    | {"amount_due", "amount_renewed", "retention_cost", "retention_cost_per_year"}
)
PERCENT_KEYS = frozenset({"monthly_churn", "annual_churn", "churn_rate"})

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "colon": ":",
        "where": "where",
        "and": "and",
        "vs": "vs",
        "previous": "the previous period",
        "better": "better",
        "worse": "worse",
        "by": "By {by}",
        "breakdown": "Breakdown",
        "none": "(none)",
        "definition": "Definition",
        "as_of": "Data as of {instant}",
        "no_data": "No data yet",
    },
    "fr": {
        "colon": "\u00a0:",  # French sets a no-break space before a colon
        "where": "où",
        "and": "et",
        "vs": "par rapport à",
        "previous": "la période précédente",
        "better": "mieux",
        "worse": "moins bien",
        "by": "Par {by}",
        "breakdown": "Répartition",
        "none": "(aucun)",
        "definition": "Définition",
        "as_of": "Données à jour au {instant}",
        "no_data": "Aucune donnée pour l'instant",
    },
}

# Input names for people; `{k}_s` in a sentence is the plural mark of input `k` in that language.
_LABELS: dict[str, tuple[str, str]] = {
    "customers": ("paying customers", "clients payants"),
    "customers_start": ("customers at start", "clients au début"),
    "customers_end": ("customers at end", "clients à la fin"),
    "customers_any": ("customers in the period", "clients sur la période"),
    "churned": ("churned customers", "clients perdus"),
    "new_customers": ("new customers", "nouveaux clients"),
    "reactivated": ("reactivated customers", "clients réactivés"),
    "excluded": ("joined and churned, not counted", "arrivés et partis, non comptés"),
    "accounts": ("accounts", "comptes"),
    "mrr_start": ("MRR at start", "MRR au début"),
    "mrr_end": ("MRR at end", "MRR à la fin"),
    "new": ("new MRR", "nouveau MRR"),
    "expansion": ("expansion MRR", "MRR d'expansion"),
    "expansion_previous": ("expansion MRR, previous period", "MRR d'expansion, période précédente"),
    "contraction": ("contraction MRR", "MRR de contraction"),
    "churned_mrr": ("churned MRR", "MRR perdu"),
    "reactivation": ("reactivation MRR", "MRR de réactivation"),
    "arpa": ("ARPA", "ARPA"),
    "invoices_paid": ("paid invoices", "factures payées"),
    "costs": ("CS costs", "coûts CS"),
    "renewed": ("contracts renewed", "contrats renouvelés"),
    "due": ("contracts due", "contrats à échéance"),
    "pending": ("outcome pending", "résultat en attente"),
    "amount_renewed": ("amount renewed", "montant renouvelé"),
    "amount_due": ("amount due", "montant dû"),
    "promoters": ("promoters", "promoteurs"),
    "passives": ("passives", "passifs"),
    "detractors": ("detractors", "détracteurs"),
    "responses": ("responses", "réponses"),
    "positive": ("positive responses", "réponses positives"),
    "repeat_customers": ("customers with 2+ paid invoices", "clients avec 2+ factures payées"),
    "paying_customers": ("customers with a paid invoice", "clients avec une facture payée"),
    "dau": ("daily active users (mean)", "utilisateurs actifs par jour (moyenne)"),
    "mau": ("active users over 30 days", "utilisateurs actifs sur 30 jours"),
    "green": ("green accounts", "comptes verts"),
    "yellow": ("yellow accounts", "comptes jaunes"),
    "red": ("red accounts", "comptes rouges"),
    "average_purchase": ("average purchase", "achat moyen"),
    "purchases_per_year": ("purchases per customer per year", "achats par client et par an"),
    "lifetime_years": ("lifetime in years", "durée de vie en années"),
    "monthly_churn": ("monthly churn", "churn mensuel"),
    "annual_churn": ("annual churn", "churn annuel"),
}

_ACCOUNTS = ("{accounts} account{accounts_s}", "{accounts} compte{accounts_s}")
_SENTENCES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "churn": (
        ("churned", "customers_start"),
        "{churned} of {customers_start} customer{customers_start_s} at start churned",
        "{churned} client{churned_s} perdu{churned_s} sur {customers_start} en début de période",
    ),
    "retention": (
        ("customers_end", "new_customers", "customers_start"),
        "{customers_end} customer{customers_end_s} at end, {new_customers} of them new; "
        "{customers_start} at start",
        "{customers_end} client{customers_end_s} en fin de période, dont {new_customers} "
        "arrivé{new_customers_s} sur la période ; {customers_start} au début",
    ),
    "renewal-rate": (
        ("renewed", "due"),
        "{renewed} of {due} contract{due_s} due renewed",
        "{renewed} contrat{renewed_s} renouvelé{renewed_s} sur {due} arrivé{due_s} à échéance",
    ),
    "revenue-renewal-rate": (
        ("amount_renewed", "amount_due"),
        "{amount_renewed} renewed of {amount_due} due",
        "{amount_renewed} renouvelés sur {amount_due} dus",
    ),
    "nps": (
        ("promoters", "passives", "detractors", "responses"),
        "{promoters} promoter{promoters_s}, {passives} passive{passives_s}, {detractors} "
        "detractor{detractors_s} of {responses} response{responses_s}",
        "{promoters} promoteur{promoters_s}, {passives} passif{passives_s}, {detractors} "
        "détracteur{detractors_s} sur {responses} réponse{responses_s}",
    ),
    "csat": (
        ("positive", "responses"),
        "{positive} positive of {responses} response{responses_s}",
        "{positive} réponse{positive_s} positive{positive_s} sur {responses}",
    ),
    "stickiness": (
        ("dau", "mau"),
        "{dau} daily active user{dau_s} on average, {mau} over 30 days",
        "{dau} utilisateur{dau_s} actif{dau_s} par jour en moyenne, {mau} sur 30 jours",
    ),
    "repeat-purchase-rate": (
        ("repeat_customers", "paying_customers"),
        "{repeat_customers} of {paying_customers} paying customer{paying_customers_s} paid twice "
        "or more",
        "{repeat_customers} client{repeat_customers_s} sur {paying_customers} avec 2 factures "
        "payées ou plus",
    ),
    "health": (
        ("green", "yellow", "red"),
        "{green} green, {yellow} yellow, {red} red",
        "{green} vert{green_s}, {yellow} jaune{yellow_s}, {red} rouge{red_s}",
    ),
    "mrr": (
        ("customers", "arpa"),
        "{customers} paying customer{customers_s}, ARPA {arpa}",
        "{customers} client{customers_s} payant{customers_s}, ARPA {arpa}",
    ),
    "arpa": (
        ("mrr_end", "customers_end"),
        "{mrr_end} of MRR over {customers_end} customer{customers_end_s}",
        "{mrr_end} de MRR pour {customers_end} client{customers_end_s}",
    ),
    "arpu": (
        ("invoices_paid", "customers_any"),
        "{invoices_paid} of paid invoices over {customers_any} customer{customers_any_s}",
        "{invoices_paid} de factures payées pour {customers_any} client{customers_any_s}",
    ),
    "retention-cost": (
        ("costs", "customers_any"),
        "{costs} of CS costs over {customers_any} customer{customers_any_s}",
        "{costs} de coûts CS pour {customers_any} client{customers_any_s}",
    ),
    "expansion-rate": (
        ("expansion", "expansion_previous"),
        "{expansion} of expansion MRR, against {expansion_previous} in the previous period",
        "{expansion} de MRR d'expansion, contre {expansion_previous} sur la période précédente",
    ),
    "customers": (
        ("customers_start", "new_customers", "reactivated", "churned"),
        "{customers_start} at start, {new_customers} new, {reactivated} reactivated, "
        "{churned} churned",
        "{customers_start} au début, {new_customers} arrivé{new_customers_s}, {reactivated} "
        "réactivé{reactivated_s}, {churned} perdu{churned_s}",
    ),
    **{
        f"{kind}-mrr": (("accounts",), *_ACCOUNTS)
        for kind in ("new", "expansion", "contraction", "churned", "reactivation")
    },
}


def answer_lines(result: KpiResult, *, locale: str, timezone: str) -> list[str]:
    """Return the answer's lines: headline, value, change, inputs, breakdown, definition, as-of."""
    words = _WORDS[language(locale)]
    lines = [_headline(result, locale), _value_text(result.current, result, locale)]
    if result.previous is not None:
        lines.append(_change_line(result, locale))
    inputs = describe_inputs(
        result.metric, result.current.inputs, currency=result.currency, locale=locale
    )
    if inputs:
        lines.append(inputs)
    lines.extend(_breakdown_lines(result, locale))
    lines.append(f"{words['definition']}{words['colon']} {result.definition}")
    if result.data_as_of is None:
        lines.append(words["no_data"])
    else:
        instant = format_instant(result.data_as_of, timezone, locale)
        lines.append(words["as_of"].format(instant=instant))
    return lines


def answer_text(result: KpiResult, *, locale: str, timezone: str) -> str:
    """Return the answer as one text, its lines joined by newlines."""
    return "\n".join(answer_lines(result, locale=locale, timezone=timezone))


def is_money_key(key: str) -> bool:
    """Return whether an input named `key` is an amount of money (see the module docstring)."""
    return (
        key in MONEY_KEYS
        or key.endswith(("_mrr", "_amount"))
        or key.startswith(("mrr_", "amount_"))
    )


def input_label(key: str, locale: str) -> str:
    """Return the name of input `key` for people: "customers at start" / "clients au début"."""
    english, french = _LABELS.get(key, (key.replace("_", " "), key.replace("_", " ")))
    return french if language(locale) == "fr" else english


def format_input(key: str, value: InputValue, *, currency: str, locale: str) -> str:
    """Return an input's value formatted as money, a percentage or a number, by its name."""
    if value is None:
        return not_available(locale)
    if is_money_key(key):
        return format_money(Decimal(value), currency, locale)
    if key in PERCENT_KEYS or key.endswith("_rate"):
        return format_percent(Decimal(value), locale)
    return format_count(value, locale)


def main_input(metric: str, inputs: Mapping[str, InputValue], *, currency: str, locale: str) -> str:
    """Return the inputs' headline: the metric's sentence, or else its first input; "" if none."""
    sentence = _sentence(metric, inputs, currency=currency, locale=locale)
    if sentence is not None:
        return sentence[0]
    for key, value in inputs.items():
        return _labelled(key, value, currency=currency, locale=locale)
    return ""


def describe_inputs(
    metric: str, inputs: Mapping[str, InputValue], *, currency: str, locale: str
) -> str:
    """Return the inputs in words: the metric's sentence, then "label: value" for the rest."""
    parts: list[str] = []
    used: tuple[str, ...] = ()
    sentence = _sentence(metric, inputs, currency=currency, locale=locale)
    if sentence is not None:
        parts.append(sentence[0])
        used = sentence[1]
    for key, value in inputs.items():
        if key not in used:
            parts.append(_labelled(key, value, currency=currency, locale=locale))
    text = " · ".join(parts)
    return text[:1].upper() + text[1:]


def _sentence(
    metric: str, inputs: Mapping[str, InputValue], *, currency: str, locale: str
) -> tuple[str, tuple[str, ...]] | None:
    """Return the metric's sentence about its inputs and the keys it uses, if it has one."""
    if metric not in _SENTENCES:
        return None
    keys, english, french = _SENTENCES[metric]
    if not all(key in inputs for key in keys):
        return None
    lang = language(locale)
    fields: dict[str, str] = {}
    for key in keys:
        fields[key] = format_input(key, inputs[key], currency=currency, locale=locale)
        fields[f"{key}_s"] = _plural_mark(inputs[key], lang)
    return (french if lang == "fr" else english).format_map(fields), keys


def _plural_mark(value: InputValue, lang: str) -> str:
    """Return "s" unless `value` is singular: 1 in English, below 2 in French (0 is singular)."""
    if value is None:
        return "s"
    amount = Decimal(value)
    singular = abs(amount) < 2 if lang == "fr" else amount == 1
    return "" if singular else "s"


def _labelled(key: str, value: InputValue, *, currency: str, locale: str) -> str:
    colon = _WORDS[language(locale)]["colon"]
    formatted = format_input(key, value, currency=currency, locale=locale)
    return f"{input_label(key, locale)}{colon} {formatted}"


def _headline(result: KpiResult, locale: str) -> str:
    """Return "Label — period (dates, zone)" and the filters."""
    words = _WORDS[language(locale)]
    period = result.period
    label, dates = period.label(locale), period.range_label(locale)
    when = f"{dates}, {period.timezone}" if label != dates else period.timezone
    line = f"{result.label} — {label} ({when})"
    if result.filters:
        conditions = f" {words['and']} ".join(f"{dim} = {value}" for dim, value in result.filters)
        line += f" {words['where']} {conditions}"
    return line


def _value_text(value: Value, result: KpiResult, locale: str) -> str:
    """Return a formatted value, or "n/a — reason" when it is undefined."""
    if value.value is None:
        missing = not_available(locale)
        return f"{missing} — {value.reason}" if value.reason else missing
    return format_value(value.value, result.unit, currency=result.currency, locale=locale)


def _change_line(result: KpiResult, locale: str) -> str:
    """Return "↑ +1.5 pts vs Q2 2026: 12.5% (worse)", or just the comparison if undefined."""
    assert result.previous is not None
    words = _WORDS[language(locale)]
    previous_label = (
        result.previous_period.label(locale) if result.previous_period else words["previous"]
    )
    previous_value = _value_text(result.previous, result, locale)
    comparison = f"{words['vs']} {previous_label}{words['colon']} {previous_value}"
    change = result.change
    if change is None:
        return comparison
    shown = rounded_change(change, result.unit, result.currency)
    text = format_change(change, result.unit, currency=result.currency, locale=locale)
    if shown == 0:
        return f"→ {text} {comparison}"
    arrow = "↑" if shown > 0 else "↓"
    verdict = words["better"] if (shown > 0) == result.higher_is_better else words["worse"]
    return f"{arrow} {text} {comparison} ({verdict})"


def _breakdown_lines(result: KpiResult, locale: str) -> list[str]:
    """Return the breakdown's header and one aligned row per part: key, value, main input."""
    if not result.breakdown:
        return []
    words = _WORDS[language(locale)]
    title = words["by"].format(by=result.by) if result.by else words["breakdown"]
    rows: list[tuple[str, str, str]] = []
    for part in result.breakdown:
        value = part.value
        if value.value is None:
            shown, detail = not_available(locale), value.reason or ""
        else:
            shown = format_value(value.value, result.unit, currency=result.currency, locale=locale)
            detail = main_input(
                result.metric, value.inputs, currency=result.currency, locale=locale
            )
        rows.append((part.key or words["none"], shown, detail))
    key_width = max(len(key) for key, _, _ in rows)
    value_width = max(len(shown) for _, shown, _ in rows)
    lines = [f"{title}{words['colon']}"]
    for key, shown, detail in rows:
        lines.append(f"  {key.ljust(key_width)}  {shown.rjust(value_width)}  {detail}".rstrip())
    return lines
