"""A real kpibot web server (uvicorn on 127.0.0.1, a free port) on each test database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.http_protocol import HttpProtocol
from bot.settings import Settings
from bot.web import create_web
from storage.db import make_engine, make_session_factory


@dataclass
class RunningServer:
    """A started server: its base URL, a session factory on its database, its app and engine."""

    url: str
    factory: sessionmaker[Session]
    app: Any
    engine: Engine
    server: uvicorn.Server

    def stop(self) -> None:
        """Stop as SIGTERM stops `kpibot serve`: requests in flight get the grace period."""
        self.server.should_exit = True

    def wait_in_flight(self, timeout: float = 10.0) -> None:
        """Wait until the server is handling a request (uvicorn's tasks)."""
        deadline = time.monotonic() + timeout
        while not self.server.server_state.tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("no request reached the server")
            time.sleep(0.01)

    def stopped_while_sending(self, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """POST `body` to `path` announcing 100 bytes more, never sent; stop the server while
        it waits for them; return all it answered."""
        announced = {**headers, "content-length": str(len(body) + 100)}
        head = "".join(f"{name}: {value}\r\n" for name, value in announced.items())
        port = int(self.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as link:
            link.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\n{head}\r\n".encode() + body)
            self.wait_in_flight()
            self.stop()
            answer = b""
            while chunk := link.recv(65536):
                answer += chunk
        return answer

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the webhook events the server accepted are applied (see ApplyWorker)."""
        if not self.app.state.apply_worker.wait_idle(timeout):
            raise TimeoutError("the server's queued webhook events were not applied in time")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def web_server(database_url: str) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with settings overrides: `web_server(webhook_secret="whsec_…")`, on the
    test database or on `database` (a URL); `shutdown_grace`: how long `stop()` lets requests in
    flight finish (as `kpibot serve`'s SIGTERM; None: as long as they take).

    `slack_options` go to the Bolt app's factory (`answer_budget`, `client`); `lifespan=True`
    runs the app's start-up and shut-down (the outbox dispatcher).
    """
    started: list[tuple[uvicorn.Server, threading.Thread, Any, Any]] = []

    def start(
        slack_options: dict[str, Any] | None = None,
        *,
        lifespan: bool = False,
        database: str | None = None,
        shutdown_grace: float | None = None,
        **overrides: Any,
    ) -> RunningServer:
        url = database or database_url
        settings = Settings(_env_file=None, database_url=url, **overrides)  # type: ignore[call-arg]
        engine = make_engine(url)
        app = create_web(settings, engine, **(slack_options or {}))
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="on" if lifespan else "off",
                http=HttpProtocol,  # as `kpibot serve` runs it
                timeout_graceful_shutdown=shutdown_grace,
                # uvicorn's own log setup stops its loggers at theirs; left as Python's, they
                # reach the root, and `caplog` sees them (an "Exception in ASGI application").
                log_config=None,
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test web server did not start")
            time.sleep(0.01)
        started.append((server, thread, engine, app))
        factory = make_session_factory(engine)
        return RunningServer(f"http://127.0.0.1:{port}", factory, app, engine, server)

    yield start
    for server, thread, engine, app in started:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.apply_worker.close()  # its thread lives on without the app's lifespan
        engine.dispose()
