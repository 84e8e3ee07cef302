"""Block Kit's limits as assertions, shared by the tests of everything that builds messages."""

from __future__ import annotations

import json
import re
from typing import Any

ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")  # an "&" that does not start a whole entity
MAX_MESSAGE_BLOCKS = 50
MAX_HOME_BLOCKS = 100


def check_message(message: dict[str, Any]) -> dict[str, Any]:
    """Assert that `message` is a postable message within Slack's limits; return it."""
    json.dumps(message)  # plain JSON: no Decimal, date or tuple left in
    text = message["text"]
    assert isinstance(text, str) and text.strip() and len(text) <= 3000
    check_blocks(message["blocks"], MAX_MESSAGE_BLOCKS)
    return message


def check_blocks(blocks: list[dict[str, Any]], max_blocks: int) -> None:
    """Assert each block is within Block Kit's limits, with whole entities in mrkdwn."""
    assert isinstance(blocks, list) and 0 < len(blocks) <= max_blocks
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                check_text_object(block["text"], 3000)
            assert len(block.get("fields", [])) <= 10
            for field in block.get("fields", []):
                check_text_object(field, 2000)
        elif kind == "context":
            assert 0 < len(block["elements"]) <= 10
            for element in block["elements"]:
                check_text_object(element, 3000)
        else:
            assert kind == "divider", f"unexpected block type {kind!r}"


def check_text_object(text: dict[str, Any], limit: int) -> None:
    """Assert a text object is mrkdwn or plain text, not blank, within `limit`, whole entities."""
    assert text["type"] in ("mrkdwn", "plain_text")
    assert text["text"].strip() and len(text["text"]) <= limit
    if text["type"] == "mrkdwn":
        assert not ENTITY.search(text["text"]), text["text"]
