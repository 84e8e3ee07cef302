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
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
