"""The account card and the App Home (bot/home_blocks.py): figures, French, escaping, limits."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from bot.home_blocks import account_message, home_view
from metrics.accounts import (
    AccountCard,
    Book,
    BookAccount,
    ContactInfo,
    Detractor,
    RenewalDue,
    SurveyAnswer,
)
from metrics.health import AccountHealth, Signal
from metrics.periods import FiscalCalendar, Period
from metrics.result import KpiResult, Value
from tests.bot.block_kit import ENTITY
from tests.bot.block_kit import check_blocks as check_limits

D = Decimal
NBSP = "\u00a0"
NNBSP = "\u202f"
ZONE = "Europe/Paris"
AS_OF = datetime(2026, 11, 21, 12, tzinfo=UTC)  # 13:00 in Paris
HUGE = "x" * 10_000
HOSTILE = "<@U123> & <!channel> *bold* `tick`"

HEALTH = AccountHealth(
    D("72.5"),
    "green",
    {
        "usage": Signal(D(80), D("0.35")),
        "nps": Signal(D(70), D("0.25")),
        "mrr_trend": Signal(D(70), D("0.25")),
        "csat": Signal(D(50), D("0.15")),
    },
)
LATEST = SurveyAnswer(
    3, 0, 10, date(2026, 11, 20), "Too slow\nand buggy", "Jane Doe", "jane@acme.example"
)
CARD = AccountCard(
    account_id="acme",
    name="Acme Corp",
    plan="scale",
    segment="enterprise",
    owner_email="camille.martin@example.com",
    currency="EUR",
    reporting_currency="USD",
    mrr=D("1250.00"),
    customer_since=date(2026, 1, 10),
    health=HEALTH,
    nps=LATEST,
    previous_nps=SurveyAnswer(9, 0, 10, date(2026, 6, 1)),
    csat=SurveyAnswer(4, 1, 5, date(2026, 11, 10)),
    renewal=RenewalDue("acme", "Acme Corp", "c-1", date(2026, 12, 10), D("15000.00")),
    contacts=(
        ContactInfo("jane@acme.example", "Jane Doe", "+1 212 555 0100"),
        ContactInfo("ops@acme.example"),
    ),
    contacts_total=2,
    as_of=date(2026, 11, 23),
    data_as_of=AS_OF,
)


def check_blocks(blocks: list[dict[str, Any]], max_blocks: int) -> None:
    """Assert Block Kit's limits, and that no mention from the data came through unescaped."""
    check_limits(blocks, max_blocks)
    for block in blocks:
        for text in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if text and text["type"] == "mrkdwn":
                assert "<@U123>" not in text["text"] and "<!channel>" not in text["text"]


def check_message(message: dict[str, Any]) -> dict[str, Any]:
    """Assert a postable message: JSON, a fallback text, at most 50 blocks within limits."""
    assert set(message) == {"text", "blocks"}
    json.dumps(message)
    assert message["text"].strip() and len(message["text"]) <= 3000
    assert not ENTITY.search(message["text"]) and "<@U123>" not in message["text"]
    check_blocks(message["blocks"], 50)
    return message


