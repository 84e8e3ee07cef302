"""`/kpi` through the running web app: signed form bodies as Slack sends them, a fake Slack Web API.

The server is the real ASGI app under uvicorn; `slack_sdk` inside it talks to `FakeSlack` over HTTP.
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bot.blocks import MAX_BLOCKS
from storage.db import session_scope
from tests.bot.block_kit import check_message
from tests.bot.slack import USER_ID, command_body, send_command, send_event
from tests.builders import (
    cancel,
    ingest,
    make_account,
    make_response,
    make_subscription,
    paying_accounts,
)
from tests.fake_slack import FakeSlack
from tests.signing import TEST_SLACK_SIGNING_SECRET, slack_headers


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        fake.add_user("ana@example.com", USER_ID, "ana")
        yield fake


@pytest.fixture
def start_bot(web_server, slack):
    def start(slack_options=None, **overrides):
        return web_server(
            slack_options,
            slack_bot_token=slack.token,
            slack_signing_secret=TEST_SLACK_SIGNING_SECRET,
            slack_api_url=slack.base_url,
            **overrides,
        )

    return start


@pytest.fixture
def bot(start_bot):
    """A bot over four customers paying 100/month since January; acc-1 churned in August."""
    server = start_bot()
    ingest(
        server.factory,
        [
            *paying_accounts(4, amount="100.00", since="2026-01-05"),
            cancel("acc-1", "2026-08-10", amount="100.00"),
        ],
    )
    return server


def answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"], body  # every message carries a text fallback
    return body


def shown(message: dict[str, Any]) -> str:
    """Every text a person sees in the message's blocks, joined."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                texts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message["blocks"])
    return "\n".join(texts)


def test_a_signed_command_is_answered_with_the_figures_in_blocks(bot):
    message = answer(send_command(bot.url, "churn 2026-Q3"))
    assert message["response_type"] == "ephemeral"
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "Logo churn — Q3 2026"
    seen = shown(message)
    assert "*25%*" in seen  # 1 of the 4 customers at the start of Q3
    assert "1 of 4 customers" in seen
    assert "vs Q2 2026: 0%" in seen and ":red_circle: ↑" in seen  # churn up is worse
    assert "1 Jul – 30 Sep 2026 (UTC)" in seen
    assert "Definition" in seen and "Data as of" in seen
    assert "25%" in message["text"]


def test_share_posts_in_the_channel_and_says_who_shared(bot):
    message = answer(send_command(bot.url, "mrr 2026-10 share"))
    assert message["response_type"] == "in_channel"
    assert "*$300.00*" in shown(message)
    assert f"<@{USER_ID}>" in shown(message)


def test_a_breakdown_answers_each_part_from_its_own_accounts(start_bot):
    server = start_bot()
    events = [
        *paying_accounts(2, amount="100.00", since="2026-01-05", prefix="pro", plan="pro"),
        *paying_accounts(3, amount="50.00", since="2026-01-05", prefix="basic", plan="basic"),
        cancel("basic-1", "2026-08-10", amount="50.00"),
    ]
    ingest(server.factory, events)
    message = answer(send_command(server.url, "churn 2026-Q3 by plan"))
    fields = [f["text"] for block in message["blocks"] for f in block.get("fields", [])]
    assert any(f.startswith("*basic*\n33.33%") for f in fields), fields
    assert any(f.startswith("*pro*\n0%") for f in fields), fields


def test_a_100_part_breakdown_stays_within_block_kit_limits(start_bot):
    server = start_bot()
    events = []
    for n in range(100):
        plan = f"plan-{n:03d}-" + "x" * 50 + "<&>"  # 62 characters: plans hold 64
        events += paying_accounts(
            1, amount=f"{n + 1}.00", since="2026-01-05", prefix=f"a{n}", plan=plan
        )
    assert ingest(server.factory, events).rejected == 0
    message = answer(send_command(server.url, "mrr 2026-10 by plan"))
    check_message({k: v for k, v in message.items() if k != "response_type"})
    seen = shown(message)
    assert "<&>" not in seen and "&lt;&amp;&gt;" in seen  # plan names are escaped
    assert "… and 80 more" in seen  # the rest is named, with the command that shows it all
    assert len(message["text"]) <= 3000


