"""Block Kit messages as readable plain text: kpibot's offline mode and previews in a terminal.

`render` shows what Slack would show, as far as text can: the header underlined, sections wrapped
to the width, fields two per line, context lines set apart, buttons as `[ Called ]`, and mrkdwn
made readable (`<@U1>` → @U1, `<url|label>` → label (url), entities unescaped, common emoji codes
as symbols). Styling (bold, italic, dim) uses ANSI escapes only when `color=True`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EMOJI", "mrkdwn_to_text", "render", "visible_width"]

# C0 and C1 control characters but tab and newline: data must not drive the terminal.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

BOLD = ("\x1b[1m", "\x1b[22m")
ITALIC = ("\x1b[3m", "\x1b[23m")
DIM = ("\x1b[2m", "\x1b[22m")
STRIKE = ("\x1b[9m", "\x1b[29m")
CONTEXT_PREFIX = "› "
QUOTE_PREFIX = "│ "
FIELD_GAP = 3
MIN_WIDTH = 20

# Emoji codes kpibot's messages use, and other common ones; anything else is shown as its code.
EMOJI: dict[str, str] = {
    "red_circle": "🔴",
    "large_green_circle": "🟢",
    "green_circle": "🟢",
    "white_circle": "⚪",
    "large_yellow_circle": "🟡",
    "large_orange_circle": "🟠",
    "large_blue_circle": "🔵",
    "warning": "⚠️",
    "rotating_light": "🚨",
    "calendar": "📅",
    "date": "📅",
    "telephone_receiver": "📞",
    "phone": "☎️",
    "email": "✉️",
    "envelope": "✉️",
    "bust_in_silhouette": "👤",
    "busts_in_silhouette": "👥",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "x": "❌",
    "zzz": "💤",
    "bell": "🔔",
    "memo": "📝",
    "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉",
    "bar_chart": "📊",
    "moneybag": "💰",
    "arrow_up": "⬆️",
    "arrow_down": "⬇️",
    "arrow_right": "➡️",
    "information_source": "ℹ️",
    "hourglass_flowing_sand": "⏳",
    "tada": "🎉",
    "wave": "👋",
    "thumbsup": "👍",
    "+1": "👍",
    "thumbsdown": "👎",
    "-1": "👎",
    "fire": "🔥",
    "star": "⭐",
    "link": "🔗",
    "pushpin": "📌",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODE = re.compile(r"```(.*?)```|`([^`\n]+)`", re.DOTALL)
_LINK = re.compile(r"<([^<>\n]+)>")
_EMOJI_CODE = re.compile(r":([a-z0-9_+\-]+):")
_SKIN_TONE = re.compile(r"::skin-tone-\d:")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
_SPECIAL_MENTIONS = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


@dataclass(frozen=True)
class _Style:
    width: int
    color: bool

    def wrap(self, text: str, *, prefix: str = "", width: int | None = None) -> list[str]:
        return wrap(text, (width or self.width) - visible_width(prefix), prefix=prefix)

    def paint(self, text: str, codes: tuple[str, str]) -> str:
        return f"{codes[0]}{text}{codes[1]}" if self.color and text else text


def render(
    message: Mapping[str, Any], *, target: str | None = None, width: int = 80, color: bool = False
) -> str:
    """Return `message` (a chat message or a home/modal view) as plain text for a terminal."""
    style = _Style(max(width, MIN_WIDTH), color)
    parts: list[list[str]] = []
    if target:
        parts.append([f"To: {target}"])
    title = message.get("title")
    if isinstance(title, Mapping) and title.get("text"):  # a modal's title
        parts.append(_header({"text": title}, style))
    blocks = [b for b in message.get("blocks") or [] if isinstance(b, Mapping)]
    if blocks:
        parts.extend(lines for block in blocks if (lines := _block(block, style)))
    elif message.get("text"):
        parts.append(style.wrap(mrkdwn_to_text(str(message["text"]), color=color)))
    for attachment in message.get("attachments") or []:
        if isinstance(attachment, Mapping):
            inner = render(attachment, width=style.width - len(QUOTE_PREFIX), color=color)
            parts.append(
                [
                    QUOTE_PREFIX + line if line else QUOTE_PREFIX.rstrip()
                    for line in inner.split("\n")
                ]
            )
    if not any(parts) or (target and len(parts) == 1):
        parts.append(["(empty message)"])
    return "\n\n".join("\n".join(lines).rstrip() for lines in parts if lines)


def mrkdwn_to_text(text: str, *, color: bool = False) -> str:
    """Return Slack mrkdwn as readable text: links, mentions, emphasis, entities and emoji."""
    text = without_controls(text)
    style = _Style(80, color)
    out: list[str] = []
    position = 0
    for match in _CODE.finditer(text):
        out.append(_prose(text[position : match.start()], style))
        block, inline = match.group(1), match.group(2)
        if block is not None:
            code = _unescape(block.strip("\n"))
            out.append("\n".join("    " + line for line in code.split("\n")))
        else:
            out.append(f"`{_unescape(inline)}`")
        position = match.end()
    out.append(_prose(text[position:], style))
    return "".join(out)


def plain_to_text(text: str) -> str:
    """Return a plain_text object's text with its emoji codes as symbols (no mrkdwn)."""
    return _emoji(without_controls(text))


