"""One kept-alive HTTP/1.1 connection of the piece client (`pieces`), and its response.

`Connection` is an asyncio protocol that sends one GET at a time and reads its answer:
the head is parsed by httptools (the parser uvicorn serves with); once the head says
`Content-Length`, the body is handed to the `Response` as the socket delivered it,
without a copy, and the parser is not fed again; a chunked or close-delimited body
stays with the parser. A body read to its end on a connection both sides keep alive
goes back to its `Pool`; anything else closes the connection (a half-read body, more
bytes than announced, bytes while idle, `Connection: close`, a parse error).

`Response` has the part of aiohttp's `ClientResponse` the relays use
(`upstream.PieceResponse`): `status`, `headers`, `content_length`, `content.read(n)`
(the next block as it arrived, at most `n` bytes; `b""` at the end; what arrived is
returned before an error is raised), `release()` and `close()`. Reading pauses while
`READ_BUFFER` bytes wait.

Each connection's socket receives into a fixed `RECEIVE_BUFFER` (2 MiB; the kernel
books twice that) instead of the kernel's auto-tuned one: relaying 1 GiB downloads
from nginx over loopback, in interleaved runs (16 downloads without, 8 with), the
gateway's CPU per GiB went from a median of 685 ms to 525 ms and its rate from ~1.5 to
~2.0 GB/s (`make bench`'s bulk row). The buffer is filled only while the relay is
behind, so a connection costs at most that much kernel memory: 4 MiB per download at
worst, 8 MiB per merge (it reads two inputs), 40 to 80 MiB with the default
`MAX_CONCURRENT_DOWNLOADS` of 10. Where the kernel caps buffers below that
(`net.core.rmem_max`; Linux's default is 208 KiB), the auto-tuned buffer is kept: a
capped fixed one would be smaller than what it turns off. Which of the two applies is
decided once, at the first connection.

Errors are aiohttp's types: `ServerDisconnectedError` before the head,
`ClientPayloadError` for a body cut short, `ClientResponseError` for a response that
cannot be parsed. This module does not connect, pool, time out or follow redirects:
`pieces.PieceClient` does.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import socket
import time
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .upstream import READ_BUFFER

RECEIVE_BUFFER = 2 * 1024 * 1024  # the socket's SO_RCVBUF (see the module docstring)

Origin = tuple[str, str, int]  # scheme, host, port


def fixed_receive_buffer(rmem_max: int | None) -> int | None:
    """`RECEIVE_BUFFER` when the kernel allows that much, else None (keep auto-tuning)."""
    return RECEIVE_BUFFER if rmem_max is not None and rmem_max >= RECEIVE_BUFFER else None


@functools.cache
def _receive_buffer() -> int | None:
    """The fixed buffer for this machine's kernel, decided once (at the first connection)."""
    try:
        rmem_max: int | None = int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        rmem_max = None
    return fixed_receive_buffer(rmem_max)


class Pool(Protocol):
    """What a connection tells its client."""

    def started(self, connection: Connection) -> None: ...

    def forget(self, connection: Connection) -> None: ...

    def put_back(self, connection: Connection) -> None: ...