@pytest.mark.parametrize(
    ("secret", "age", "signed"),
    [
        ("another-secret-0123456789abcdef", timedelta(0), True),
        (TEST_SLACK_SIGNING_SECRET, timedelta(minutes=6), True),  # a replayed old request
        (TEST_SLACK_SIGNING_SECRET, -timedelta(minutes=6), True),  # from the future
        (TEST_SLACK_SIGNING_SECRET, timedelta(0), False),
    ],
)
def test_requests_not_signed_by_slack_are_refused(bot, slack, secret, age, signed):
    body = command_body("churn 2026-Q3")
    headers = slack_headers(body, secret=secret, at=datetime.now(UTC) - age)
    if not signed:
        headers = {"content-type": headers["content-type"]}
    response = httpx.post(bot.url + "/slack/events", content=body, headers=headers, timeout=10)
    assert response.status_code == 401
    assert "25%" not in response.text
    assert slack.calls_to("response_url") == []


def test_a_tampered_body_is_refused(bot):
    body = command_body("churn 2026-Q3")
    headers = slack_headers(body)
    tampered = body.replace(b"churn", b"mrr")
    response = httpx.post(bot.url + "/slack/events", content=tampered, headers=headers, timeout=10)
    assert response.status_code == 401


def test_an_unknown_metric_suggests_the_closest(bot):
    message = answer(send_command(bot.url, "chrun last-quarter"))
    assert message["response_type"] == "ephemeral"
    seen = shown(message)
    assert "`churn`" in seen
    assert "/kpi churn last-quarter" in seen  # an example built from what was typed


def test_a_bad_period_explains_the_accepted_forms(bot):
    message = answer(send_command(bot.url, "churn 2026-Q7"))
    seen = shown(message)
    assert "2026-Q7" in seen
    assert "Example" in seen and "`/kpi churn" in seen


def test_help_list_and_explain(bot):
    assert "/kpi churn last-quarter" in shown(answer(send_command(bot.url, "help")))
    assert "`nps`" in shown(answer(send_command(bot.url, "list")))
    explained = shown(answer(send_command(bot.url, "explain arpa")))
    assert "Average revenue per account" in explained or "ARPA" in explained


def test_french_answers(start_bot):
    server = start_bot(locale="fr")
    ingest(server.factory, paying_accounts(2, amount="1234.50", since="2026-01-05"))
    message = answer(send_command(server.url, "mrr 2026-10"))
    seen = shown(message)
    assert "2\u202f469,00\xa0$US" in seen or "2\u202f469,00\xa0$" in seen, seen
    assert "Données à jour au" in seen


def test_a_user_not_allowed_is_told_why(start_bot, slack):
    server = start_bot(allowed_users="U0BOSS01", admins="U0BOSS01")
    message = answer(send_command(server.url, "mrr 2026-10"))
    assert message["response_type"] == "ephemeral"
    assert "KPIBOT_ALLOWED_USERS" in message["text"]
    assert "<@U0BOSS01>" in shown(message)
    assert "$" not in shown(message)


def test_a_user_allowed_by_email_is_answered(start_bot, slack):
    server = start_bot(allowed_users="ana@example.com")
    message = answer(send_command(server.url, "mrr 2026-10"))
    assert "KPIBOT_ALLOWED_USERS" not in message["text"]
    assert message["blocks"][0]["type"] == "header"
    assert [c.args["user"] for c in slack.calls_to("users.info")] == [USER_ID]
    answer(send_command(server.url, "mrr 2026-09"))
    assert len(slack.calls_to("users.info")) == 1  # the email is cached


def test_digest_management_is_for_admins(start_bot):
    server = start_bot(admins="U0BOSS01")
    refused = answer(send_command(server.url, "digest list"))
    assert "KPIBOT_ADMINS" in refused["text"]
    admin = answer(send_command(server.url, "digest list", user_id="U0BOSS01"))
    assert "KPIBOT_ADMINS" not in admin["text"]


def test_an_unexpected_error_shows_a_reference_that_is_in_the_log(bot, caplog):
    with session_scope(bot.factory) as session:  # a store gone wrong: a table is missing
        session.execute(text("ALTER TABLE mrr_movement RENAME TO mrr_movement_away"))
    try:
        with caplog.at_level(logging.ERROR, logger="kpibot.slack"):
            message = answer(send_command(bot.url, "churn 2026-Q3"))
    finally:
        with session_scope(bot.factory) as session:
            session.execute(text("ALTER TABLE mrr_movement_away RENAME TO mrr_movement"))
    reference = re.search(r"reference `([0-9a-f]{8})`", shown(message))
    assert reference, shown(message)
    assert message["response_type"] == "ephemeral"
    assert "Traceback" not in json.dumps(message)
    assert any(reference.group(1) in r.getMessage() for r in caplog.records)


