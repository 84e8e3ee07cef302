"""Socket Mode: with SLACK_APP_TOKEN the app connects out and answers on a WebSocket."""

from __future__ import annotations

from urllib.parse import parse_qsl

from bot.settings import Settings
from bot.slack_app import create_app, start_socket_mode
from tests.bot.slack import command_body
from tests.builders import ingest, paying_accounts
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode


def test_kpi_is_answered_over_socket_mode(database_url, session_factory):
    ingest(session_factory, paying_accounts(3, amount="100.00", since="2026-01-05"))
    with FakeSlack() as slack, FakeSocketMode(slack) as socket_mode:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=database_url,
            slack_bot_token=slack.token,
            slack_app_token=socket_mode.app_token,
            slack_api_url=slack.base_url,
        )
        assert settings.slack_mode == "socket"
        handler = start_socket_mode(create_app(settings, session_factory), settings)
        try:
            socket_mode.wait_connected()
            command = dict(parse_qsl(command_body("mrr 2026-10").decode()))
            ack = socket_mode.request("slash_commands", command)
        finally:
            handler.close()
    answer = ack["payload"]
    assert answer["response_type"] == "ephemeral"
    assert answer["blocks"][0]["text"]["text"] == "MRR — October 2026"
    assert "*$300.00*" in answer["blocks"][1]["text"]["text"]
    assert [c.method for c in slack.calls if c.method == "apps.connections.open"]