class Headers(dict[str, str]):
    """A response's headers by lower-case name, looked up in any case (a plain dict is
    built faster than a multidict, and a piece has no header it needs twice; a repeated
    one keeps its last value)."""

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Response:
    """A piece's head and its body as it arrives (`upstream.PieceResponse`)."""

    def __init__(self, connection: Connection, status: int, headers: Headers) -> None:
        self._connection = connection
        self.status = status
        self.headers = headers
        length = headers.get("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self._blocks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._finished = False

    @property
    def content(self) -> Response:
        return self  # aiohttp's `response.content` is the body's reader

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes: the next block as it arrived, b"" at the end of the body."""
        while not self._blocks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            self._connection.waiting_since = time.monotonic()
            try:
                await self._waiter
            finally:
                self._waiter = None
                self._connection.waiting_since = None
        block = self._blocks[0]
        if 0 <= n < len(block):
            self._blocks[0] = block[n:]
            block = block[:n]
        else:
            self._blocks.popleft()
        self._buffered -= len(block)
        if self._buffered < READ_BUFFER // 2:
            self._connection.resume()
        return block

    def at_eof(self) -> bool:
        return self._complete and not self._blocks

    def set_exception(self, error: BaseException, /) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def release(self) -> None:
        """Give the connection back to the pool (only a body read to its end can be)."""
        self._finish(reuse=self.at_eof())

    def close(self) -> None:
        self._finish(reuse=False)

    def _finish(self, *, reuse: bool) -> None:
        if not self._finished:  # released or closed once: later calls do nothing
            self._finished = True
            self._connection.finished(reuse=reuse)

    def _feed(self, block: bytes) -> None:
        self._blocks.append(block)
        self._buffered += len(block)
        if self._buffered > READ_BUFFER:
            self._connection.pause()
        self._wake()

    def _end(self) -> None:
        self._complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One kept-alive connection: a head parsed by httptools, a sized body passed on."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self._pool = pool
        self.origin = origin
        self._transport: asyncio.Transport | None = None
        self._parser: Any = None
        self._head: asyncio.Future[Response] | None = None
        self._header_list: list[tuple[bytes, bytes]] = []
        self._response: Response | None = None
        self._remaining: int | None = None  # of a sized body, once the head is parsed
        self._lost = False
        self._paused = False
        self._keep_alive = False
        self._until_close = False  # the body ends when the connection does
        self.reused = False  # served a request before this one
        self.idle_since = 0.0
        self.waiting_since: float | None = None  # of the head, or of a body read
        self.reusable = True

    # The pool's side.

    async def send(self, request: bytes) -> Response:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._header_list, self._response, self._remaining = [], None, None
        self.reusable = False  # until its body has been read to the end
        self._pool.started(self)
        self.waiting_since = time.monotonic()
        self._transport.write(request)
        try:
            return await self._head
        finally:
            self.waiting_since = None

    def take(self) -> bool:
        """Leave the pool for a request; False if the connection is no longer usable."""
        self.reused = True
        return self.usable()

    def usable(self) -> bool:
        return self.reusable and not self._lost

    def finished(self, *, reuse: bool) -> None:
        """Its response is released or closed (once: `Response._finish`); it is always
        the latest, as a connection serves another request only once this is called."""
        self._response = None
        self._pool.forget(self)
        if reuse and self.reusable and not self._lost:
            self.resume()
            self._pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        self.reusable = False
        self._pool.forget(self)
        if self._transport is not None:
            self._transport.close()

    def fail(self, error: BaseException) -> None:
        """End the request in progress with `error` (the head or the body) and close."""
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        elif self._response is not None:
            self._response.set_exception(error)
        self.close()

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None and not self._lost:
            self._paused = False
            self._transport.resume_reading()

    # asyncio's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        size = _receive_buffer()
        if sock is not None and size is not None:
            # After connecting: the window scale was set at SYN from tcp_rmem's maximum.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def data_received(self, data: bytes) -> None:
        remaining, response = self._remaining, self._response
        if remaining is not None and response is not None:
            if len(data) >= remaining:
                if len(data) > remaining:  # more than the head said: not reusable
                    data = data[:remaining]
                    self.close()
                self._remaining = 0
                response._feed(data)
                self._body_done(response)
            else:
                self._remaining = remaining - len(data)
                response._feed(data)
            return
        if self._parser is None:  # bytes while idle: the server misbehaves
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(_unparsable(self.origin, "Unexpected upgrade"))
        except httptools.HttpParserError as exc:
            self.fail(_unparsable(self.origin, f"Bad response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.reusable = False
        response = self._response
        if response is not None and self._until_close and self._parser is not None:
            response._end()  # the end of a close-delimited body
            self._parser = None
        if self._head is not None and not self._head.done():
            self._head.set_exception(aiohttp.ServerDisconnectedError())
        elif response is not None and not response._complete:
            response.set_exception(
                aiohttp.ClientPayloadError(f"Response payload is not completed: {exc!r}")
            )
        # Both told; dropped, with the parser (which holds this connection), so that a
        # closed connection is not a reference cycle left for the garbage collector.
        self._head = self._response = self._parser = None

    def pause_writing(self) -> None:  # a request is one small write
        pass

    def resume_writing(self) -> None:
        pass

    # httptools' side.

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_list.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints): the final one follows
            self._header_list = []
            return
        headers = Headers(
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self._header_list}
        )
        response = self._response = Response(self, status, headers)
        self._keep_alive = parser.should_keep_alive()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if response.content_length is not None and not chunked:
            self._remaining = response.content_length
        self._until_close = (
            not chunked and response.content_length is None and status not in (204, 304)
        )
        if self._head is not None and not self._head.done():  # not given up on
            self._head.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is None:
            return
        if self._remaining is not None:
            self._remaining -= len(body)
        response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        if response is not None:
            self._body_done(response)

    def _body_done(self, response: Response) -> None:
        self._parser = None  # the next request gets a fresh one
        transport = self._transport
        self.reusable = (
            self._keep_alive and not self._lost and transport is not None
            and not transport.is_closing()
        )  # fmt: skip
        response._end()


def _unparsable(origin: Origin, message: str) -> aiohttp.ClientResponseError:
    """aiohttp's error for a response that cannot be parsed, naming the origin only (a
    media URL's path and query hold its signature)."""
    scheme, host, port = origin
    url = URL.build(scheme=scheme, host=host, port=port)
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()))
    return aiohttp.ClientResponseError(info, (), message=message)
