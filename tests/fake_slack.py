"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that `slack_sdk` talks to via `base_url`.

    with FakeSlack() as slack:
        slack.add_user("ana@example.com", "U0ANA", "ana", tz="Europe/Paris")
        client = WebClient(token=slack.token, base_url=slack.base_url)
        ...  # code under test
        [call] = slack.wait_for("chat.postMessage")
        assert call.args["blocks"][0]["type"] == "section"

As a fixture (in a conftest): `with FakeSlack() as fake: yield fake`.
Failures are injected per method and consumed in order: `fail_next("chat.postMessage")` (429 with
Retry-After), `fail_next(m, status=500)`, `fail_next(m, error="channel_not_found")`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

JSON_ARGS = ("blocks", "attachments", "view", "files", "metadata")
MESSAGE_FIELDS = ("text", "blocks", "attachments", "thread_ts", "metadata")
SCOPES = "commands,chat:write,im:write,users:read,users:read.email,files:write"


@dataclass(frozen=True)
class Call:
    """One Web API request: method, decoded args, request headers, arrival time, and the reply."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


@dataclass
class Upload:
    """A file announced by files.getUploadURLExternal, then posted to its upload URL."""

    file_id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    channel: str | None = None

    @property
    def size(self) -> int | None:
        """Bytes actually received at the upload URL, or None before the upload."""
        return None if self.data is None else len(self.data)


class SlackError(Exception):
    """Raised by a method handler to answer HTTP 200 with {"ok": false, "error": <its message>}."""


class FakeSlack:
    """A fake Slack Web API server that records calls and answers like Slack does."""

    def __init__(self, token: str = "xoxb-test-token") -> None:  # noqa: S107
        self.token = token
        self.app_token: str | None = None  # set by FakeSocketMode
        self.socket_mode_url: str | None = None
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: set[str] = set()
        self.missing_channels: set[str] = set()
        self.uploads: dict[str, Upload] = {}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self._failures: defaultdict[str, deque[_Reply]] = defaultdict(deque)
        self._cond = threading.Condition()
        self._ts = itertools.count(1_700_000_000_000_100, 100)
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._methods = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while started)."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The Web API base URL to give `WebClient(base_url=…)`, with its trailing slash."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> FakeSlack:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket, freeing the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_user(
        self, email: str, user_id: str, name: str, tz: str = "Europe/Paris", real_name: str = ""
    ) -> dict[str, Any]:
        """Register a workspace member found by users.lookupByEmail and users.info; returns it."""
        zone = ZoneInfo(tz)
        offset = zone.utcoffset(datetime.now(zone))
        user = {
            "id": user_id,
            "team_id": "T0001",
            "name": name,
            "real_name": real_name or name,
            "deleted": False,
            "is_bot": False,
            "tz": tz,
            "tz_label": datetime.now(zone).tzname(),
            "tz_offset": int(offset.total_seconds()) if offset else 0,
            "profile": {"email": email, "real_name": real_name or name, "display_name": name},
        }
        with self._cond:
            self.users[user_id] = user
        return user

    def add_channel(self, channel_id: str) -> None:
        """Register a channel id (or name) that accepts messages whatever its prefix."""
        with self._cond:
            self.channels.add(channel_id)
            self.missing_channels.discard(channel_id)

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        retry_after: int = 1,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls to `method` fail: 429 by default, `status`, or `error`."""
        if status is None:
            status = 200 if error else 429
        if status == 200 and not error:
            raise ValueError("a failure with status 200 needs an error")
        default = "ratelimited" if status == 429 else "internal_error"
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        failure = _Reply.error(error or default, status, headers)
        with self._cond:
            self._failures[method].extend([failure] * times)

    def clear(self) -> None:
        """Forget recorded calls and pending failures (users and channels stay)."""
        with self._cond:
            self.calls.clear()
            self._failures.clear()

    def calls_to(self, method: str) -> list[Call]:
        """The calls received so far for one method, oldest first."""
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5) -> list[Call]:
        """Block until `count` calls to `method` arrived; returns them, or raises TimeoutError."""
        with self._cond:
            arrived = self._cond.wait_for(
                lambda: sum(c.method == method for c in self.calls) >= count, timeout
            )
            if not arrived:
                seen = [c.method for c in self.calls]
                raise TimeoutError(f"waited {timeout}s for {count} x {method}; received {seen}")
            return [c for c in self.calls if c.method == method]

    def handle(self, method: str, args: dict[str, Any] | None, headers: dict[str, str]) -> _Reply:
        """Authenticate, apply injected failures, dispatch, and record one API call.

        `args` is None when the body could not be decoded (Slack answers invalid_json).
        """
        with self._cond:
            reply = self._answer(method, args or {}, headers, decoded=args is not None)
            call = Call(method, args or {}, headers, time.time(), reply.status, reply.body)
            self.calls.append(call)
            self._cond.notify_all()
        return reply

    def _answer(
        self, method: str, args: dict[str, Any], headers: dict[str, str], decoded: bool
    ) -> _Reply:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        token = auth.removeprefix("Bearer ").strip() if auth else str(args.get("token", ""))
        if not token:
            return _Reply.error("not_authed")
        if method == "apps.connections.open":
            if token != self.app_token or self.socket_mode_url is None:
                return _Reply.error("invalid_auth")
            return _Reply({"ok": True, "url": self.socket_mode_url})
        if token != self.token:
            return _Reply.error("invalid_auth")
        if not decoded:
            return _Reply.error("invalid_json")
        pending = self._failures.get(method)
        if pending:
            return pending.popleft()
        handler = self._methods.get(method)
        if handler is None:
            return _Reply.error("unknown_method")
        try:
            return _Reply({"ok": True, **handler(args)})
        except SlackError as e:
            return _Reply.error(str(e))

    def response_url(self, name: str = "1") -> str:
        """Return a slash command response_url here (posts to it record as "response_url")."""
        return f"{self.base_url}commands/T0KPI/{name}/secret"

    def handle_response_url(self, path: str, args: dict[str, Any], headers: dict[str, str]) -> None:
        """Record a message posted to a response_url as a call to the method "response_url"."""
        with self._cond:
            self.calls.append(Call("response_url", {**args, "path": path}, headers, time.time()))
            self._cond.notify_all()

    def receive_upload(self, file_id: str, data: bytes) -> bool:
        """Store the bytes posted to an upload URL; False when the file id was never issued."""
        with self._cond:
            upload = self.uploads.get(file_id)
            if upload is None:
                return False
            upload.data = data
            self._cond.notify_all()
            return True

    def _next_ts(self) -> str:
        micros = next(self._ts)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _channel(self, args: dict[str, Any], key: str = "channel") -> str:
        """The target channel id, as Slack resolves it (a user id posts to the bot's DM)."""
        channel = str(args.get(key) or "")
        if channel in self.missing_channels or not channel:
            raise SlackError("channel_not_found")
        if channel in self.channels:
            return channel
        if channel[0] in "UW":
            return "D" + channel[1:]  # the bot's DM with that user
        if channel[0] in "CDG":
            return channel
        raise SlackError("channel_not_found")

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        team = {"url": "https://kpibot-test.slack.com/", "team": "KPI Test", "team_id": "T0001"}
        return team | {"user": "kpibot", "user_id": "UBOT", "bot_id": "B0001"}

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            raise SlackError("no_text")
        ts = self._next_ts()
        message = {"type": "message", "user": "UBOT", "bot_id": "B0001", "ts": ts, "text": ""}
        message |= {k: v for k, v in args.items() if k in MESSAGE_FIELDS}
        self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        ts = str(args.get("ts", ""))
        message = self.messages.get((channel, ts))
        if message is None:
            raise SlackError("message_not_found")
        message.update({k: args[k] for k in ("text", "blocks", "attachments") if k in args})
        message["edited"] = {"user": "UBOT", "ts": self._next_ts()}
        return {"channel": channel, "ts": ts, "text": message["text"], "message": message}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self._channel(args)
        if not str(args.get("user", "")).startswith(("U", "W")):
            raise SlackError("user_not_in_channel")
        return {"message_ts": self._next_ts()}

    def _users_lookup_by_email(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args.get("email", "")).lower()
        for user in self.users.values():
            if user["profile"]["email"].lower() == email:
                return {"user": user}
        raise SlackError("users_not_found")

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user", "")))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if len(users) != 1 or users[0][0] not in "UW":
            raise SlackError("user_not_found" if users else "users_list_not_supplied")
        return {"channel": {"id": "D" + users[0][1:]}}

    def _view(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict) or "type" not in view:
            raise SlackError("invalid_arguments")
        number = next(self._ids)
        ids = {"id": f"V{number:08d}", "team_id": "T0001", "app_id": "A0001", "bot_id": "B0001"}
        return {**ids, "hash": f"{time.time():.0f}.h{number}", "blocks": [], **cast(dict, view)}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        if not str(args.get("user_id", "")).startswith(("U", "W")):
            raise SlackError("invalid_arguments")
        return {"view": self._view(args)}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            raise SlackError("invalid_trigger_id")
        return {"view": self._view(args)}

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), str(args.get("length", ""))
        if not filename or not length.isdigit():
            raise SlackError("invalid_arguments")
        file_id = f"F{next(self._ids):08d}"
        self.uploads[file_id] = Upload(file_id, str(filename), int(length))
        return {"upload_url": f"{self.base_url}upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, "channel_id") if args.get("channel_id") else None
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise SlackError("invalid_arguments")
        done = []
        for item in files:
            upload = self.uploads.get(str(item.get("id")))
            if upload is None or upload.data is None:
                raise SlackError("file_not_found")
            upload.title, upload.channel = item.get("title") or upload.filename, channel
            done.append({"id": upload.file_id, "title": upload.title, "name": upload.filename})
            done[-1] |= {"size": upload.size, "channels": [channel] if channel else []}
        return {"files": done}


@dataclass
class _Reply:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, error: str, status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
        return cls({"ok": False, "error": error}, status, headers or {})


def decode_args(content_type: str, body: bytes, query: str) -> dict[str, Any]:
    """Arguments of a Web API request: JSON body, or form/query fields with JSON fields decoded."""
    if content_type.startswith("application/json"):
        decoded = json.loads(body or b"{}")
        if not isinstance(decoded, dict):
            raise ValueError("a JSON body must be an object")
        return decoded
    fields = parse_qs(query, keep_blank_values=True)
    fields.update(parse_qs(body.decode("utf-8"), keep_blank_values=True))
    args: dict[str, Any] = {k: v[-1] for k, v in fields.items()}
    for key in JSON_ARGS:
        if isinstance(args.get(key), str):
            with contextlib.suppress(json.JSONDecodeError):  # invalid JSON stays a raw string
                args[key] = json.loads(args[key])
    return args


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP requests into `FakeSlack.handle` calls and upload receipts."""

    def do_POST(self) -> None:
        fake = cast(FakeSlack, self.server.fake)  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = url.path.removeprefix("/api/").strip("/")
        if path.startswith("commands/"):  # a slash command's response_url (no token: the URL is)
            try:
                posted = json.loads(body)
            except ValueError:
                self._send(400, b"invalid_payload", "text/plain")
                return
            fake.handle_response_url(path, posted, dict(self.headers.items()))
            self._send(200, b"ok", "text/plain")
            return
        if path.startswith("upload/"):
            received = fake.receive_upload(path.removeprefix("upload/"), body)
            text = f"OK - {len(body)}" if received else "Not Found"
            self._send(200 if received else 404, text.encode(), "text/plain")
            return
        args: dict[str, Any] | None
        try:
            args = decode_args(self.headers.get("Content-Type", ""), body, url.query)
        except ValueError:  # also UnicodeDecodeError and json.JSONDecodeError
            args = None
        reply = fake.handle(path, args, dict(self.headers.items()))
        payload = json.dumps(reply.body).encode()
        self._send(reply.status, payload, "application/json; charset=utf-8", reply.headers)

    do_GET = do_POST

    def _send(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-OAuth-Scopes", SCOPES)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: pytest output is for failures, and calls are recorded on the fake."""