def test_a_slow_answer_is_acknowledged_first_then_sent_to_the_response_url(start_bot, slack):
    server = start_bot({"answer_budget": 0})
    ingest(server.factory, paying_accounts(3, amount="100.00", since="2026-01-05"))
    started = time.monotonic()
    ack = answer(send_command(server.url, "mrr 2026-10", response_url=slack.response_url()))
    assert time.monotonic() - started < 3
    assert "Working on it" in ack["text"]
    [posted] = slack.wait_for("response_url")
    assert posted.args["response_type"] == "ephemeral"
    assert "*$300.00*" in shown(posted.args)


def test_slack_url_verification_is_answered(bot):
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV"}).encode()
    headers = {**slack_headers(body), "content-type": "application/json"}
    response = httpx.post(bot.url + "/slack/events", content=body, headers=headers, timeout=10)
    assert response.status_code == 200
    assert "3eZbrw1aBm2rZgRNFdxV" in response.text


def test_without_slack_credentials_the_route_says_what_to_set(web_server):
    server = web_server()
    body = command_body("mrr")
    response = httpx.post(server.url + "/slack/events", content=body, headers=slack_headers(body))
    assert response.status_code == 404
    assert "SLACK_BOT_TOKEN" in response.json()["error"]


_words = st.sampled_from(
    ["churn", "mrr", "nps", "by", "plan", "where", "segment=smb", "vs", "last-year", "share",
     "last-quarter", "2026-Q3", "2026-W53", "2026-13", "explain", "list", "help", "account",
     "trimestre-dernier", "par", "où", "=", "..", "2026-01-01..2025-01-01", "\"", "«", "`",
     "<@U1>", "&amp;", "last-0-days", "last-99999999999-days", "digest"]
)  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(_words, st.text(max_size=12)), max_size=8).map(" ".join))
def test_any_text_gets_a_helpful_reply_in_time(bot, typed):
    started = time.monotonic()
    response = send_command(bot.url, typed)
    assert time.monotonic() - started < 3
    message = answer(response)
    assert message["response_type"] in ("ephemeral", "in_channel")
    assert message["blocks"]
    assert "reference `" not in shown(message)  # no input is an unexpected error
    assert len(message["blocks"]) <= MAX_BLOCKS


@pytest.fixture
def book_bot(start_bot):
    """Ana owns Acme Corp (1,200/year) and Acme Labs; Bob owns Globex."""
    server = start_bot()
    events = [
        make_account("acme", name="Acme Corp", owner_email="ana@example.com", plan="scale"),
        make_subscription(
            "2026-01-05",
            account_id="acme",
            subscription_id="acme-s",
            amount="1200.00",
            interval="year",
        ),
        make_account("acme-labs", name="Acme Labs", owner_email="ana@example.com"),
        make_subscription(
            "2026-01-05", account_id="acme-labs", subscription_id="al-s", amount="30.00"
        ),
        make_account("globex", name="Globex", owner_email="bob@example.com"),
        make_subscription("2026-01-05", account_id="globex", subscription_id="g-s", amount="70.00"),
        make_response("2026-11-20", account_id="acme", score=3, comment="Support <never> answers"),
    ]
    assert ingest(server.factory, events).rejected == 0
    return server


def test_an_account_card(book_bot):
    message = answer(send_command(book_bot.url, "account acme corp"))
    assert message["blocks"][0]["text"]["text"].startswith("Acme Corp")
    seen = shown(message)
    assert "$100.00" in seen  # 1,200 a year is 100 a month
    assert "scale" in seen and "ana@example.com" in seen
    assert "Support &lt;never&gt; answers" in seen  # the latest NPS comment, escaped
    assert "Also matching" not in seen


def test_an_account_name_matching_several_names_the_others(book_bot):
    seen = shown(answer(send_command(book_bot.url, "account acm")))
    assert "Also matching" in seen and "Acme Labs" in seen


def test_an_unknown_account_suggests_the_closest(book_bot):
    seen = shown(answer(send_command(book_bot.url, "account Globx")))
    assert "Globex" in seen
    assert "reference `" not in seen


def test_the_home_tab_shows_a_csm_their_own_book(book_bot, slack):
    response = send_event(book_bot.url, {"type": "app_home_opened", "user": USER_ID, "tab": "home"})
    assert response.status_code == 200
    [call] = slack.wait_for("views.publish")
    assert call.args["user_id"] == USER_ID
    view = call.args["view"]
    assert view["type"] == "home"
    seen = shown(view)
    assert "Acme Corp" in seen and "Acme Labs" in seen
    assert "Globex" not in seen  # Bob's
    assert "$130.00" in seen  # the book's MRR: 100 + 30


