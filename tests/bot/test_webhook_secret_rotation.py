"""Rotating a route's secret over real HTTP: while the setting lists the new secret and the old
one, deliveries signed with either are taken; once the old one is removed, it is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from storage.tables import EventLog
from tests.bot import test_webhook_surveys as surveys
from tests.bot.test_webhook_native import count
from tests.signing import standard_headers
from tests.storage.sources.test_stripe import invoice, stripe_event, stripe_signature

# Two secrets of each route's own kind: the one being replaced, and its replacement.
SECRETS: dict[str, tuple[str, str, str]] = {  # route → (setting, old secret, new secret)
    "kpibot": (
        "webhook_secret",
        "whsec_" + "b2xkLXNlY3JldC1vZi10aGUta3BpYm90LXJvdXRl",
        "whsec_" + "bmV3LXNlY3JldC1vZi10aGUta3BpYm90LXJvdXRl",
    ),
    "stripe": ("stripe_webhook_secret", "whsec_old0123456789abcdef", "whsec_new0123456789abcdef"),
    "delighted": ("delighted_api_key", "old-delighted-api-key", "new-delighted-api-key"),
    "typeform": ("typeform_webhook_secret", "old-typeform-secret-01", "new-typeform-secret-01"),
    "zendesk": ("zendesk_webhook_secret", "b2xkLXplbmRlc2stc2VjcmV0", "bmV3LXplbmRlc2stc2VjcmV0"),
    "segment": ("segment_webhook_secret", "old-segment-secret-01", "new-segment-secret-01"),
}


def _native(n: int) -> dict[str, Any]:
    return {
        "id": f"evt-rotation-{n}",
        "type": "account.upserted",
        "occurred_at": "2026-11-20T09:00:00Z",
        "data": {"account_id": f"acc-{n}", "name": f"Account {n}"},
    }


# Each route's delivery number `n`: a distinct event (logged once each, whatever it is).
PAYLOADS: dict[str, Callable[[int], Any]] = {
    "kpibot": _native,
    "stripe": lambda n: stripe_event("invoice.paid", invoice(), event_id=f"evt_rotation_{n}"),
    "delighted": lambda n: surveys.delighted_response(2, None, 1763891400 + n),
    "typeform": lambda n: {"event_id": f"e-{n}", "form_response": {"token": f"t-{n}"}},
    "zendesk": lambda n: {"ticket_id": str(n), "satisfaction_rating": {"score": "bad"}},
    "segment": lambda n: surveys.segment_track(f"m-{n}", "user-9", "2026-11-22T09:00:00Z"),
}


def _signed_headers(route: str, body: bytes, secret: str) -> dict[str, str]:
    if route == "kpibot":
        return standard_headers(body, secret=secret)
    if route == "stripe":
        return {"stripe-signature": stripe_signature(body, secret=secret)}
    return surveys.SIGNERS[route](body, secret=secret)


def _post(server: Any, route: str, n: int, secret: str) -> httpx.Response:
    body = json.dumps(PAYLOADS[route](n)).encode()
    headers = {"content-type": "application/json", **_signed_headers(route, body, secret)}
    response = httpx.post(f"{server.url}/webhooks/{route}", content=body, headers=headers)
    server.settle()
    return response


# Signed with a listed secret: the body is read (200, or 422 for the payloads above that kpibot
# keeps as rejected); never 401, nor anything else.
TAKEN = (200, 422)


@pytest.mark.parametrize("route", sorted(SECRETS))
def test_while_a_secret_is_rotated_both_sign_and_afterwards_only_the_new_one(
    web_server: Any, route: str
) -> None:
    setting, old, new = SECRETS[route]
    during = web_server(**{setting: f"{new}, {old}"})  # the setting as the rotation guide says
    assert _post(during, route, 1, old).status_code in TAKEN
    assert count(during, EventLog) == 1
    assert _post(during, route, 2, new).status_code in TAKEN
    assert count(during, EventLog) == 2
    stranger = SECRETS["kpibot" if route != "kpibot" else "stripe"][2]  # a secret of neither
    refused = _post(during, route, 3, stranger)
    assert refused.status_code == 401
    assert count(during, EventLog) == 2  # nothing of the refused delivery is stored

    after = web_server(**{setting: new})  # on the same database: its rows are still there
    assert _post(after, route, 4, old).status_code == 401
    assert count(after, EventLog) == 2
    assert _post(after, route, 5, new).status_code in TAKEN
    assert count(after, EventLog) == 3


def test_a_refusal_names_what_the_first_secret_missed(web_server: Any) -> None:
    """With several secrets, the answer is the one a single secret gives, not a vaguer one."""
    setting, old, new = SECRETS["typeform"]
    server = web_server(**{setting: f"{new},{old}"})
    body = json.dumps(PAYLOADS["typeform"](1)).encode()
    unsigned = httpx.post(f"{server.url}/webhooks/typeform", content=body)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"] == "missing Typeform-Signature header"


@pytest.mark.parametrize("listed", ["new,old", "old,new"])
def test_a_stale_delivery_is_refused_as_stale_whichever_secret_signed_it(
    web_server: Any, listed: str
) -> None:
    """The secret that signed it says why it is refused (its timestamp), not the other secret's
    mismatch: the operator looks at the sender's clock, not at the secrets."""
    setting, old, new = SECRETS["stripe"]
    server = web_server(**{setting: listed.replace("new", new).replace("old", old)})
    body = json.dumps(PAYLOADS["stripe"](1)).encode()
    stale = datetime.now(UTC) - timedelta(minutes=6)
    headers = {"stripe-signature": stripe_signature(body, secret=old, at=stale)}
    refused = httpx.post(f"{server.url}/webhooks/stripe", content=body, headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"].startswith("signature timestamp outside the 5-minute window")
    assert count(server, EventLog) == 0


@pytest.mark.parametrize("value", [",", " , ", " "])
def test_a_secret_setting_that_lists_no_secret_leaves_the_route_off(
    web_server: Any, value: str
) -> None:
    server = web_server(segment_webhook_secret=value)
    answer = _post(server, "segment", 1, "anything")
    assert answer.status_code == 404
    assert count(server, EventLog) == 0