def without_controls(text: str) -> str:
    """Return `text` without control characters (escape sequences from data) but newline and tab."""
    return _CONTROLS.sub("", text)


def visible_width(text: str) -> int:
    """Return how many terminal columns `text` takes (ANSI escapes take none, wide glyphs two)."""
    width = 0
    for char in _ANSI.sub("", text):
        if unicodedata.combining(char) or char in "\u200d\ufe0f\ufe0e":
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def wrap(text: str, width: int, *, prefix: str = "") -> list[str]:
    """Return `text` cut into lines of at most `width` columns (long words stay whole)."""
    width = max(width, 1)
    lines: list[str] = []
    for line in text.split("\n"):
        indent = line[: len(line) - len(line.lstrip(" "))]
        words = line.split(" ")[len(indent) :] if indent else line.split(" ")
        current = indent
        for word in words:
            candidate = f"{current} {word}" if current.strip() else current + word
            if visible_width(candidate) <= width or not current.strip():
                current = candidate
            else:
                lines.append(current.rstrip())
                current = indent + word
        lines.append(current.rstrip())
    return [prefix + line if line else prefix.rstrip() for line in lines]


def _block(block: Mapping[str, Any], style: _Style) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return _header(block, style)
    if kind == "section":
        return _section(block, style)
    if kind == "context":
        # One line per element: a terminal is narrower than Slack's inline run of elements.
        texts = [_element(e, style) for e in block.get("elements") or []]
        lines = [x for t in texts if t for x in style.wrap(t, prefix=CONTEXT_PREFIX)]
        return [style.paint(line, DIM) for line in lines]
    if kind == "divider":
        return ["─" * style.width]
    if kind == "actions":
        return style.wrap("  ".join(_element(e, style) for e in block.get("elements") or []))
    if kind == "image":
        title = _text(block.get("title"), style)
        shown = f"[image: {block.get('alt_text') or title or 'image'}]"
        return style.wrap(f"{title}\n{shown}" if title else shown)
    if kind == "rich_text":
        return style.wrap("".join(_rich_text(e) for e in block.get("elements") or []))
    if kind == "input":
        label = _text(block.get("label"), style)
        return style.wrap(f"{label}: {_element(block.get('element') or {}, style)}")
    return [f"[{kind or 'block'}]"]


def _header(block: Mapping[str, Any], style: _Style) -> list[str]:
    lines = style.wrap(_text(block.get("text"), style, plain=True))
    underline = "═" * min(max(map(visible_width, lines), default=0), style.width)
    return [style.paint(line, BOLD) for line in lines] + [underline]


