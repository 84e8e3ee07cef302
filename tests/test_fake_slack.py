"""The fake Slack Web API, driven by the real `slack_sdk.WebClient` over HTTP."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.fake_slack import FakeSlack

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Churn* 2.1 %"}}]
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A started fake Slack, stopped after the test."""
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    """A real WebClient pointed at the fake."""
    return WebClient(token=slack.token, base_url=slack.base_url, timeout=5)


def test_post_message_form_body_is_recorded_with_decoded_blocks(
    slack: FakeSlack, client: WebClient
) -> None:
    form = {"channel": "C0KPI", "text": "Churn 2.1 %", "blocks": json.dumps(BLOCKS)}

    response = client.api_call("chat.postMessage", data=form)

    assert response["ok"] is True
    assert response["channel"] == "C0KPI"
    assert response["message"]["blocks"] == BLOCKS
    [call] = slack.calls_to("chat.postMessage")
    assert call.args["blocks"] == BLOCKS
    assert call.args["text"] == "Churn 2.1 %"
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.headers["Authorization"] == "Bearer xoxb-test-token"
    assert call.at == pytest.approx(time.time(), abs=5)


def test_post_message_json_body_is_recorded(slack: FakeSlack, client: WebClient) -> None:
    body = {"channel": "C0KPI", "text": "hi", "blocks": BLOCKS}

    raw = client.api_call("chat.postMessage", json=body)
    typed = client.chat_postMessage(channel="C0KPI", text="hi", blocks=BLOCKS)

    assert raw["message"]["text"] == typed["message"]["text"] == "hi"
    for call in slack.calls_to("chat.postMessage"):
        assert call.args == body
        assert call.headers["Content-Type"].startswith("application/json")


def test_message_ts_are_unique_and_increasing(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(3)]

    assert stamps[0] == "1700000000.000100"
    assert stamps == sorted(stamps, key=float)
    assert len(set(stamps)) == 3


def test_chat_update_edits_a_posted_message(client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C1", text="draft")

    updated = client.chat_update(channel="C1", ts=posted["ts"], text="final")

    assert (updated["ts"], updated["text"]) == (posted["ts"], "final")
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C1", ts="1.000001", text="x")
    assert raised.value.response["error"] == "message_not_found"


def test_wrong_token_is_invalid_auth(slack: FakeSlack) -> None:
    intruder = WebClient(token="xoxb-wrong", base_url=slack.base_url)

    with pytest.raises(SlackApiError) as raised:
        intruder.auth_test()

    assert raised.value.response["error"] == "invalid_auth"
    assert len(slack.calls_to("auth.test")) == 1


def test_auth_test_names_the_bot(client: WebClient) -> None:
    response = client.auth_test()

    assert (response["user_id"], response["team_id"], response["bot_id"]) == (
        "UBOT",
        "T0001",
        "B0001",
    )


def test_lookup_by_email_finds_registered_users_only(slack: FakeSlack, client: WebClient) -> None:
    slack.add_user("ana@example.com", "U0ANA", "ana", tz="America/New_York")

    user = client.users_lookupByEmail(email="Ana@Example.com")["user"]

    assert (user["id"], user["name"], user["tz"]) == ("U0ANA", "ana", "America/New_York")
    assert user["profile"]["email"] == "ana@example.com"
    assert client.users_info(user="U0ANA")["user"]["real_name"] == "ana"
    with pytest.raises(SlackApiError) as raised:
        client.users_lookupByEmail(email="nobody@example.com")
    assert raised.value.response["error"] == "users_not_found"


def test_direct_messages_ephemerals_and_views(client: WebClient) -> None:
    dm = client.conversations_open(users="U0ANA")["channel"]["id"]
    posted = client.chat_postMessage(channel="U0ANA", text="call them")
    ephemeral = client.chat_postEphemeral(channel="C1", user="U0ANA", text="only you")
    home = client.views_publish(user_id="U0ANA", view={"type": "home", "blocks": BLOCKS})
    modal = client.views_open(trigger_id="t1", view={"type": "modal", "blocks": []})

    assert dm.startswith("D")
    assert posted["channel"] == dm
    assert ephemeral["message_ts"]
    assert home["view"]["type"] == "home"
    assert home["view"]["blocks"] == BLOCKS
    assert home["view"]["id"] != modal["view"]["id"]


def test_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.api_call("kpi.nonsense")

    assert raised.value.response["error"] == "unknown_method"


def test_rate_limit_gives_429_with_retry_after(slack: FakeSlack, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hi")

    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    assert raised.value.response.headers["Retry-After"] == "1"
    assert client.chat_postMessage(channel="C1", text="hi")["ok"] is True


def test_rate_limit_retry_handler_retries_and_succeeds(slack: FakeSlack) -> None:
    retrying = WebClient(
        token=slack.token,
        base_url=slack.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage")

    response = retrying.chat_postMessage(channel="C1", text="hi")

    assert response["ok"] is True
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]


def test_server_error_and_queued_failures_in_order(slack: FakeSlack, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", status=500)
    slack.fail_next("chat.postMessage", error="channel_not_found")

    with pytest.raises(SlackApiError) as first:
        client.chat_postMessage(channel="C1", text="hi")
    with pytest.raises(SlackApiError) as second:
        client.chat_postMessage(channel="C1", text="hi")

    assert first.value.response.status_code == 500
    assert (second.value.response.status_code, second.value.response["error"]) == (
        200,
        "channel_not_found",
    )
    assert client.chat_postMessage(channel="C1", text="hi")["ok"] is True


def test_missing_channels_are_not_found(slack: FakeSlack, client: WebClient) -> None:
    slack.missing_channels.add("C0GONE")
    slack.add_channel("general")

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C0GONE", text="hi")

    assert raised.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="general", text="hi")["channel"] == "general"


def test_files_upload_v2_end_to_end(slack: FakeSlack, client: WebClient) -> None:
    response = client.files_upload_v2(
        channel="C0KPI", file=PNG, filename="mrr.png", title="MRR", initial_comment="Weekly"
    )

    assert response["file"]["title"] == "MRR"
    [upload] = slack.uploads.values()
    assert (upload.filename, upload.size, upload.data) == ("mrr.png", len(PNG), PNG)
    assert (upload.file_id, upload.channel) == (response["file"]["id"], "C0KPI")
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert complete.args["files"] == [{"id": upload.file_id, "title": "MRR"}]
    assert complete.args["initial_comment"] == "Weekly"


def test_upload_url_rejects_unknown_file_ids(slack: FakeSlack) -> None:
    url = f"{slack.base_url}upload/F404"
    request = urllib.request.Request(url, data=b"x", method="POST")  # noqa: S310 (local fake)

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 (local fake)

    assert raised.value.code == 404
    raised.value.close()


def test_wait_for_sees_calls_from_another_thread(slack: FakeSlack, client: WebClient) -> None:
    def deliver() -> None:
        time.sleep(0.1)
        for _ in range(2):
            client.chat_postMessage(channel="D0ANA", text="detractor")

    sender = threading.Thread(target=deliver)
    sender.start()

    calls = slack.wait_for("chat.postMessage", count=2, timeout=5)

    sender.join()
    assert [c.args["text"] for c in calls] == ["detractor", "detractor"]
    with pytest.raises(TimeoutError, match=r"chat\.update"):
        slack.wait_for("chat.update", timeout=0.05)


def test_stop_frees_the_port() -> None:
    fake = FakeSlack().start()
    port = fake.port

    fake.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
