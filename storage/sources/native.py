"""kpibot's own events (`POST /webhooks/kpibot`), signed per the Standard Webhooks specification."""

from __future__ import annotations

import binascii
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from storage.db import dumps
from storage.sources.base import Delivery, SourceEvent, WebhookRejected

MAX_BATCH = 1_000


class NativeSource:
    """One event, or `{"events": [...]}` of up to 1,000, in the native format (SPEC.md)."""

    name = "kpibot"
    secret_setting = "KPIBOT_WEBHOOK_SECRET"  # noqa: S105  (the variable's name, not a secret)

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Check the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers."""
        headers = {
            name: delivery.header(name) or ""
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        try:
            Webhook(secret).verify(delivery.body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError, binascii.Error) as error:
            # ValueError covers a body that is not UTF-8 and a malformed signature list.
            raise WebhookRejected(401, f"bad Standard Webhooks signature: {error}") from None

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        """Return the delivery's events, each keeping its own JSON as its raw body."""
        if isinstance(payload, dict) and "events" in payload and "type" not in payload:
            batch = payload["events"]
            if not isinstance(batch, list):
                raise WebhookRejected(422, "events: must be a list of events")
            if len(batch) > MAX_BATCH:
                raise WebhookRejected(422, f"events: at most {MAX_BATCH} events per delivery")
            return [_native(event, dumps(event)) for event in batch]
        return [_native(payload, delivery.body.decode())]


def _native(event: Any, raw: str) -> SourceEvent:
    event_id = event.get("id") if isinstance(event, dict) else None
    return SourceEvent(event_id if isinstance(event_id, str) else None, raw, event)
