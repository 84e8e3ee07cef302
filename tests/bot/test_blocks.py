"""Tests for the Block Kit builders (bot/blocks.py): wording, colours, escaping, Slack limits."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bot.blocks import (
    error_message,
    kpi_message,
    reply_message,
    unexpected_error_message,
)
from metrics.answer import answer_text
from metrics.ask import Reply, explain, help_lines, metric_list
from metrics.context import MetricConfig
from metrics.query import Command, QueryError, parse_command
from metrics.registry import get_metric
from metrics.result import KpiResult, Part, Value
from tests.bot.block_kit import ENTITY, check_message
from tests.metrics.results import Q3, make_churn

D = Decimal
NBSP = "\u00a0"
NOW = datetime(2026, 11, 23, 13, 5, tzinfo=UTC)
HUGE = "x" * 10_000


def check_block_kit(message: dict[str, Any]) -> dict[str, Any]:
    """Assert that `message` is a builder's output: text and blocks only, within the limits."""
    assert set(message) == {"text", "blocks"}
    assert all(block["type"] != "divider" for block in message["blocks"])
    return check_message(message)


def build(result: KpiResult, locale: str = "en", **options: Any) -> dict[str, Any]:
    """Build and check a KPI message."""
    message = kpi_message(result, locale=locale, timezone="Europe/Paris", **options)
    return check_block_kit(message)


def mrkdwn(message: dict[str, Any]) -> str:
    """Return every mrkdwn text of the message's blocks (not the plain-text header), one a line."""
    objects: list[dict[str, Any]] = []
    for block in message["blocks"]:
        objects.extend([block["text"]] if "text" in block else [])
        objects.extend(block.get("fields", []) + block.get("elements", []))
    return "\n".join(item["text"] for item in objects if item["type"] == "mrkdwn")


def sections(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for block in message["blocks"] if block["type"] == "section"]


def hundred_parts() -> tuple[Part, ...]:
    return tuple(
        Part(f"plan-{i:03}", Value(D(100 - i), {"churned": 100 - i, "customers_start": 100}))
        for i in range(100)
    )


def test_english_answer_shows_every_figure() -> None:
    message = build(make_churn())
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "Logo churn — Q3 2026"
    assert sections(message)[0]["text"]["text"].splitlines() == [
        "*1%*",
        ":large_green_circle: ↓ *-0.5 pts* vs Q2 2026: 1.5% (better)",
        "5 of 500 customers at start churned",
    ]
    footer = mrkdwn(message)
    assert "*Definition*: Customers lost in the period ÷ customers at its start × 100." in footer
    assert "1 Jul – 30 Sep 2026 (Europe/Paris)" in footer
    assert "Data as of 23 Nov 2026, 14:05 (Europe/Paris)" in footer


def test_french_answer_uses_french_formats_and_words() -> None:
    message = build(make_churn(), "fr")
    assert message["blocks"][0]["text"]["text"] == "Logo churn — T3 2026"
    assert sections(message)[0]["text"]["text"].splitlines() == [
        f"*1{NBSP}%*",
        f":large_green_circle: ↓ *-0,5{NBSP}pt* par rapport à T2 2026{NBSP}: 1,5{NBSP}% (mieux)",
        "5 clients perdus sur 500 en début de période",
    ]
    footer = mrkdwn(message)
    assert f"*Définition*{NBSP}:" in footer
    assert "1 juil. – 30 sept. 2026 (Europe/Paris)" in footer
    assert "Données à jour au 23 nov. 2026 à 14:05 (Europe/Paris)" in footer


def test_money_is_formatted_per_locale() -> None:
    result = make_churn(
        metric="mrr",
        label="MRR",
        unit="money",
        current=Value(D("162500"), {"customers": 500, "arpa": D("325")}),
        previous=Value(D("160000"), {"customers": 490, "arpa": D("326.53")}),
        higher_is_better=True,
    )
    english = sections(build(result))[0]["text"]["text"]
    assert english.startswith("*$162,500.00*\n:large_green_circle: ↑ *+$2,500.00* vs Q2 2026")
    assert "500 paying customers, ARPA $325.00" in english
    french = sections(build(result, "fr"))[0]["text"]["text"]
    assert french.startswith(f"*162\u202f500,00{NBSP}$US*")


