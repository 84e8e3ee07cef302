"""Tests for the plain-text answer to a KPI question, in English and French (metrics/answer.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from metrics.answer import (
    answer_lines,
    answer_text,
    describe_inputs,
    format_input,
    input_label,
    is_money_key,
    main_input,
)
from metrics.periods import FiscalCalendar, Period
from metrics.result import KpiResult, Part, Value
from tests.metrics.results import make_churn

NBSP = "\u00a0"
NNBSP = "\u202f"
D = Decimal


def lines(result: KpiResult, locale: str = "en", timezone: str = "Europe/Paris") -> list[str]:
    return answer_lines(result, locale=locale, timezone=timezone)


def test_answer_in_english() -> None:
    assert lines(make_churn()) == [
        "Logo churn — Q3 2026 (1 Jul – 30 Sep 2026, Europe/Paris)",
        "1%",
        "↓ -0.5 pts vs Q2 2026: 1.5% (better)",
        "5 of 500 customers at start churned",
        "Definition: Customers lost in the period ÷ customers at its start × 100.",
        "Data as of 23 Nov 2026, 14:05 (Europe/Paris)",
    ]


def test_answer_in_french() -> None:
    result = make_churn(definition="Clients perdus ÷ clients en début de période × 100.")
    assert lines(result, "fr") == [
        "Logo churn — T3 2026 (1 juil. – 30 sept. 2026, Europe/Paris)",
        f"1{NBSP}%",
        f"↓ -0,5{NBSP}pt par rapport à T2 2026{NBSP}: 1,5{NBSP}% (mieux)",
        "5 clients perdus sur 500 en début de période",
        f"Définition{NBSP}: Clients perdus ÷ clients en début de période × 100.",
        "Données à jour au 23 nov. 2026 à 14:05 (Europe/Paris)",
    ]


def test_answer_text_joins_the_lines() -> None:
    result = make_churn()
    text = answer_text(result, locale="en", timezone="UTC")
    assert text == "\n".join(lines(result, timezone="UTC"))
    assert text.count("\n") == 5


@pytest.mark.parametrize(
    ("current", "previous", "higher_is_better", "expected"),
    [
        ("2", "1.5", False, "↑ +0.5 pts vs Q2 2026: 1.5% (worse)"),
        ("2", "1.5", True, "↑ +0.5 pts vs Q2 2026: 1.5% (better)"),
        ("1", "1.5", True, "↓ -0.5 pts vs Q2 2026: 1.5% (worse)"),
        ("1.5", "1.5", False, "→ ±0 vs Q2 2026: 1.5%"),
        # A change that rounds to zero reads as no change, with no verdict.
        ("1.501", "1.5", False, "→ ±0 vs Q2 2026: 1.5%"),
    ],
)
def test_change_line_arrow_and_verdict(
    current: str, previous: str, higher_is_better: bool, expected: str
) -> None:
    result = make_churn(
        current=Value(D(current)),
        previous=Value(D(previous)),
        higher_is_better=higher_is_better,
    )
    assert lines(result)[2] == expected


def test_undefined_value_shows_its_reason_and_no_change() -> None:
    undefined = Value.undefined("no customers at start", churned=0, customers_start=0)
    result = make_churn(current=undefined)
    assert lines(result)[1:4] == [
        "n/a — no customers at start",
        "vs Q2 2026: 1.5%",
        "0 of 0 customers at start churned",
    ]
    assert lines(result, "fr")[1:4] == [
        "n.d. — no customers at start",
        f"par rapport à T2 2026{NBSP}: 1,5{NBSP}%",
        "0 client perdu sur 0 en début de période",
    ]


def test_undefined_previous_value_shows_its_reason() -> None:
    result = make_churn(previous=Value.undefined("no customers at start"))
    assert lines(result)[2] == "vs Q2 2026: n/a — no customers at start"


def test_undefined_value_without_reason() -> None:
    result = make_churn(current=Value(None), previous=None, previous_period=None)
    assert lines(result)[1] == "n/a"


def test_no_previous_means_no_change_line() -> None:
    result = make_churn(previous=None, previous_period=None)
    assert not any("vs" in line for line in lines(result))
    assert len(lines(result)) == 5


def test_previous_without_its_period_is_named_generically() -> None:
    result = make_churn(previous_period=None)
    assert lines(result)[2] == "↓ -0.5 pts vs the previous period: 1.5% (better)"


def test_filters_follow_the_label() -> None:
    result = make_churn(filters=(("segment", "enterprise"), ("plan", "gold")))
    assert lines(result)[0] == (
        "Logo churn — Q3 2026 (1 Jul – 30 Sep 2026, Europe/Paris) "
        "where segment = enterprise and plan = gold"
    )
    assert lines(result, "fr")[0].endswith(" où segment = enterprise et plan = gold")


def test_a_day_is_not_named_twice() -> None:
    day = Period(date(2026, 11, 23), date(2026, 11, 23), "UTC", "day", FiscalCalendar())
    result = make_churn(period=day, previous_period=day.previous())
    assert lines(result)[0] == "Logo churn — 23 Nov 2026 (UTC)"
    assert lines(result)[2].startswith("↓ -0.5 pts vs 22 Nov 2026: ")


def test_breakdown_is_aligned_in_columns() -> None:
    result = make_churn(
        by="plan",
        breakdown=(
            Part("gold", Value(D("2.5"), {"churned": 5, "customers_start": 200})),
            Part("silver", Value(D("0"), {"churned": 0, "customers_start": 300})),
            Part("", Value.undefined("no customers at start", churned=0, customers_start=0)),
        ),
    )
    assert lines(result)[4:8] == [
        "By plan:",
        "  gold    2.5%  5 of 200 customers at start churned",
        "  silver    0%  0 of 300 customers at start churned",
        "  (none)   n/a  no customers at start",
    ]
    assert lines(result, "fr")[4:8] == [
        f"Par plan{NBSP}:",
        f"  gold     2,5{NBSP}%  5 clients perdus sur 200 en début de période",
        f"  silver     0{NBSP}%  0 client perdu sur 300 en début de période",
        "  (aucun)   n.d.  no customers at start",
    ]
    assert lines(result)[8].startswith("Definition: ")


def test_breakdown_of_money_uses_the_first_input_when_there_is_no_sentence() -> None:
    result = make_churn(
        metric="net-new-mrr",
        label="Net new MRR",
        unit="money",
        current=Value(D("1500"), {}),
        previous=None,
        previous_period=None,
        by="csm",
        breakdown=(
            Part("alice@example.com", Value(D("1200"), {"new": D("1000"), "expansion": D(200)})),
            Part("bob@example.com", Value(D("300"), {"new": D("300")})),
            Part("carol@example.com", Value(D("0"), {})),
        ),
    )
    assert lines(result)[2:6] == [
        "By csm:",
        "  alice@example.com  $1,200.00  new MRR: $1,000.00",
        "  bob@example.com      $300.00  new MRR: $300.00",
        "  carol@example.com      $0.00",
    ]


def test_breakdown_without_a_dimension_name() -> None:
    result = make_churn(breakdown=(Part("gold", Value(D(1), {})),))
    assert "Breakdown:" in lines(result)
    assert f"Répartition{NBSP}:" in lines(result, "fr")


def test_data_as_of_is_shown_in_the_requested_time_zone() -> None:
    assert lines(make_churn(), timezone="America/New_York")[-1] == (
        "Data as of 23 Nov 2026, 08:05 (America/New_York)"
    )


def test_no_data_yet() -> None:
    result = make_churn(data_as_of=None)
    assert lines(result)[-1] == "No data yet"
    assert lines(result, "fr")[-1] == "Aucune donnée pour l'instant"


def test_no_markdown_in_the_answer() -> None:
    result = make_churn(
        by="plan", breakdown=(Part("gold", Value(D(1), {"churned": 1, "customers_start": 100})),)
    )
    text = answer_text(result, locale="en", timezone="UTC")
    assert not any(mark in text for mark in ("*", "|", "`", "_"))


# --- Inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "inputs", "en", "fr"),
    [
        (
            "churn",
            {"churned": 11, "customers_start": 100, "new_customers": 10},
            "11 of 100 customers at start churned · new customers: 10",
            f"11 clients perdus sur 100 en début de période · nouveaux clients{NBSP}: 10",
        ),
        (
            "churn",
            {"churned": 1, "customers_start": 1},
            "1 of 1 customer at start churned",
            "1 client perdu sur 1 en début de période",
        ),
        (
            "retention",
            {"customers_end": 210, "new_customers": 20, "customers_start": 200},
            "210 customers at end, 20 of them new; 200 at start",
            "210 clients en fin de période, dont 20 arrivés sur la période ; 200 au début",
        ),
        (
            "renewal-rate",
            {"renewed": 2, "due": 3, "pending": 0},
            "2 of 3 contracts due renewed · outcome pending: 0",
            f"2 contrats renouvelés sur 3 arrivés à échéance · résultat en attente{NBSP}: 0",
        ),
        (
            "revenue-renewal-rate",
            {"amount_renewed": D("3200"), "amount_due": D("3000")},
            "$3,200.00 renewed of $3,000.00 due",
            f"3{NNBSP}200,00{NBSP}$US renouvelés sur 3{NNBSP}000,00{NBSP}$US dus",
        ),
        (
            "nps",
            {"promoters": 60, "passives": 30, "detractors": 1, "responses": 91},
            "60 promoters, 30 passives, 1 detractor of 91 responses",
            "60 promoteurs, 30 passifs, 1 détracteur sur 91 réponses",
        ),
        (
            "mrr",
            {"customers": 6500, "arpa": D(25)},
            "6,500 paying customers, ARPA $25.00",
            f"6{NNBSP}500 clients payants, ARPA 25,00{NBSP}$US",
        ),
        (
            "mrr",
            {"customers": 0, "arpa": None},
            "0 paying customers, ARPA n/a",
            "0 client payant, ARPA n.d.",
        ),
        (
            "gross-revenue-churn",
            {"mrr_start": D(17000), "churned_mrr": D(1400), "contraction": D(1000)},
            "MRR at start: $17,000.00 · churned MRR: $1,400.00 · contraction MRR: $1,000.00",
            f"MRR au début{NBSP}: 17{NNBSP}000,00{NBSP}$US · MRR perdu{NBSP}: "
            f"1{NNBSP}400,00{NBSP}$US · MRR de contraction{NBSP}: 1{NNBSP}000,00{NBSP}$US",
        ),
        (
            "customers",
            {"customers_start": 200, "new_customers": 20, "reactivated": 1, "churned": 10},
            "200 at start, 20 new, 1 reactivated, 10 churned",
            "200 au début, 20 arrivés, 1 réactivé, 10 perdus",
        ),
        (
            "repeat-purchase-rate",
            {"repeat_customers": 25, "paying_customers": 100},
            "25 of 100 paying customers paid twice or more",
            "25 clients sur 100 avec 2 factures payées ou plus",
        ),
        (
            "expansion-mrr",
            {"accounts": 1},
            "1 account",
            "1 compte",
        ),
        (
            "clv",
            {"average_purchase": D(1000), "purchases_per_year": D(2), "lifetime_years": D("3")},
            "Average purchase: $1,000.00 · purchases per customer per year: 2 · "
            "lifetime in years: 3",
            f"Achat moyen{NBSP}: 1{NNBSP}000,00{NBSP}$US · achats par client et par an{NBSP}: 2 · "
            f"durée de vie en années{NBSP}: 3",
        ),
        ("churn", {}, "", ""),
        ("some-new-metric", {"widgets_sold": 3}, "Widgets sold: 3", f"Widgets sold{NBSP}: 3"),
    ],
)
def test_describe_inputs(metric: str, inputs: dict[str, Any], en: str, fr: str) -> None:
    assert describe_inputs(metric, inputs, currency="USD", locale="en") == en
    assert describe_inputs(metric, inputs, currency="USD", locale="fr") == fr


def test_sentence_needs_all_of_its_inputs() -> None:
    text = describe_inputs("churn", {"churned": 5}, currency="USD", locale="en")
    assert text == "Churned customers: 5"


@pytest.mark.parametrize(
    ("key", "money"),
    [
        ("new", True),
        ("churned_mrr", True),
        ("mrr_start", True),
        ("amount_due", True),
        ("invoices_paid", True),
        ("costs", True),
        ("arpa", True),
        ("new_customers", False),
        ("churned", False),
        ("reactivated", False),
        ("customers_start", False),
        ("promoters", False),
    ],
)
def test_money_keys(key: str, money: bool) -> None:
    assert is_money_key(key) is money


def test_format_input_by_name() -> None:
    assert format_input("new", D("1234.5"), currency="EUR", locale="en") == "€1,234.50"
    assert format_input("new_customers", 1234, currency="EUR", locale="en") == "1,234"
    assert format_input("monthly_churn", D("5"), currency="EUR", locale="en") == "5%"
    assert format_input("dau", D("20.5"), currency="EUR", locale="fr") == "20,5"
    assert format_input("arpa", None, currency="EUR", locale="fr") == "n.d."


def test_input_labels() -> None:
    assert input_label("customers_start", "en") == "customers at start"
    assert input_label("customers_start", "fr") == "clients au début"
    assert input_label("odd_key", "fr") == "odd key"


def test_main_input() -> None:
    churn = {"churned": 5, "customers_start": 500, "new_customers": 10}
    assert main_input("churn", churn, currency="USD", locale="en") == (
        "5 of 500 customers at start churned"
    )
    bridge = {"contraction": D(10), "new": D(5)}
    assert main_input("net-new-mrr", bridge, currency="USD", locale="en") == (
        "contraction MRR: $10.00"
    )
    assert main_input("net-new-mrr", {}, currency="USD", locale="en") == ""
