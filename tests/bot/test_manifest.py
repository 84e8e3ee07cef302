"""Tests for the Slack app manifest (slack-manifest.yml): one paste creates the app of SPEC.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "slack-manifest.yml"
SCOPES = {"commands", "chat:write", "im:write", "users:read", "users:read.email", "files:write"}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_targets_manifest_schema_2(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"]["major_version"] == 2


def test_display_information_fits_slack_limits(manifest: dict[str, Any]) -> None:
    display = manifest["display_information"]
    assert display["name"] == "kpibot"
    assert 0 < len(display["description"]) <= 140  # Slack's limits: name 35, description 140


def test_bot_user_and_app_home(manifest: dict[str, Any]) -> None:
    features = manifest["features"]
    assert features["bot_user"] == {"display_name": "kpibot", "always_online": True}
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True


def test_declares_the_kpi_command(manifest: dict[str, Any]) -> None:
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/kpi"
    assert command["usage_hint"] == "churn last-quarter by plan"
    assert command["should_escape"] is False  # the parser reads the text as typed
    assert command["description"]


def test_declares_exactly_the_bot_scopes_of_the_spec(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}  # no user scopes
    assert sorted(scopes["bot"]) == sorted(SCOPES)


def test_interactivity_and_home_events_are_on(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_every_request_url_is_the_slack_events_route(manifest: dict[str, Any]) -> None:
    urls = [
        manifest["features"]["slash_commands"][0]["url"],
        manifest["settings"]["interactivity"]["request_url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
    ]
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "YOUR-HOST", "/slack/events")


# The bot scope each Web API method needs (docs.slack.dev/reference/methods).
METHOD_SCOPES = {
    "chat_postMessage": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "chat_update": {"chat:write"},
    "conversations_open": {"im:write"},
    "users_info": {"users:read"},
    "users_lookupByEmail": {"users:read", "users:read.email"},
    "views_publish": set(),
    "views_open": set(),
    "files_upload_v2": {"files:write"},
    "auth_test": set(),
}


def test_declares_the_scopes_the_code_uses(manifest: dict[str, Any]) -> None:
    declared = set(manifest["oauth_config"]["scopes"]["bot"])
    code = "\n".join(p.read_text() for p in (MANIFEST.parent / "bot").rglob("*.py"))
    used = {m for m in re.findall(r"\.(\w+)\(", code) if m in METHOD_SCOPES}
    assert {"views_publish", "users_info"} <= used  # the scan finds the bot's calls
    unknown = set(re.findall(r"client\.(\w+)\(", code)) - set(METHOD_SCOPES)
    assert not unknown, f"add the scopes of {unknown} to METHOD_SCOPES and the manifest"
    for method in used:
        assert METHOD_SCOPES[method] <= declared, method


def test_the_command_the_code_listens_to_is_declared(manifest: dict[str, Any]) -> None:
    code = "\n".join(p.read_text() for p in (MANIFEST.parent / "bot").rglob("*.py"))
    commands = set(re.findall(r"@app\.command\(\"(/\w+)\"\)", code))
    events = set(re.findall(r"@app\.event\(\"(\w+)\"\)", code))
    assert commands == {c["command"] for c in manifest["features"]["slash_commands"]}
    assert events == set(manifest["settings"]["event_subscriptions"]["bot_events"])