@pytest.mark.parametrize(
    ("higher_is_better", "current", "previous", "emoji", "arrow", "verdict"),
    [
        (True, "5", "4", ":large_green_circle:", "↑", "(better)"),
        (True, "4", "5", ":red_circle:", "↓", "(worse)"),
        (False, "5", "4", ":red_circle:", "↑", "(worse)"),
        (False, "4", "5", ":large_green_circle:", "↓", "(better)"),
        (True, "4.001", "4", ":white_circle:", "→", ""),
        (False, "4", "4.004", ":white_circle:", "→", ""),
    ],
)
def test_change_arrow_and_colour_follow_whether_higher_is_better(
    higher_is_better: bool, current: str, previous: str, emoji: str, arrow: str, verdict: str
) -> None:
    result = make_churn(
        current=Value(D(current)),
        previous=Value(D(previous)),
        higher_is_better=higher_is_better,
    )
    change = sections(build(result))[0]["text"]["text"].splitlines()[1]
    assert change.startswith(f"{emoji} {arrow} ")
    assert change.endswith(verdict or "4%")
    others = {":large_green_circle:", ":red_circle:", ":white_circle:", "↑", "↓", "→"}
    assert not any(other in change for other in others - {emoji, arrow})


def test_undefined_value_says_why() -> None:
    result = make_churn(
        current=Value.undefined("no customers at start", churned=0, customers_start=0)
    )
    lines = sections(build(result))[0]["text"]["text"].splitlines()
    assert lines[0] == "*n/a* — no customers at start"
    assert lines[1] == ":white_circle: vs Q2 2026: 1.5%"  # no change without a value
    french = sections(build(result, "fr"))[0]["text"]["text"]
    assert french.startswith("*n.d.* — no customers at start")


def test_undefined_previous_value_is_shown_with_its_reason() -> None:
    result = make_churn(previous=Value.undefined("no customers at start"))
    change = sections(build(result))[0]["text"]["text"].splitlines()[1]
    assert change == ":white_circle: vs Q2 2026: n/a — no customers at start"


def test_breakdown_parts_are_fields_with_their_main_input() -> None:
    result = make_churn(
        by="plan",
        breakdown=(
            Part("gold", Value(D("2.5"), {"churned": 5, "customers_start": 200})),
            Part("", Value.undefined("no customers at start", churned=0, customers_start=0)),
        ),
    )
    breakdown = sections(build(result))[1]
    assert breakdown["text"]["text"] == "*By plan*"
    assert [field["text"] for field in breakdown["fields"]] == [
        "*gold*\n2.5%\n5 of 200 customers at start churned",
        "*(none)*\nn/a — no customers at start",
    ]
    assert sections(build(result, "fr"))[1]["text"]["text"] == "*Par plan*"
    assert "… and" not in mrkdwn(build(result))


def test_hundred_parts_stay_within_limits_and_say_how_many_are_left_out() -> None:
    result = make_churn(by="plan", breakdown=hundred_parts())
    message = build(result)  # the limits are checked here
    fields = [field["text"] for block in sections(message) for field in block.get("fields", [])]
    assert len(fields) == 20
    assert fields[0].startswith("*plan-000*\n100%") and fields[-1].startswith("*plan-019*")
    assert "plan-020" not in mrkdwn(message)
    command = "kpibot kpi churn 2026-07-01..2026-09-30 by plan --format json"
    assert f"… and 80 more (see `{command}`)" in mrkdwn(message)
    assert "… et 80 de plus (voir `" in mrkdwn(build(result, "fr"))


