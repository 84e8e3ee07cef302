"""The HTTP/1.1 protocol `kpibot serve` runs its web application with: uvicorn's httptools one,
with a limit on the size of a request's head, and an answer for senders that half-close.

httptools, uvicorn's fast parser, sets no limit on a request's line and headers: it keeps what it
has of a header until the header ends, so one connection sending a header without end grew the
server by a gigabyte. A reverse proxy limits heads (nginx: 4 buffers of 8 KB), but a small team
may expose `kpibot serve` without one. Here the bytes received while a request's head is
incomplete are counted, and past `HEAD_BYTES` the request is answered 431 and its connection
closed. uvicorn's other parser (h11) has such a limit, but costs more CPU on every request.

Counting is per read from the socket (httptools does not say where in a read a head ends): a read
that begins a head is not counted, and one that ends it does not count, so a head is refused
between `HEAD_BYTES` and two reads (256 KiB each at most) more. The aim is a bound on memory, not
an exact size.

A sender may close its side of the connection once its request is sent (a half-close, as some
scripts do); uvicorn then closed the whole connection, so the events were stored but the sender
got no answer, and sent them again. The answer is now written, and the connection closed after it.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# Providers' heads are a few KB (Stripe's, with its signature, under 2 KB); the largest header
# (a Standard Webhooks signature list while a secret is rotated) is well under 1 KB.
HEAD_BYTES = 64 * 1024
_TOO_LARGE = f"the request's line and headers are over {HEAD_BYTES // 1024} KiB"


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose head is over `HEAD_BYTES` (431), and
    answering a request whose sender half-closed the connection after it."""

    # The bytes of the request's head received so far: None while no head is incomplete (before
    # a request begins, and from the end of its head on).
    _head_bytes: int | None = None

    def data_received(self, data: bytes) -> None:
        head_before = self._head_bytes is not None
        super().data_received(data)  # parsing may begin a head (0) or complete it (None)
        if self._head_bytes is None or self.transport.is_closing():
            return
        if head_before:  # a head, incomplete before this read and after it: all of it is head
            self._head_bytes += len(data)
        if self._head_bytes > HEAD_BYTES:
            self._refuse()

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol's type
        """The sender will send no more: answer its request if it has all arrived, then close
        (True keeps the connection open for the answer); else close now, as uvicorn does (a
        request cut short is then a disconnected one: nothing is stored)."""
        cycle = self.cycle
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            cycle.keep_alive = False  # "connection: close", and closed once answered
            return True
        return None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def _refuse(self) -> None:
        """Answer 431 and close, as uvicorn answers a request it cannot parse (400)."""
        self.logger.warning("a request's head is over %d bytes: answered 431", HEAD_BYTES)
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(_TOO_LARGE)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _TOO_LARGE.encode("ascii"),
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
