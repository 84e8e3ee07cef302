"""Slack Block Kit messages, built by pure functions: KPI answers, help and lists, errors.

Every builder returns `{"text": fallback, "blocks": [...]}`, ready for `chat.postMessage`, a
`response_url` or `chat.postEphemeral`; the caller adds the channel and the response type.

- The wording comes from `metrics.answer` and `metrics.format`, so Slack and `kpibot kpi` say the
  same thing; the fallback text is `answer_text` itself (escaped, cut to MAX_FALLBACK characters).
- Everything that comes from users or data (filter values, breakdown keys, reasons, labels,
  definitions) is escaped for mrkdwn (&, <, >) and cut to a length that keeps the message within
  Block Kit's limits, whatever its size: a breakdown shows its first MAX_PARTS_SHOWN parts (the
  computation sorts them largest first) and says how many are left out and how to see them all.
- The few fixed strings exist in English and French (a locale starting with "fr").
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from metrics.answer import answer_text, describe_inputs, main_input
from metrics.format import (
    format_change,
    format_count,
    format_instant,
    format_value,
    language,
    not_available,
    rounded_change,
)

if TYPE_CHECKING:
    from metrics.ask import Reply
    from metrics.query import QueryError
    from metrics.result import KpiResult, Part, Value

__all__ = [
    "MAX_BLOCKS",
    "MAX_CONTEXT_ELEMENTS",
    "MAX_FALLBACK",
    "MAX_FIELDS",
    "MAX_FIELD_TEXT",
    "MAX_HEADER_TEXT",
    "MAX_PARTS_SHOWN",
    "MAX_TEXT",
    "clip",
    "context_block",
    "error_message",
    "escape",
    "header_block",
    "kpi_message",
    "mrkdwn_text",
    "refusal_blocks",
    "reply_message",
    "section_block",
    "unexpected_error_message",
]

Block = dict[str, Any]
Message = dict[str, Any]

# Block Kit's limits (api.slack.com/reference/block-kit): blocks per message, characters per
# header, per text object (section text, context element), per section field, fields per section.
MAX_BLOCKS = 50
MAX_HEADER_TEXT = 150
MAX_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK = 3000
# Readability, not Slack, sets these: two sections of parts, and names a person can scan.
MAX_PARTS_SHOWN = 20
MAX_NAME = 100
MAX_REASON = 300
MAX_COMMAND = 300

_EMOJI_GOOD, _EMOJI_BAD, _EMOJI_FLAT = ":large_green_circle:", ":red_circle:", ":white_circle:"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
# A `/kpi …` command inside a help line: words up to a colon, a "·" separator or the line's end.
_COMMAND = re.compile(r"/kpi(?: (?!·)[^\s:`]+)*")
_TRAILING = re.compile(r"(?<!&lt)(?<!&gt)(?<!&amp)[.,;)]+$")  # punctuation, not an entity's ";"

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "colon": ":",
        "vs": "vs",
        "previous": "the previous period",
        "better": "better",
        "worse": "worse",
        "where": "Where",
        "and": "and",
        "by": "By {by}",
        "breakdown": "Breakdown",
        "none": "(none)",
        "more": "… and {n} more (see `{command}`)",
        "definition": "Definition",
        "as_of": "Data as of {instant}",
        "no_data": "No data yet",
        "shared_by": "Shared by {user}",
        "try": "Try",
        "example": "Example",
        "help": "Type `/kpi help` to see how to ask, `/kpi list` for every metric.",
        "unexpected": "Something went wrong on our side (reference `{reference}`). It is in our "
        "logs: try again in a moment, or give this reference to whoever runs kpibot.",
    },
    "fr": {
        "colon": "\u00a0:",  # French sets a no-break space before a colon
        "vs": "par rapport à",
        "previous": "la période précédente",
        "better": "mieux",
        "worse": "moins bien",
        "where": "Où",
        "and": "et",
        "by": "Par {by}",
        "breakdown": "Répartition",
        "none": "(aucun)",
        "more": "… et {n} de plus (voir `{command}`)",
        "definition": "Définition",
        "as_of": "Données à jour au {instant}",
        "no_data": "Aucune donnée pour l'instant",
        "shared_by": "Partagé par {user}",
        "try": "Essayez",
        "example": "Exemple",
        "help": "Tapez `/kpi aide` pour savoir comment demander, `/kpi liste` pour tous les "
        "indicateurs.",
        "unexpected": "Un problème est survenu de notre côté (référence `{reference}`). Il est "
        "dans nos journaux : réessayez dans un instant, ou donnez cette référence à la personne "
        "qui administre kpibot.",
    },
}


def kpi_message(
    result: KpiResult, *, locale: str, timezone: str, shared_by: str | None = None
) -> Message:
    """Return a KPI answer: header, value and change, inputs, breakdown, definition and dates."""
    words = _WORDS[language(locale)]
    blocks = [
        header_block(f"{result.label} — {result.period.label(locale)}"),
        section_block(_summary(result, locale)),
        *_breakdown(result, locale),
        context_block(_footer(result, locale, timezone)),
    ]
    if shared_by:
        blocks.append(context_block([words["shared_by"].format(user=_mention(shared_by))]))
    return _message(answer_text(result, locale=locale, timezone=timezone), blocks)


def reply_message(
    reply: Reply, *, locale: str, timezone: str, shared_by: str | None = None
) -> Message:
    """Return what `/kpi` answers: a KPI message, or help, the metric list or a definition."""
    if reply.result is not None:
        return kpi_message(reply.result, locale=locale, timezone=timezone, shared_by=shared_by)
    lines = list(reply.lines)
    if reply.command.kind == "list":
        shown = [_list_line(line) for line in lines]
    elif reply.command.kind == "explain" and lines:
        shown = [f"*{escape(lines[0])}*", *map(_with_commands, lines[1:])]
    else:
        shown = [_with_commands(line) for line in lines]
    blocks = [section_block(chunk) for chunk in _chunks(shown, MAX_TEXT)]
    return _message("\n".join(lines), blocks)


def error_message(error: QueryError, *, locale: str) -> Message:
    """Return the reply to a question not understood: what, suggestions and an example."""
    words = _WORDS[language(locale)]
    colon = words["colon"]
    lines = [f":warning: {clip(escape(error.message), MAX_TEXT // 2)}"]
    # Suggestions the message already names in backticks ("Did you mean `churn`?") are not repeated.
    tries = [f"`{_code(s)}`" for s in error.suggestions[:5] if f"`{s}`" not in error.message]
    if tries:
        lines.append(f"{words['try']}{colon} {' · '.join(tries)}")
    lines.append(f"{words['example']}{colon} `{_code(error.example)}`")
    blocks = [section_block("\n".join(lines)), context_block([words["help"]])]
    text = f"{error.message}\n{words['example']}{colon} {error.example}"
    return _message(text, blocks)


def unexpected_error_message(reference: str, *, locale: str) -> Message:
    """Return the reply to an unexpected failure, with the reference id that is in the log."""
    text = _WORDS[language(locale)]["unexpected"].format(reference=_code(reference))
    return _message(text.replace("`", ""), [section_block(f":warning: {text}")])


def refusal_blocks(reason: str) -> list[Block]:
    """Return the blocks telling a user why they may not do this (admin mentions kept)."""
    text = re.sub(r"&lt;@([UW][A-Z0-9]+)&gt;", r"<@\1>", escape(reason))
    return [section_block(f":no_entry: {text}")]


def escape(text: str) -> str:
    """Return `text` safe inside mrkdwn: &, < and > as HTML entities (Slack's only three)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _summary(result: KpiResult, locale: str) -> str:
    """Return the value in bold, the change against the previous period, inputs and filters."""
    words = _WORDS[language(locale)]
    lines = [_figure(result.current, result, locale, bold=True)]
    if result.previous is not None:
        lines.append(_change(result, locale))
    inputs = describe_inputs(
        result.metric, result.current.inputs, currency=result.currency, locale=locale
    )
    if inputs:
        lines.append(clip(escape(inputs), MAX_TEXT // 3))
    if result.filters:
        conditions = f" {words['and']} ".join(
            f"{clip(escape(dim), MAX_NAME)} = `{_code(value)}`" for dim, value in result.filters
        )
        lines.append(f"{words['where']} {conditions}")
    return "\n".join(lines)


def _figure(value: Value, result: KpiResult, locale: str, *, bold: bool = False) -> str:
    """Return a formatted value (in bold for the headline), or "n/a — reason" when undefined."""
    if value.value is None:
        missing = f"*{not_available(locale)}*" if bold else not_available(locale)
        reason = clip(escape(value.reason), MAX_REASON) if value.reason else ""
        return f"{missing} — {reason}" if reason else missing
    shown = format_value(value.value, result.unit, currency=result.currency, locale=locale)
    return f"*{shown}*" if bold else shown


def _change(result: KpiResult, locale: str) -> str:
    """Return ":red_circle: ↑ +1.5 pts vs Q2 2026: 12.5% (worse)"; white when flat or unknown."""
    assert result.previous is not None
    words = _WORDS[language(locale)]
    previous_label = (
        result.previous_period.label(locale) if result.previous_period else words["previous"]
    )
    previous = _figure(result.previous, result, locale)
    comparison = f"{words['vs']} {escape(previous_label)}{words['colon']} {previous}"
    change = result.change
    if change is None:
        return f"{_EMOJI_FLAT} {comparison}"
    shown = rounded_change(change, result.unit, result.currency)
    text = format_change(change, result.unit, currency=result.currency, locale=locale)
    if shown == 0:
        return f"{_EMOJI_FLAT} → *{text}* {comparison}"
    good = (shown > 0) == result.higher_is_better
    emoji, arrow = (_EMOJI_GOOD if good else _EMOJI_BAD), ("↑" if shown > 0 else "↓")
    verdict = words["better"] if good else words["worse"]
    return f"{emoji} {arrow} *{text}* {comparison} ({verdict})"


def _breakdown(result: KpiResult, locale: str) -> list[Block]:
    """Return the parts as section fields, ten per section, then how many were left out."""
    if not result.breakdown:
        return []
    words = _WORDS[language(locale)]
    title = words["by"].format(by=escape(result.by)) if result.by else words["breakdown"]
    shown = result.breakdown[:MAX_PARTS_SHOWN]
    fields = [_part_field(part, result, locale) for part in shown]
    blocks: list[Block] = []
    for start in range(0, len(fields), MAX_FIELDS):
        block: Block = {"type": "section", "fields": fields[start : start + MAX_FIELDS]}
        if start == 0:
            block["text"] = mrkdwn_text(f"*{clip(title, MAX_NAME)}*")
        blocks.append(block)
    left_out = len(result.breakdown) - len(shown)
    if left_out:
        more = words["more"].format(n=format_count(left_out, locale), command=_json_command(result))
        blocks.append(context_block([more]))
    return blocks


def _part_field(part: Part, result: KpiResult, locale: str) -> dict[str, str]:
    """Return one part as a field: its key in bold, its value, and its main input."""
    key = clip(escape(part.key), MAX_NAME) if part.key else _WORDS[language(locale)]["none"]
    lines = [f"*{key}*", _figure(part.value, result, locale)]
    if part.value.value is not None:
        detail = main_input(
            result.metric, part.value.inputs, currency=result.currency, locale=locale
        )
        if detail:
            lines.append(escape(detail))
    return mrkdwn_text(clip("\n".join(lines), MAX_FIELD_TEXT))


def _json_command(result: KpiResult) -> str:
    """Return the `kpibot kpi` command that prints this answer in full as JSON."""
    period = result.period
    dates = period.start.isoformat()
    if period.end != period.start:
        dates += f"..{period.end.isoformat()}"
    question = [result.metric, dates, *(["by", result.by] if result.by else [])]
    for dim, value in result.filters:
        question.append(f'{dim}="{value}"' if any(c.isspace() for c in value) else f"{dim}={value}")
    command = " ".join(["kpibot", "kpi", *map(shlex.quote, question), "--format", "json"])
    if len(command) > MAX_COMMAND or "`" in command:
        return "kpibot kpi … --format json"
    return escape(command)


def _footer(result: KpiResult, locale: str, timezone: str) -> list[str]:
    """Return the definition, the resolved dates and time zone, and "data as of"."""
    words = _WORDS[language(locale)]
    period = result.period
    definition = f"*{words['definition']}*{words['colon']} {escape(result.definition)}"
    dates = f":calendar: {period.range_label(locale)} ({escape(period.timezone)})"
    if result.data_as_of is None:
        as_of = words["no_data"]
    else:
        as_of = words["as_of"].format(instant=format_instant(result.data_as_of, timezone, locale))
    return [definition, f"{dates} · {escape(as_of)}"]


def _list_line(line: str) -> str:
    """Return a line of the metric list: a group title in bold, or "• `id` label (aliases)"."""
    if not line.startswith(" "):
        return f"*{escape(line)}*"
    metric_id, _, rest = line.strip().partition(" ")
    return f"• `{_code(metric_id)}` {escape(' '.join(rest.split()))}".rstrip()


def _with_commands(line: str) -> str:
    """Return a help line escaped, with each `/kpi …` command in backticks."""

    def quote(match: re.Match[str]) -> str:
        command = match.group(0)
        stripped = _TRAILING.sub("", command)
        return f"`{stripped}`{command[len(stripped) :]}"

    return _COMMAND.sub(quote, escape(line))


def _code(text: str) -> str:
    """Return text to show between backticks: escaped, without backticks, of a sane length."""
    return clip(escape(text.replace("`", "'")), MAX_COMMAND)


def _mention(user_id: str) -> str:
    """Return a mention of a Slack user id, or the text escaped if it is not one."""
    return f"<@{user_id}>" if _USER_ID.match(user_id) else clip(escape(user_id), MAX_NAME)


def clip(text: str, limit: int) -> str:
    """Return `text` cut to `limit` characters with "…", never through an entity like "&amp;"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - len("&amp;") + 1))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _chunks(lines: list[str], limit: int) -> list[str]:
    """Return `lines` joined by newlines into texts of at most `limit` characters each."""
    chunks: list[str] = []
    for line in (clip(line, limit) for line in lines):
        if chunks and len(chunks[-1]) + 1 + len(line) <= limit:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line or " ")
    return chunks


def _fallback(text: str) -> str:
    """Return the notification text: escaped, cut at a line end when it is too long."""
    text = escape(text).strip() or "kpibot"
    if len(text) <= MAX_FALLBACK:
        return text
    line_end = text.rfind("\n", 0, MAX_FALLBACK - 1)
    if line_end > MAX_FALLBACK * 3 // 4:
        return text[:line_end] + "\n…"
    return clip(text, MAX_FALLBACK)


def _message(text: str, blocks: list[Block]) -> Message:
    """Return a message with its fallback text; builders stay within MAX_BLOCKS by design."""
    return {"text": _fallback(text), "blocks": blocks[:MAX_BLOCKS]}


def header_block(text: str) -> Block:
    """Return a header block: plain text on one line, cut to Slack's limit."""
    plain = " ".join(text.split()) or "kpibot"
    if len(plain) > MAX_HEADER_TEXT:
        plain = plain[: MAX_HEADER_TEXT - 1] + "…"
    return {"type": "header", "text": {"type": "plain_text", "text": plain, "emoji": True}}


def section_block(text: str) -> Block:
    """Return a section of mrkdwn `text` cut to Slack's limit (never empty)."""
    return {"type": "section", "text": mrkdwn_text(clip(text, MAX_TEXT) or " ")}


def context_block(texts: list[str]) -> Block:
    """Return a context block of the non-empty `texts`, within Slack's limits."""
    elements = [mrkdwn_text(clip(t, MAX_TEXT)) for t in texts[:MAX_CONTEXT_ELEMENTS] if t]
    return {"type": "context", "elements": elements}


def mrkdwn_text(text: str) -> dict[str, str]:
    """Return a mrkdwn text object."""
    return {"type": "mrkdwn", "text": text}