def test_the_home_tab_shows_the_team_kpis_to_someone_without_accounts(book_bot, slack):
    slack.add_user("carol@example.com", "U0CAROL1", "carol")
    send_event(book_bot.url, {"type": "app_home_opened", "user": "U0CAROL1", "tab": "home"})
    [call] = slack.wait_for("views.publish")
    seen = shown(call.args["view"])
    assert "MRR" in seen and "$200.00" in seen  # 100 + 30 + 70, the whole team's
    assert "Acme Corp" not in seen


def test_the_messages_tab_publishes_nothing(book_bot, slack):
    send_event(book_bot.url, {"type": "app_home_opened", "user": USER_ID, "tab": "messages"})
    send_event(book_bot.url, {"type": "app_home_opened", "user": USER_ID, "tab": "home"})
    slack.wait_for("views.publish")
    time.sleep(0.2)  # the messages-tab event was handled first: nothing more may arrive
    assert len(slack.calls_to("views.publish")) == 1


def test_comments_and_contacts_are_for_the_owner_and_admins(book_bot, start_bot, slack):
    ingest(
        book_bot.factory,
        [
            make_account(
                "globex",
                name="Globex",
                owner_email="bob@example.com",
                contacts=[{"email": "ceo@globex.test", "name": "Jo", "phone": "+33 6 12 34 56 78"}],
            )
        ],
    )
    slack.add_user("bob@example.com", "U0BOB001", "bob")
    strangers = shown(answer(send_command(book_bot.url, "account acme corp", user_id="U0BOB001")))
    assert "$100.00" in strangers  # the figures are for everyone allowed to ask
    assert "Support &lt;never&gt; answers" not in strangers
    assert "owner" in strangers and ":lock:" in strangers
    owner = shown(answer(send_command(book_bot.url, "account acme corp")))  # Ana owns Acme
    assert "Support &lt;never&gt; answers" in owner
    bobs = shown(answer(send_command(book_bot.url, "account globex", user_id="U0BOB001")))
    assert "+33 6 12 34 56 78" in bobs
    assert "+33 6 12 34 56 78" not in shown(answer(send_command(book_bot.url, "account globex")))


def test_the_home_tab_respects_the_allowed_users(start_bot, slack):
    server = start_bot(allowed_users="U0BOSS01")
    ingest(server.factory, paying_accounts(2, amount="100.00", since="2026-01-05"))
    send_event(server.url, {"type": "app_home_opened", "user": USER_ID, "tab": "home"})
    [call] = slack.wait_for("views.publish")
    seen = shown(call.args["view"])
    assert "KPIBOT_ALLOWED_USERS" in seen
    assert "$" not in seen


def test_an_error_after_a_deferred_ack_still_reaches_the_user(start_bot, slack):
    server = start_bot({"answer_budget": 0})
    for n in range(5):
        response = send_command(server.url, "chrun", response_url=slack.response_url(str(n)))
        assert response.status_code == 200
        assert "Working on it" in response.json()["text"]
    posted = slack.wait_for("response_url", count=5)
    assert all("`churn`" in shown(call.args) for call in posted)


def test_slow_answers_never_block_other_commands(start_bot, slack):
    server = start_bot({"answer_budget": 0})
    ingest(server.factory, paying_accounts(3, amount="100.00", since="2026-01-05"))
    urls = [slack.response_url(str(n)) for n in range(40)]
    with ThreadPoolExecutor(8) as senders:
        replies = list(
            senders.map(lambda url: send_command(server.url, "mrr 2026-10", response_url=url), urls)
        )
    assert [r.status_code for r in replies] == [200] * 40
    posted = slack.wait_for("response_url", count=40, timeout=30)
    assert sorted(call.args["path"] for call in posted) == sorted(
        url.removeprefix(slack.base_url) for url in urls
    )
    assert all("*$300.00*" in shown(call.args) for call in posted)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"{", "application/json"),
        (b"payload=%7B", "application/x-www-form-urlencoded"),
    ],
)
def test_unsigned_garbage_is_refused_without_parsing(bot, body, content_type):
    response = httpx.post(
        bot.url + "/slack/events", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 401
    signed = {**slack_headers(body), "content-type": content_type}
    response = httpx.post(bot.url + "/slack/events", content=body, headers=signed)
    assert response.status_code in (400, 401, 404)  # signed yet unreadable: never a 500


def test_a_slack_request_cut_by_the_servers_stop_is_a_503_without_a_traceback(
    start_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_bot(shutdown_grace=0.3)
    body = command_body("mrr")
    answer = server.stopped_while_sending("/slack/events", slack_headers(body), body)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable"), answer
    assert b"the server is stopping" in answer
    assert "slack: cut by the server's stop; answered 503" in caplog.text
    assert not any(record.exc_info for record in caplog.records)