def test_left_out_command_asks_the_same_question() -> None:
    filters = (("csm", "Camille Martin"), ("segment", "enterprise"))
    result = make_churn(by="plan", breakdown=hundred_parts(), filters=filters)
    found = re.search(r"`kpibot kpi (.+) --format json`", mrkdwn(build(result)))
    assert found is not None
    question = " ".join(shlex.split(found.group(1)))  # what the shell hands to `kpibot kpi`
    query = parse_command(question, now=NOW, timezone="Europe/Paris").query
    assert query is not None
    assert (query.metric.id, query.period, query.by) == ("churn", Q3, "plan")
    assert query.filters == filters


def test_absurdly_long_texts_are_cut() -> None:
    result = make_churn(
        label=HUGE,
        definition=HUGE,
        current=Value.undefined(HUGE),
        filters=(("csm", HUGE),),
        by="plan",
        breakdown=(Part(HUGE, Value(D(1), {HUGE: 1})), *hundred_parts()),
    )
    message = build(result)  # within every limit
    assert message["blocks"][0]["text"]["text"].endswith("…")
    summary = sections(message)[0]["text"]["text"]
    assert "…" in summary and len(summary) < 3000
    assert "kpibot kpi … --format json" in mrkdwn(message)  # too long to copy
    assert message["text"].endswith("…")


def test_user_text_is_escaped_for_mrkdwn() -> None:
    hostile = "<!channel> & <@U999|boss>"
    result = make_churn(
        label=hostile,
        current=Value.undefined(hostile),
        filters=(("plan", hostile),),
        by="plan",
        breakdown=(Part(hostile, Value(D(1))),),
    )
    message = build(result, shared_by="<!here>")
    parsed = mrkdwn(message) + message["text"]  # what Slack reads as mrkdwn (headers are plain)
    assert "<!" not in parsed and "<@" not in parsed
    assert "&lt;!channel&gt; &amp; &lt;@U999|boss&gt;" in mrkdwn(message)
    assert "&lt;!here&gt;" in mrkdwn(message)
    assert "&lt;!channel&gt;" in message["text"]
    assert message["blocks"][0]["text"]["text"] == f"{hostile} — Q3 2026"  # plain text as is


def test_shared_by_mentions_the_user() -> None:
    assert "Shared by <@U0123ABC>" in mrkdwn(build(make_churn(), shared_by="U0123ABC"))
    assert "Partagé par <@U0123ABC>" in mrkdwn(build(make_churn(), "fr", shared_by="U0123ABC"))
    assert "Shared by" not in mrkdwn(build(make_churn()))


def test_fallback_text_is_the_plain_answer_cut_at_a_line() -> None:
    result = make_churn()
    plain = answer_text(result, locale="en", timezone="Europe/Paris")
    assert build(result)["text"] == plain
    long = make_churn(by="plan", breakdown=hundred_parts())
    text = build(long)["text"]
    full = answer_text(long, locale="en", timezone="Europe/Paris")
    assert len(full) > 3000 and len(text) <= 3000
    assert text.endswith("\n…") and full.startswith(text[:-2])


def test_fallback_text_never_cuts_an_entity() -> None:
    for width in range(5):  # put "&amp;" across the cut at every offset
        label = "x" * width + "&" * 2000
        text = build(make_churn(definition=label, by="plan", breakdown=hundred_parts()))["text"]
        assert len(text) <= 3000 and not ENTITY.search(text)


