"""Settings: `.env.example` lists every one, and bad values are refused with a clear reason."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings, parse_user_list

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_lists_every_setting_with_a_comment():
    text = EXAMPLE.read_text(encoding="utf-8")
    listed = re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)
    names = {
        str(field.validation_alias.choices[0])  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
    }
    assert names == set(listed)
    for name in listed:  # each setting has a comment line right above it or above its group
        before = text[: text.index(f"\n{name}=")].rstrip().splitlines()
        assert before and (before[-1].startswith("#") or re.match(r"[A-Z_]+=", before[-1])), name


def test_slack_mode_follows_the_credentials():
    base = {"_env_file": None}
    assert Settings(**base).slack_mode == "offline"  # type: ignore[arg-type]
    http = Settings(**base, slack_bot_token="xoxb-1", slack_signing_secret="s")  # type: ignore[arg-type]
    assert http.slack_mode == "http"
    socket = Settings(**base, slack_bot_token="xoxb-1", slack_app_token="xapp-1")  # type: ignore[arg-type]
    assert socket.slack_mode == "socket"
    assert "xoxb-1" not in repr(http)  # secrets stay out of logs and tracebacks


@pytest.mark.parametrize(
    ("credentials", "missing"),
    [
        ({"slack_bot_token": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
        ({"slack_signing_secret": "s"}, "SLACK_BOT_TOKEN"),
        ({"slack_app_token": "xapp-1"}, "SLACK_BOT_TOKEN"),
    ],
)
def test_a_partial_slack_configuration_is_refused(credentials, missing):
    with pytest.raises(ValidationError, match=missing):
        Settings(_env_file=None, **credentials)  # type: ignore[arg-type]


def test_user_lists_take_ids_and_emails():
    assert parse_user_list(" u0abc12, Ana@Example.com ;W0XYZ9") == {
        "U0ABC12",
        "ana@example.com",
        "W0XYZ9",
    }
    with pytest.raises(ValueError, match="neither a Slack user id"):
        parse_user_list("@ana")


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("slack_api_url", "slack.com/api", "http(s) URL"),
        ("allowed_users", "#general", "neither a Slack user id"),
        ("admins", "bob", "neither a Slack user id"),
    ],
)
def test_bad_values_are_refused_with_a_reason(setting, value, reason):
    with pytest.raises(ValidationError, match=re.escape(reason)):
        Settings(_env_file=None, **{setting: value})  # type: ignore[arg-type]


def test_the_api_url_gets_its_trailing_slash():
    settings = Settings(_env_file=None, slack_api_url="http://127.0.0.1:9/api")  # type: ignore[call-arg]
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_",  # nothing after the prefix: every delivery would fail
        "whsec_abcde",  # 3 bytes
        "whsec_" + "a-b_" * 10,  # base64url: Python would drop - and _, Node would not
        "whsec_" + base64.b64encode(b"k" * 65).decode(),  # past the specification's 64 bytes
    ],
)
def test_a_webhook_secret_senders_cannot_sign_with_is_refused_at_start(secret: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, webhook_secret=secret)  # type: ignore[call-arg]
    assert "whsec_ followed by the base64 of 24 to 64 random bytes" in str(refused.value)
    assert "input_value" not in str(refused.value)  # the secret is not repeated


@pytest.mark.parametrize("prefix", ["whsec_", ""])
def test_a_standard_webhooks_secret_is_accepted_with_or_without_its_prefix(prefix: str) -> None:
    secret = prefix + base64.b64encode(b"k" * 24).decode()
    settings = Settings(_env_file=None, webhook_secret=secret)  # type: ignore[call-arg]
    assert settings.source_secrets("kpibot") == (secret,)


def test_a_secret_setting_lists_its_secrets_separated_by_commas() -> None:
    """While a secret is rotated, its setting holds the new one and the old one."""
    new, old = (("whsec_" + base64.b64encode(k * 24).decode()) for k in (b"n", b"o"))
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, webhook_secret=f" {new} ,{old},", segment_webhook_secret="a, b"
    )
    assert settings.source_secrets("kpibot") == (new, old)
    assert settings.source_secrets("segment") == ("a", "b")
    assert settings.source_secrets("typeform") == ()  # unset: the route answers 404


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_a_secret_setting_listing_no_secret_is_unset(value: str) -> None:
    """Not a route that seems on and refuses everything: it is off, and says so (404)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, webhook_secret=value, typeform_webhook_secret=value
    )
    assert settings.webhook_secret is None and settings.typeform_webhook_secret is None
    assert settings.source_secrets("kpibot") == settings.source_secrets("typeform") == ()


def test_each_listed_standard_webhooks_secret_must_be_one() -> None:
    good = "whsec_" + base64.b64encode(b"k" * 24).decode()
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, webhook_secret=f"{good},whsec_short")  # type: ignore[call-arg]
    assert "separated by commas" in str(refused.value)
    assert good not in str(refused.value)  # no secret is repeated