def _section(block: Mapping[str, Any], style: _Style) -> list[str]:
    lines: list[str] = []
    if block.get("text"):
        lines.extend(style.wrap(_text(block["text"], style)))
    fields = [_text(f, style) for f in block.get("fields") or []]
    column = (style.width - FIELD_GAP) // 2
    for start in range(0, len(fields), 2):
        if lines:
            lines.append("")
        left = style.wrap(fields[start], width=column)
        right = style.wrap(fields[start + 1], width=column) if start + 1 < len(fields) else []
        for index in range(max(len(left), len(right))):
            cell = left[index] if index < len(left) else ""
            padded = cell + " " * (column - visible_width(cell) + FIELD_GAP)
            lines.append((padded + (right[index] if index < len(right) else "")).rstrip())
    accessory = block.get("accessory")
    if isinstance(accessory, Mapping):
        lines.append(_element(accessory, style))
    return lines


def _element(element: Mapping[str, Any], style: _Style) -> str:
    """Return a context element or an interactive element (button, select…) as text."""
    kind = element.get("type")
    if kind in ("mrkdwn", "plain_text"):
        return _text(element, style)
    if kind == "image":
        return f"[{element.get('alt_text') or 'image'}]"
    if kind == "button":
        label = _text(element.get("text"), style, plain=True)
        shown = f"[ {label} ]"
        return style.paint(shown, BOLD) if element.get("style") == "primary" else shown
    if kind == "overflow":
        return "[ ⋯ ]"
    placeholder = _text(element.get("placeholder"), style, plain=True)
    initial = element.get("initial_option")
    if isinstance(initial, Mapping):
        placeholder = _text(initial.get("text"), style, plain=True)
    return f"[ {placeholder or kind or '…'} ▾ ]"


def _text(obj: Any, style: _Style, *, plain: bool = False) -> str:
    """Return a text object's text: mrkdwn made readable, plain_text with emoji symbols."""
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, Mapping):
        return ""
    text = str(obj.get("text") or "")
    if plain or obj.get("type") == "plain_text":
        return plain_to_text(text)
    return mrkdwn_to_text(text, color=style.color)


def _rich_text(element: Mapping[str, Any]) -> str:
    kind = element.get("type")
    if kind in ("rich_text_section", "rich_text_preformatted", "rich_text_quote"):
        return "".join(_rich_text(e) for e in element.get("elements") or []) + "\n"
    if kind == "rich_text_list":
        items = ["• " + _rich_text(e).rstrip("\n") for e in element.get("elements") or []]
        return "\n".join(items) + "\n"
    if kind == "text":
        return str(element.get("text") or "")
    if kind == "link":
        url, label = str(element.get("url") or ""), element.get("text")
        return f"{label} ({url})" if label and label != url else url
    if kind == "user":
        return f"@{element.get('user_id')}"
    if kind == "channel":
        return f"#{element.get('channel_id')}"
    if kind == "emoji":
        return _emoji(f":{element.get('name')}:")
    return ""


def _prose(text: str, style: _Style) -> str:
    """Return mrkdwn outside code spans as readable text."""
    out: list[str] = []
    position = 0
    for match in _LINK.finditer(text):
        out.append(_styled(text[position : match.start()], style))
        out.append(_link(match.group(1)))
        position = match.end()
    out.append(_styled(text[position:], style))
    return "".join(out)


def _styled(text: str, style: _Style) -> str:
    text = re.sub(r"(?m)^&gt; ?", QUOTE_PREFIX, text)
    text = _BOLD.sub(lambda m: style.paint(m.group(1), BOLD), text)
    text = _ITALIC.sub(lambda m: style.paint(m.group(1), ITALIC), text)
    if style.color:
        text = _STRIKE.sub(lambda m: style.paint(m.group(1), STRIKE), text)
    return _unescape(_emoji(text))


def _link(inner: str) -> str:
    """Return `<…>` as text: a mention, a special mention, or a link with its label."""
    target, _, label = inner.partition("|")
    label = _unescape(label)
    if target.startswith("@"):
        return f"@{label or target[1:]}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!"):
        name = target[1:]
        if name in _SPECIAL_MENTIONS:
            return _SPECIAL_MENTIONS[name]
        if label:
            return label
        return "@" + name.removeprefix("subteam^")
    url = _unescape(target)
    shown = url.removeprefix("mailto:")
    if not label or label in (url, shown) or label == re.sub(r"^https?://", "", url):
        return shown
    return f"{label} ({shown})"


def _emoji(text: str) -> str:
    text = _SKIN_TONE.sub(":", text)
    return _EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