def test_help_list_and_explain_show_commands_in_backticks() -> None:
    help_message = check_block_kit(
        reply_message(
            Reply(Command("help"), lines=tuple(help_lines())), locale="en", timezone="UTC"
        )
    )
    text = mrkdwn(help_message)
    assert "`/kpi churn last-quarter` · `/kpi mrr by plan`" in text
    assert "`/kpi list`: every metric · `/kpi explain &lt;metric&gt;`: its definition" in text
    french = reply_message(
        Reply(Command("help"), lines=tuple(help_lines("fr"))), locale="fr", timezone="UTC"
    )
    assert "`/kpi liste` : tous les indicateurs" in mrkdwn(check_block_kit(french))
    listing = check_block_kit(
        reply_message(
            Reply(Command("list"), lines=tuple(metric_list())), locale="en", timezone="UTC"
        )
    )
    assert "*Revenue*" in mrkdwn(listing)
    assert re.search(r"^• `churn` Logo churn", mrkdwn(listing), re.MULTILINE)
    churn = get_metric("churn")
    lines = tuple(explain(churn, MetricConfig(timezone="Europe/Paris")))
    explained = check_block_kit(
        reply_message(
            Reply(Command("explain", metric=churn), lines=lines), locale="en", timezone="UTC"
        )
    )
    assert mrkdwn(explained).startswith(f"*{churn.label('en')} (churn)*\n")


def test_many_lines_are_split_into_sections() -> None:
    lines = tuple(f"line {i} " + "y" * 200 for i in range(100))
    message = check_block_kit(
        reply_message(Reply(Command("help"), lines=lines), locale="en", timezone="UTC")
    )
    assert len(sections(message)) > 1
    assert "line 0 " in mrkdwn(message) and "line 99 " in mrkdwn(message)


def test_reply_with_a_result_is_the_kpi_message() -> None:
    result = make_churn()
    command = parse_command("churn 2026-Q3", now=NOW, timezone="Europe/Paris")
    message = reply_message(Reply(command, result=result), locale="en", timezone="Europe/Paris")
    assert message == build(result)


def test_error_message_helps_without_a_trace() -> None:
    with pytest.raises(QueryError) as caught:
        parse_command("chrun last-quarter", now=NOW, timezone="UTC")
    message = check_block_kit(error_message(caught.value, locale="en"))
    text = mrkdwn(message)
    assert "I don't know the metric 'chrun'. Did you mean `churn`?" in text
    assert "Example: `/kpi churn last-quarter`" in text
    assert "`/kpi help`" in text
    assert "Try" not in text  # `churn` is already suggested by the message
    assert "Traceback" not in json.dumps(message)
    assert "Exemple\u00a0: `/kpi churn last-quarter`" in mrkdwn(
        error_message(caught.value, locale="fr")
    )


def test_error_suggestions_are_backticked_and_hostile_text_escaped() -> None:
    error = QueryError(
        "Bad <thing> & more", suggestions=("by plan", "<!channel>"), example="/kpi x"
    )
    message = check_block_kit(error_message(error, locale="en"))
    text = mrkdwn(message)
    assert ":warning: Bad &lt;thing&gt; &amp; more" in text
    assert "Try: `by plan` · `&lt;!channel&gt;`" in text
    assert "<!channel>" not in json.dumps(message)


def test_unexpected_error_shows_the_reference() -> None:
    english = check_block_kit(unexpected_error_message("abc123", locale="en"))
    assert "Something went wrong on our side (reference `abc123`)" in mrkdwn(english)
    assert "abc123" in english["text"]
    french = check_block_kit(unexpected_error_message("abc123", locale="fr-FR"))
    assert "de notre côté (référence `abc123`)" in mrkdwn(french)


@pytest.mark.parametrize(
    "broken",
    [
        {"blocks": []},  # no fallback text
        {"text": "x" * 3001, "blocks": []},
        {"text": "t", "blocks": [{"type": "divider"}] * 51},
        {"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": HUGE}}]},
        {"text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": HUGE}}]},
        {
            "text": "t",
            "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
        },
        {
            "text": "t",
            "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": HUGE}]}],
        },
        {"text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "&am…"}}]},
        {"text": "t", "blocks": [{"type": "context", "elements": []}]},
        {"text": D(1), "blocks": []},
    ],
)
def test_the_validator_rejects_what_slack_would(broken: dict[str, Any]) -> None:
    with pytest.raises((AssertionError, KeyError, TypeError)):
        check_block_kit(broken)
