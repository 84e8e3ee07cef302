"""A fake Slack Socket Mode endpoint: a real WebSocket server that `apps.connections.open` names.

    with FakeSlack() as slack, FakeSocketMode(slack) as socket_mode:
        ...  # start the app: SLACK_APP_TOKEN=socket_mode.app_token, SLACK_API_URL=slack.base_url
        socket_mode.wait_connected()
        reply = socket_mode.request("slash_commands", {...form fields as a dict...})

Slack sends each request as an envelope ({"envelope_id", "type", "payload",
"accepts_response_payload"}) and the app acknowledges with {"envelope_id", "payload"}.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from websockets.sync.server import Server, ServerConnection, serve

from tests.fake_slack import FakeSlack


class FakeSocketMode:
    """Serves one Socket Mode connection at a time and relays envelopes and their acks."""

    def __init__(self, slack: FakeSlack, app_token: str = "xapp-1-A0KPIBOT-1-test") -> None:  # noqa: S107
        self.slack = slack
        self.app_token = app_token
        self._server: Server | None = None
        self._connection: ServerConnection | None = None
        self._acks: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)

    def __enter__(self) -> FakeSocketMode:
        self._server = serve(self._handle, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        port = self._server.socket.getsockname()[1]
        self.slack.socket_mode_url = f"ws://127.0.0.1:{port}/link/?ticket=test"
        self.slack.app_token = self.app_token
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()

    def wait_connected(self, timeout: float = 10) -> None:
        """Block until the app has connected and been greeted."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._connection is not None, timeout):
                raise TimeoutError("the app did not connect over Socket Mode")

    def request(self, kind: str, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send an envelope of `kind` and return the app's acknowledgement of it."""
        envelope_id = f"env-{next(self._ids)}"
        assert self._connection is not None, "call wait_connected() first"
        self._connection.send(
            json.dumps(
                {
                    "envelope_id": envelope_id,
                    "type": kind,
                    "payload": payload,
                    "accepts_response_payload": kind == "slash_commands",
                }
            )
        )
        with self._cond:
            if not self._cond.wait_for(lambda: envelope_id in self._acks, timeout):
                raise TimeoutError(f"no acknowledgement of {envelope_id}")
            return self._acks.pop(envelope_id)

    def _handle(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        with self._cond:
            self._connection = connection
            self._cond.notify_all()
        for message in connection:
            ack = json.loads(message)
            if isinstance(ack, dict) and "envelope_id" in ack:
                with self._cond:
                    self._acks[ack["envelope_id"]] = ack
                    self._cond.notify_all()
