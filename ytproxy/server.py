"""The uvicorn server the app runs in: one `uvicorn.Config`, built from the settings.

`uvicorn_config(app, settings)` is what `python app.py` (`cli.py`) and the tests'
`AppServer` both serve with, so the socket-level rules below are the ones tested.

Request heads are capped at `MAX_HEADER_BYTES` (request line plus headers). uvicorn's
httptools protocol has no limit of its own: it read a 128 MiB header whole (18 s of
parsing on the event loop, +250 MiB of memory) before the app saw anything. Its h11
protocol has `h11_max_incomplete_event_size`, but answers 400, not 431, and costs about
four times the CPU per request (measured with wrk on 2 cores when this was written:
~160 vs ~36 µs for a bare ASGI response, ~5,400 vs ~20,000 req/s; ~330 vs ~140 µs on
/health). So the server keeps httptools and uses `HeadLimitProtocol`, a subclass that
counts the bytes of a head as they arrive and, once they pass the limit, answers
`431 header_too_large` (the JSON error shape of `web.error_response`) and closes the
connection; its cost per request did not show in the same measurement. At most the
limit plus one socket read of a head is ever buffered, and the loop stays free for
other requests.

A head still arriving is counted read by read; one that arrived whole in a read is
measured from its parsed parts (when its reads together could pass the limit). The
count is exact for a head that starts a socket read, which is every head except those
a client pipelines behind another request in the same read: such a head is counted
from the next read on, so it can pass the limit by one read (at most 256 KiB) before
the 431. After a 431 the connection lingers for `_LINGER` seconds, dropping what
arrives, so the client can read the answer.

The event loop is asyncio's own, not uvloop (which uvicorn picks when it is
installed, as it is here as a dependency of `uvicorn[standard]`). Measured on 2 cores
with `wrk -t2 -c100` relaying a 100 KiB file, uvloop gave about the same requests per
second but a p99 of 0.4–1.1 s against 40–150 ms with asyncio: under saturation it
served some connections far later than others. A gateway's tail latency is what its
viewers feel (a live segment that comes a second late stalls a player), so asyncio it is.

The protocol also offers each request the `ytproxy.disconnect` scope extension
(`upstream.DISCONNECT_EXTENSION`): a function that registers a callback for the client's
connection being lost and returns its unregistration. `upstream.ClientWatch` uses it
instead of a task waiting on `receive()` for `http.disconnect` (a task per download or
streamed segment, a measurable share of a small download's work); without it (another
server) it keeps the task.

This module does not parse HTTP (httptools does), limit bodies (each endpoint caps its
own), or time out a client that sends a small head slowly: uvicorn has no timer
before the first request, and a deadline for that would belong here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .settings import Settings
from .upstream import DISCONNECT_EXTENSION

log = logging.getLogger(__name__)

# Seconds a refused connection stays open to drain the rest of the client's head.
_LINGER = 2.0


def uvicorn_config(
    app: ASGIApp, settings: Settings, *, graceful_shutdown: int = 5
) -> uvicorn.Config:
    """The server configuration for `app`: address, proxy headers, the head limit."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=head_limit_protocol(settings.max_header_bytes),
        lifespan="on",
        loop="asyncio",  # see the module docstring
        log_config=None,
        # uvicorn formats each access line's arguments before the logger's level is
        # checked (about 1% of a small download's CPU); with LOG_LEVEL above INFO
        # nobody would see them.
        access_log=logging.getLevelName(settings.log_level) <= logging.INFO,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # No `server: uvicorn` on every answer: it tells a prober the software, and
        # costs each small download a header.
        server_header=False,
        timeout_graceful_shutdown=graceful_shutdown,
    )


def head_limit_protocol(max_head_bytes: int) -> type[HeadLimitProtocol]:
    """`HeadLimitProtocol` refusing heads over `max_head_bytes` (uvicorn builds one per
    connection from the class alone, so the limit travels as a class attribute)."""
    return type("HeadLimitProtocol", (HeadLimitProtocol,), {"max_head_bytes": max_head_bytes})


class HeadLimitProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 to a request head over the limit."""

    max_head_bytes: ClassVar[int] = 32 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_bytes = 0  # bytes of the current head received so far
        self._in_head = False  # a message has begun and its headers are not complete
        self._idle = True  # the last message (if any) is complete: the next byte begins a head
        self._begun = 0  # messages begun on this connection
        self._refused = False  # a head is over the limit: the parser's callbacks do nothing
        self._answered = False  # ... and the 431 is sent: what still arrives is dropped
        self._linger: asyncio.TimerHandle | None = None
        self._read_size = 0  # bytes of the socket read being parsed
        self._behind = False  # the head began behind another request in a read
        self._loss = _LossWatch(asyncio.get_running_loop())
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        # Which message begin, if any, this read starts a head with: none if it starts
        # inside a head, one if it starts between messages, never if inside a body.
        owns_read = 0 if self._in_head else 1 if self._idle else -1
        begun_before = self._begun
        self._read_size = len(data)
        super().data_received(data)
        if self.transport.is_closing():  # uvicorn answered 400 to a malformed request
            return
        if self._in_head and not self._refused:
            if self._begun - begun_before == owns_read:
                self._head_bytes += len(data)
            else:
                # The head began behind other bytes of this read; it is counted from the
                # next read on, and measured from its parts when complete.
                self._behind = True
            self._refused = self._head_bytes > self.max_head_bytes
        if self._refused:
            self._answer()

    # The parser's callbacks. After a refusal the parser still runs to the end of the
    # read it is in (it cannot be stopped without uvicorn answering 400), so each
    # callback then does nothing.

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._begun += 1
        self._in_head = True
        self._idle = False
        self._head_bytes = 0
        self._behind = False

    # (`on_url` and `on_header` are uvicorn's own: after a refusal they still append
    # the rest of the read to a request that is never served, at most one read.)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:
            return
        # A head that arrived whole in one read is measured here, from its parts (the
        # separators counted at their usual one space and CRLF). No head is bigger than
        # its counted reads and this one: within the limit, there is nothing to count.
        if self._behind or self._head_bytes + self._read_size > self.max_head_bytes:
            size = len(self.url) + 16
            size += sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.max_head_bytes:
                self._refused = True
                return
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[DISCONNECT_EXTENSION] = self._loss.when_lost
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._idle = True
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)
        self._loss.lost()

    def _answer(self) -> None:
        self._answered = True
        log.warning(
            "Refused a request head over %d bytes from %s (431)",
            self.max_head_bytes,
            self.client[0] if self.client else "?",
        )
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a response still being sent: a 431 now would land
            # inside that response, so the connection just ends.
            self.transport.close()
            return
        body = json.dumps(
            {
                "error": {
                    "code": "header_too_large",
                    "message": f"The request headers are larger than {self.max_head_bytes} "
                    "bytes, the most this gateway accepts",
                }
            }
        ).encode()
        head = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # A lingering close: closing a socket with unread input sends a reset, which can
        # destroy the 431 before the client (still sending its head) reads it. So the
        # write side ends now, what still arrives is read and dropped (data_received),
        # and the connection closes when the client closes it or after _LINGER seconds.
        self.transport.write_eof()
        self._linger = self.loop.call_later(_LINGER, self.transport.close)


class _LossWatch:
    """The `ytproxy.disconnect` extension of one connection's requests. An object of its
    own, not a method of the protocol: the scope holding a method of the protocol that
    holds the scope would make every connection a reference cycle."""

    __slots__ = ("_callbacks", "_is_lost", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._is_lost = False
        self._callbacks: set[Callable[[], None]] = set()

    def when_lost(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when the connection is lost (soon, if it already is); returns
        its unregistration."""
        if self._is_lost:
            self._loop.call_soon(callback)
        else:
            self._callbacks.add(callback)
        return functools.partial(self._callbacks.discard, callback)

    def lost(self) -> None:
        self._is_lost = True
        callbacks, self._callbacks = self._callbacks, set()
        for callback in callbacks:
            callback()
