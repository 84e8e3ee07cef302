"""Requests as Slack sends them to `POST /slack/events`, signed, for tests of the running app."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.signing import TEST_SLACK_SIGNING_SECRET, slack_headers

USER_ID = "U0ANA01"


def command_body(
    text: str, *, user_id: str = USER_ID, response_url: str = "", **extra: str
) -> bytes:
    """The form body of a `/kpi` slash command, with every field Slack sends."""
    fields = {
        "token": "deprecated-verification-token",
        "team_id": "T0KPI",
        "team_domain": "acme-cs",
        "channel_id": "C0GENERAL",
        "channel_name": "cs-team",
        "user_id": user_id,
        "user_name": "ana",
        "command": "/kpi",
        "text": text,
        "api_app_id": "A0KPIBOT",
        "is_enterprise_install": "false",
        "response_url": response_url or "https://hooks.slack.com/commands/T0KPI/1/x",
        "trigger_id": "1.2.3",
        **extra,
    }
    return urlencode(fields).encode()


def send_command(
    url: str,
    text: str,
    *,
    secret: str = TEST_SLACK_SIGNING_SECRET,
    at: datetime | None = None,
    timeout: float = 10,
    client: httpx.Client | None = None,
    **fields: str,
) -> httpx.Response:
    """POST a signed `/kpi text` to the server at `url` (through `client` when given)."""
    body = command_body(text, **fields)
    return (client or httpx).post(
        url + "/slack/events",
        content=body,
        headers=slack_headers(body, secret=secret, at=at),
        timeout=timeout,
    )


def send_event(
    url: str, event: dict[str, Any], *, secret: str = TEST_SLACK_SIGNING_SECRET
) -> httpx.Response:
    """POST a signed Events API callback carrying `event`."""
    body = json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0KPI",
            "api_app_id": "A0KPIBOT",
            "event": event,
            "type": "event_callback",
            "event_id": "Ev0001",
            "event_time": 1_700_000_000,
        }
    ).encode()
    headers = {**slack_headers(body, secret=secret), "content-type": "application/json"}
    return httpx.post(url + "/slack/events", content=body, headers=headers, timeout=10)
