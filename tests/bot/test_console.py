"""Block Kit rendered as terminal text (bot/console.py): kpibot's offline mode and previews."""

from __future__ import annotations

from typing import Any

import pytest

from bot.blocks import unexpected_error_message
from bot.console import mrkdwn_to_text, render, visible_width, wrap


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


ALERT = {
    "text": "Detractor: Acme gave 3",
    "blocks": [
        {"type": "header", "text": plain(":rotating_light: Detractor at Acme")},
        {
            "type": "section",
            "text": mrkdwn("*Score 3/10* — “too slow &amp; buggy”\nOwner <@U0ANA>"),
        },
        {
            "type": "section",
            "fields": [
                mrkdwn("*MRR*\n$1,200.00"),
                mrkdwn("*Plan*\nPro"),
                mrkdwn("*Renewal*\n2027-01-31"),
                mrkdwn("*Previous NPS*\n9"),
                mrkdwn("*Health*\nat risk"),
            ],
        },
        {"type": "divider"},
        {"type": "context", "elements": [mrkdwn(":telephone_receiver: +33 1 23 45 67 89")]},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": plain("Called"), "style": "primary", "value": "1"},
                {"type": "button", "text": plain("Snooze 1 day"), "value": "1"},
                {"type": "users_select", "placeholder": plain("Reassign")},
            ],
        },
    ],
}


def test_the_header_is_underlined_to_its_width():
    lines = render(ALERT).split("\n")
    assert lines[0] == "🚨 Detractor at Acme"
    assert lines[1] == "═" * visible_width(lines[0])


def test_sections_context_dividers_and_buttons_read_plainly():
    text = render(ALERT, width=60)
    assert "Score 3/10 — “too slow & buggy”\nOwner @U0ANA" in text
    assert "\n" + "─" * 60 + "\n" in text
    assert "› 📞 +33 1 23 45 67 89" in text
    assert "[ Called ]  [ Snooze 1 day ]  [ Reassign ▾ ]" in text
    assert "*" not in text and "&amp;" not in text and "\x1b" not in text


def test_fields_go_two_per_line_in_aligned_columns():
    lines = render(ALERT, width=60).split("\n")
    column = (60 - 3) // 2 + 3
    first = lines.index("MRR" + " " * (column - 3) + "Plan")
    assert lines[first + 1] == "$1,200.00" + " " * (column - 9) + "Pro"
    assert lines[first + 3].startswith("Renewal ") and lines[first + 3][column:] == "Previous NPS"
    assert lines[first + 6] == "Health" and lines[first + 7] == "at risk"


def test_no_line_is_wider_than_asked():
    long = {"blocks": [{"type": "section", "text": mrkdwn(" ".join(["churn"] * 100))}]}
    for width in (40, 80):
        assert max(map(visible_width, render(long, width=width).split("\n"))) <= width
        assert max(map(visible_width, render(ALERT, width=width).split("\n"))) <= width


def test_a_word_longer_than_the_width_stays_whole():
    url = "https://example.com/" + "x" * 100
    assert wrap(f"see {url} now", 40) == ["see", url, "now"]


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("<@U0ANA> and <@U0BOB|bob>", "@U0ANA and @bob"),
        ("in <#C0KPI|cs-team> or <#C0OPS>", "in #cs-team or #C0OPS"),
        ("<!here> <!channel> <!subteam^S0CS|@cs-leads>", "@here @channel @cs-leads"),
        (
            "<https://example.com/a?b=1&amp;c=2|the report>",
            "the report (https://example.com/a?b=1&c=2)",
        ),
        ("<https://example.com>", "https://example.com"),
        ("<https://example.com|example.com>", "https://example.com"),
        ("<mailto:ana@example.com|ana@example.com>", "ana@example.com"),
        ("AT&amp;T &lt;3 &gt; 2", "AT&T <3 > 2"),
        ("*bold* and _italic_ and ~gone~", "bold and italic and ~gone~"),
        ("channel_not_found stays, 2*3*4 too", "channel_not_found stays, 2*3*4 too"),
        (":red_circle: :large_green_circle: :white_circle: :warning:", "🔴 🟢 ⚪ ⚠️"),
        (":thumbsup::skin-tone-3: :kpibot_custom:", "👍 :kpibot_custom:"),
        ("at 10:15:02", "at 10:15:02"),
        ("`/kpi churn *raw* &lt;x&gt;` then *b*", "`/kpi churn *raw* <x>` then b"),
        ("&gt; a quote\nnot one", "│ a quote\nnot one"),
    ],
)
def test_mrkdwn_becomes_readable_text(source: str, shown: str) -> None:
    assert mrkdwn_to_text(source) == shown


def test_a_code_block_is_indented_and_kept_verbatim():
    assert mrkdwn_to_text("run:\n```kpibot kpi *churn*\n--format json```") == (
        "run:\n    kpibot kpi *churn*\n    --format json"
    )


def test_ansi_styles_only_when_asked():
    colored = render(ALERT, color=True)
    assert "\x1b[1mScore 3/10\x1b[22m" in colored
    assert "\x1b[1m🚨 Detractor at Acme\x1b[22m" in colored
    assert "\x1b[2m› 📞 +33 1 23 45 67 89\x1b[22m" in colored
    assert "\x1b[9mgone\x1b[29m" in mrkdwn_to_text("~gone~", color=True)
    assert "\x1b" not in render(ALERT)


def test_a_message_without_blocks_shows_its_text():
    assert (
        render({"text": "MRR is *$12,000* &amp; rising <!here>"}) == "MRR is $12,000 & rising @here"
    )
    assert render({"text": "", "blocks": []}) == "(empty message)"


def test_the_target_comes_first_when_given():
    assert render({"text": "hi"}, target="#cs-team") == "To: #cs-team\n\nhi"


def test_a_home_view_and_a_modal_render_their_blocks():
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": mrkdwn("*Your book*: 12 accounts")}],
    }
    assert render(home) == "Your book: 12 accounts"
    modal = {
        "type": "modal",
        "title": plain("Reassign"),
        "blocks": [{"type": "input", "label": plain("To"), "element": {"type": "users_select"}}],
    }
    assert render(modal) == "Reassign\n════════\n\nTo: [ users_select ▾ ]"


def test_images_rich_text_and_unknown_blocks_are_not_silently_dropped():
    message = {
        "blocks": [
            {"type": "image", "image_url": "https://x/c.png", "alt_text": "MRR, 12 weeks"},
            {
                "type": "rich_text",
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [
                            {"type": "text", "text": "Ask "},
                            {"type": "user", "user_id": "U0ANA"},
                            {"type": "emoji", "name": "wave"},
                        ],
                    }
                ],
            },
            {"type": "video"},
        ]
    }
    assert render(message) == "[image: MRR, 12 weeks]\n\nAsk @U0ANA👋\n\n[video]"


def test_a_real_builder_s_message_renders_without_markup():
    text = render(unexpected_error_message("ab12cd", locale="en"))
    assert text.startswith("⚠️ Something went wrong on our side (reference `ab12cd`).")
    assert "*" not in text


def test_data_cannot_drive_the_terminal():
    hostile = "We leave\x1b]0;pwned\x07\x1b[2J\x1b[31mFAKE\x9b1m\rover"
    message = {
        "text": hostile,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": hostile}},
            {"type": "section", "text": {"type": "mrkdwn", "text": hostile}},
        ],
    }
    shown = render(message)
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert "We leave" in shown and "FAKE" in shown
