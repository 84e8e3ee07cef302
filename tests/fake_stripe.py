"""A fake Stripe API: a real HTTP server on 127.0.0.1 serving the objects a test gives it.

    with FakeStripe() as stripe:
        stripe.subscriptions["sub_1"] = {...}  # as GET /v1/subscriptions/sub_1 answers, expanded
        stripe.coupons["co_1"] = {...}
        ...  # code under test, with base_url=stripe.base_url and api_key=stripe.api_key
        assert stripe.requests == ["/v1/subscriptions/sub_1", "/v1/coupons/co_1"]

Requests must carry the key as Stripe's API takes it (HTTP basic auth, the key as user name);
others get 401. A coupon's `currency_options` and `applies_to` are left out unless the request
expands them, as Stripe does. `failing = 503` answers every request with that status instead.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeStripe:
    """Serves `subscriptions` and `coupons` by id; records each request's path and query."""

    api_key = "rk_test_" + "51FakeRestrictedKey0123456789"

    def __init__(self) -> None:
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.coupons: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.queries: list[dict[str, list[str]]] = []
        self.failing: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                address = urlsplit(self.path)
                fake.requests.append(address.path)
                fake.queries.append(parse_qs(address.query))
                expected = base64.b64encode(f"{fake.api_key}:".encode()).decode()
                if self.headers.get("authorization") != f"Basic {expected}":
                    self._answer(401, {"error": {"type": "invalid_request_error"}})
                elif fake.failing is not None:
                    self._answer(fake.failing, {"error": {"type": "api_error"}})
                else:
                    kind, _, object_id = address.path.removeprefix("/v1/").partition("/")
                    found = {"subscriptions": fake.subscriptions, "coupons": fake.coupons}.get(
                        kind, {}
                    )
                    if object_id in found:
                        self._answer(200, _as_stripe_gives(kind, found[object_id], address.query))
                    else:
                        self._answer(404, {"error": {"type": "invalid_request_error"}})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# Fields of an object Stripe's API leaves out unless the request expands them (Coupon object:
# "This field is not included by default. To include it in the response, expand …").
_INCLUDED_ONLY_EXPANDED = {"coupons": ("currency_options", "applies_to")}


def _as_stripe_gives(kind: str, found: dict[str, Any], query: str) -> dict[str, Any]:
    """`found` as Stripe answers a GET with this query: without the fields it did not expand."""
    expanded = set(parse_qs(query).get("expand[]", []))
    left_out = [f for f in _INCLUDED_ONLY_EXPANDED.get(kind, ()) if f not in expanded]
    return {key: value for key, value in found.items() if key not in left_out}