def check_home(view: dict[str, Any]) -> dict[str, Any]:
    """Assert a publishable home view of at most 100 blocks within limits."""
    assert set(view) == {"type", "blocks"} and view["type"] == "home"
    json.dumps(view)
    check_blocks(view["blocks"], 100)
    return view


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every text of the blocks, one per line."""
    found = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [field["text"] for field in block.get("fields", [])]
        found += [element["text"] for element in block.get("elements", [])]
    return "\n".join(found)


def test_account_card_in_english():
    message = check_message(account_message(CARD, locale="en", timezone=ZONE))
    blocks = message["blocks"]
    assert blocks[0]["text"]["text"] == "Acme Corp"
    assert [f["text"] for f in blocks[1]["fields"]] == [
        "*MRR*\n$1,250.00",
        "*Plan*\nscale",
        "*Segment*\nenterprise",
        "*Owner*\ncamille.martin@example.com",
        "*Customer since*\n10 Jan 2026",
        "*Next renewal*\n10 Dec 2026 · $15,000.00",
    ]
    assert blocks[2]["text"]["text"] == (
        "*Health*: :large_green_circle: *72.5* (green)\n"
        "usage 80 (35%) · NPS 70 (25%) · MRR trend 70 (25%) · CSAT 50 (15%)"
    )
    assert blocks[3]["text"]["text"] == (
        "*NPS*: :red_circle: *3*/10 · 20 Nov 2026 — Jane Doe (jane@acme.example)\n"
        ">Too slow\n>and buggy\n"
        "Previous: 9/10 · 1 Jun 2026\n"
        "*CSAT*: *4*/5 · 10 Nov 2026"
    )
    assert blocks[4]["text"]["text"] == (
        "*Contacts*\nJane Doe · jane@acme.example · +1 212 555 0100\nops@acme.example"
    )
    context = texts(blocks[5:])
    assert "Account `acme`" in context and "amounts in USD" in context
    assert "Data as of 21 Nov 2026, 13:00 (Europe/Paris)" in context
    assert message["text"] == (
        "Acme Corp\nMRR: $1,250.00\nHealth: 72.5 (green)\nNPS: 3/10 · 20 Nov 2026\n"
        "Next renewal: 10 Dec 2026 · $15,000.00"
    )


def test_account_card_in_french():
    message = check_message(account_message(CARD, locale="fr-FR", timezone=ZONE))
    shown = texts(message["blocks"])
    assert f"*MRR*\n1{NNBSP}250,00{NBSP}$US" in shown
    assert "*Client depuis*\n10 janv. 2026" in shown
    assert f"*Prochain renouvellement*\n10 déc. 2026 · 15{NNBSP}000,00{NBSP}$US" in shown
    assert f"*Santé*{NBSP}: :large_green_circle: *72,5* (vert)" in shown
    assert f"usage 80 (35{NBSP}%) · NPS 70 (25{NBSP}%) · tendance du MRR 70" in shown
    assert f"Précédent{NBSP}: 9/10 · 1 juin 2026" in shown
    assert "Données à jour au 21 nov. 2026 à 13:00 (Europe/Paris)" in shown
    assert message["text"].startswith(f"Acme Corp\nMRR{NBSP}: 1{NNBSP}250,00{NBSP}$US")


def test_account_card_escapes_what_comes_from_data():
    hostile = replace(
        CARD,
        name=f"Smith {HOSTILE}",
        plan="a&b",
        nps=replace(LATEST, comment=f"> not a quote {HOSTILE}", respondent_name=HOSTILE),
        contacts=(ContactInfo("x@y.example", HOSTILE, "<tel>"),),
    )
    message = check_message(account_message(hostile, locale="en", timezone=ZONE))
    shown = texts(message["blocks"])
    assert "*Plan*\na&amp;b" in shown
    assert ">&gt; not a quote &lt;@U123&gt; &amp; &lt;!channel&gt;" in shown
    assert "&lt;@U123&gt; &amp; &lt;!channel&gt; *bold* `tick` · x@y.example · &lt;tel&gt;" in shown
    assert message["text"].startswith("Smith &lt;@U123&gt; &amp; &lt;!channel&gt;")


def test_account_card_within_limits_whatever_the_data():
    contacts = tuple(ContactInfo(f"{n}{HUGE[:300]}@x.example", HUGE, HUGE) for n in range(1000))
    huge = replace(
        CARD,
        name=HUGE,
        plan=HUGE,
        segment="&" * 5000,
        owner_email=HUGE,
        account_id=HUGE,
        nps=replace(LATEST, comment="line & more\n" * 2000, respondent_name=HUGE),
        contacts=contacts,
        contacts_total=5000,
    )
    message = check_message(account_message(huge, locale="fr", timezone=ZONE))
    assert message["blocks"][0]["text"]["text"].endswith("…")
    shown = texts(message["blocks"])
    assert "… et " in shown and " de plus" in shown  # the contacts left out


def test_account_card_without_data_still_reads_well():
    empty = replace(
        CARD,
        plan=None,
        segment=None,
        owner_email=None,
        mrr=D("0.00"),
        customer_since=None,
        health=AccountHealth(),
        nps=None,
        previous_nps=None,
        csat=None,
        renewal=None,
        contacts=(),
        contacts_total=0,
        data_as_of=None,
    )
    message = check_message(account_message(empty, locale="en", timezone=ZONE))
    shown = texts(message["blocks"])
    assert "*Plan*\nn/a" in shown and "*Next renewal*\nn/a" in shown
    assert "*Health*: :white_circle: n/a — no health signal yet" in shown
    assert "*NPS*: no answer yet" in shown and "No data yet" in shown
    assert message["text"] == "Acme Corp\nMRR: $0.00\nHealth: n/a"


def make_book(accounts: int = 3, items: int = 2, **changes: Any) -> Book:
    """A book of `accounts` accounts (the first red, the others green) and `items` to-dos."""
    red = AccountHealth(D(15), "red", {})
    green = AccountHealth(D(70), "green", {})
    lines = tuple(
        BookAccount(f"a{n}", f"Account {n}", D(1000 - n), red if n == 0 else green)
        for n in range(accounts)
    )
    renewals = tuple(
        RenewalDue(f"a{n}", f"Account {n}", f"c{n}", date(2026, 12, 1 + n % 28), D("1100.00"))
        for n in range(items)
    )
    detractors = tuple(
        Detractor(f"a{n}", f"Account {n}", SurveyAnswer(3, 0, 10, date(2026, 11, 20), "Slow"))
        for n in range(items)
    )
    book = Book(
        owner_email="camille@example.com",
        currency="USD",
        accounts=lines,
        total_accounts=accounts,
        customers=accounts,
        mrr=sum((a.mrr for a in lines), D("0.00")),
        bands={"red": 1, "yellow": 0, "green": accounts - 1, "none": 0},
        renewals=renewals,
        renewals_total=items,
        renewal_days=30,
        detractors=detractors,
        detractors_total=items,
        as_of=date(2026, 11, 23),
        data_as_of=AS_OF,
    )
    return replace(book, **changes)


def test_home_shows_the_book():
    view = check_home(home_view(book=make_book(), locale="en", timezone=ZONE, user_name="Camille"))
    blocks = view["blocks"]
    assert blocks[0]["text"]["text"] == "Hello Camille"
    shown = texts(blocks)
    assert "*Your book*: 3 accounts · 3 paying · MRR *$2,997.00*" in shown
    assert (
        ":red_circle: 1 red · :large_yellow_circle: 0 yellow · :large_green_circle: 2 green"
        " · :white_circle: 0 no score"
    ) in shown
    assert "• :red_circle: *Account 0* — $1,000.00 · 15 (red)" in shown
    assert "• :large_green_circle: *Account 2* — $998.00 · 70 (green)" in shown
    assert "*Renewals due in the next 30 days*\n• 1 Dec 2026 — *Account 0* — $1,100.00" in shown
    assert "• :red_circle: *Account 1* — 3/10 · 20 Nov 2026 — “Slow”" in shown
    assert "`/kpi help`" in shown and "`/kpi account &lt;name&gt;`" in shown
    assert "Data as of 21 Nov 2026, 13:00 (Europe/Paris)" in shown


def test_home_book_in_french_and_without_to_dos():
    view = check_home(home_view(book=make_book(items=0), locale="fr", timezone=ZONE))
    shown = texts(view["blocks"])
    assert view["blocks"][0]["text"]["text"] == "kpibot"
    assert f"*Votre portefeuille*{NBSP}: 3 comptes · 3 payants · MRR *2{NNBSP}997,00{NBSP}$US*" in (
        shown
    )
    assert "1 rouge · :large_yellow_circle: 0 jaune" in shown
    assert "Aucun renouvellement dans les 30 prochains jours." in shown
    assert "Aucun détracteur ces 30 derniers jours." in shown
    assert "`/kpi aide`" in shown and "`/kpi compte &lt;nom&gt;`" in shown


def test_home_escapes_names_and_comments():
    account = BookAccount("a", HOSTILE, D(1), AccountHealth())
    answer = SurveyAnswer(0, 0, 10, date(2026, 11, 20), f"{HOSTILE}\n> quoted")
    book = replace(
        make_book(accounts=1),
        accounts=(account,),
        detractors=(Detractor("a", HOSTILE, answer),),
        detractors_total=1,
    )
    view = check_home(home_view(book=book, locale="en", timezone=ZONE, user_name="<@U999>"))
    shown = texts(view["blocks"])
    assert "*&lt;@U123&gt; &amp; &lt;!channel&gt; *bold* `tick`*" in shown
    assert "“&lt;@U123&gt; &amp; &lt;!channel&gt; *bold* `tick` &gt; quoted”" in shown


def test_home_within_limits_with_a_huge_book():
    book = make_book(accounts=500, items=500)
    book = replace(
        book,
        accounts=tuple(replace(a, name=HUGE) for a in book.accounts),
        detractors=tuple(
            replace(d, account_name=HUGE, answer=replace(d.answer, comment="&" * 10_000))
            for d in book.detractors
        ),
        renewals_total=800,
    )
    view = check_home(home_view(book=book, locale="en", timezone=ZONE, user_name=HUGE))
    shown = texts(view["blocks"])
    assert "… and 450 more" in shown  # accounts: 50 of 500 listed
    assert "… and 780 more" in shown  # renewals: 20 of 800
    assert "… and 480 more" in shown  # detractors: 20 of 500
    assert view["blocks"][-1]["type"] == "context"  # the hint is never cut off


def headline(metric: str, label: str, unit: str, value: Any, previous: Any, **more: Any) -> Any:
    """A KpiResult for October 2026 against September."""
    period = Period(date(2026, 10, 1), date(2026, 10, 31), ZONE, "month", FiscalCalendar())
    return KpiResult(
        metric=metric,
        label=label,
        period=period,
        current=value if isinstance(value, Value) else Value(value, more.pop("inputs", {})),
        unit=unit,
        definition="…",
        currency="USD",
        previous_period=period.previous(),
        previous=Value(previous),
        data_as_of=AS_OF,
        **more,
    )


HEADLINES = [
    headline(
        "mrr",
        "MRR",
        "money",
        D("162500"),
        D("160000"),
        inputs={"customers": 500, "arpa": D("325.00")},
    ),
    headline(
        "churn",
        "Logo churn",
        "percent",
        D(1),
        D("1.5"),
        inputs={"churned": 5, "customers_start": 500},
        higher_is_better=False,
    ),
    headline("nps", "NPS", "score", Value.undefined("no NPS responses in the period"), D(40)),
]


def test_home_shows_team_headlines_without_a_book():
    empty = make_book(accounts=0, items=0)
    view = check_home(home_view(book=empty, headlines=HEADLINES, locale="en", timezone=ZONE))
    shown = texts(view["blocks"])
    assert "*Team headlines*" in shown
    assert (
        "*MRR* — October 2026 (1 – 31 Oct 2026)\n"
        "*$162,500.00*  :large_green_circle: ↑ +$2,500.00 vs September 2026\n"
        "500 paying customers, ARPA $325.00"
    ) in shown
    assert (
        "*Logo churn* — October 2026 (1 – 31 Oct 2026)\n"
        "*1%*  :large_green_circle: ↓ -0.5 pts vs September 2026\n"
        "5 of 500 customers at start churned"
    ) in shown
    assert "*NPS* — October 2026 (1 – 31 Oct 2026)\n*n/a* — no NPS responses in the period" in shown
    assert "Data as of 21 Nov 2026, 13:00 (Europe/Paris)" in shown


def test_home_headlines_in_french():
    view = check_home(home_view(headlines=HEADLINES, locale="fr", timezone=ZONE))
    shown = texts(view["blocks"])
    assert "*Les chiffres de l'équipe*" in shown
    assert f"↓ -0,5{NBSP}pt par rapport à septembre 2026" in shown
    assert "5 clients perdus sur 500 en début de période" in shown
    assert "*n.d.* — no NPS responses in the period" in shown


def test_home_with_nothing_yet():
    view = check_home(home_view(locale="en", timezone=ZONE))
    shown = texts(view["blocks"])
    assert "Nothing to show yet" in shown and "No data yet" in shown
