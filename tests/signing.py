"""Sign requests the way each sender does, for tests that go through the real HTTP server."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

TEST_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"kpibot-test-secret-0123456789ab").decode()


def standard_headers(
    body: bytes,
    *,
    secret: str = TEST_WEBHOOK_SECRET,
    msg_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers for `body`."""
    msg_id = msg_id or "msg_" + os.urandom(8).hex()
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body)  # the bytes as sent, whatever they are
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


TEST_SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # Slack's documentation example


def slack_headers(
    body: bytes, *, secret: str = TEST_SLACK_SIGNING_SECRET, at: datetime | None = None
) -> dict[str, str]:
    """Headers Slack sends with a request: its timestamp and v0 HMAC-SHA256 signature."""
    import hashlib
    import hmac

    timestamp = str(int((at or datetime.now(UTC)).timestamp()))
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": f"v0={digest}",
        "content-type": "application/x-www-form-urlencoded",
    }
