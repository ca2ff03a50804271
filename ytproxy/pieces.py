"""The download relay's own HTTP/1.1 client for ranged pieces: kept alive, guarded, lean.

A download reads its file as a sequence of ranged GETs (`download.relay`). Each is the
simplest request there is — a GET with the format's headers, answered by a head and a
`Content-Length` body read straight through — yet aiohttp's `ClientSession` spent more
CPU on it than the rest of a small download: measured on 2 cores with `wrk -t2 -c100`
relaying a 100 KiB file through a raw ASGI app under the same uvicorn, 264 µs per
request with the session against 128 µs with a client shaped like this one, and its
parser copies every body block once more. `PieceClient` does only what a piece needs:

- one request at a time per connection, connections kept alive in a pool per
  (scheme, host, port): at most `IDLE_PER_ORIGIN` idle ones, each closed after
  `IDLE_TIMEOUT` seconds unused;
- names resolved with the loop's `getaddrinfo` (remembered `DNS_TTL` seconds), and
  every address checked by the app's `netguard.AddressPolicy` before it is connected to,
  as the session's connector does; a redirect (at most `netguard.MAX_REDIRECTS`) is a
  new request, so its target is checked again;
- `https` with the default verified TLS context and SNI;
- the head parsed by httptools (the parser uvicorn serves with); a body of
  `Content-Length` bytes is then handed on as the socket delivered it, without a copy;
  a chunked or close-delimited body stays with the parser;
- reading pauses while `READ_BUFFER` bytes wait for the relay (as the session's
  `read_bufsize`);
- a head, or a read of the body, that has waited `stall_timeout` seconds
  (`STALL_TIMEOUT`, the session's read timeout) fails with `UpstreamStalled`, so the
  relay resumes from the byte reached. One timer watches every request, where
  aiohttp's `sock_read` cancels and re-arms a timer on each socket read (6.8% of the
  gateway's CPU in a profile of bulk relays); time the relay spends sending to a slow
  client is not waiting, so the upstream is not blamed for it.

Errors are aiohttp's types (`ClientConnectionError`, `ServerDisconnectedError`,
`ClientPayloadError`), a refused address `netguard.ForbiddenAddress`, so the relay
treats both clients alike. The response has the part of aiohttp's `ClientResponse`
the relays use (`upstream.PieceResponse`).

It is not a general client: no proxy (`core.open_pieces` builds none when
`GLOBAL_PROXY` is set, and the session carries the pieces), no cookies, no
decompression (the format's headers ask for `identity`), no request body, no HTTP/2.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import socket
import ssl
import time
from typing import Any

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .netguard import MAX_REDIRECTS, AddressPolicy, TooManyRedirects

log = logging.getLogger(__name__)

IDLE_PER_ORIGIN = 256
IDLE_TIMEOUT = 15.0  # aiohttp's keepalive_timeout
DNS_TTL = 300.0  # the session's ttl_dns_cache
CONNECT_TIMEOUT = 10.0  # the session's connect timeout
STALL_TIMEOUT = 30.0  # the session's sock_read
READ_BUFFER = 1024 * 1024  # core.READ_BUFSIZE
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Request headers a redirect to another origin does not carry (as aiohttp and requests).
_PRIVATE_HEADERS = frozenset({"authorization", "cookie"})

Origin = tuple[str, str, int]  # scheme, host, port


class UpstreamStalled(aiohttp.ServerTimeoutError):
    """A head or body read waited the client's stall timeout (a network error: the relay
    resumes from the byte reached, as after aiohttp's own read timeout)."""


class PieceClient:
    """Sends GETs over kept-alive HTTP/1.1 connections (see the module docstring)."""

    def __init__(self, policy: AddressPolicy, *, stall_timeout: float = STALL_TIMEOUT) -> None:
        self._policy = policy
        self.stall_timeout = stall_timeout
        self._busy: set[_Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._idle: dict[Origin, list[_Connection]] = collections.defaultdict(list)
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._tls: ssl.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def get(
        self, url: str, headers: RequestHeaders, byte_range: tuple[int, int | None] | None = None
    ) -> Response:
        """The response to a GET of `url`, redirects followed; release or close it."""
        tail = b"\r\n"
        if byte_range is not None:
            first, last = byte_range
            tail = b"Range: bytes=%d-%s\r\n\r\n" % (first, b"" if last is None else b"%d" % last)
        for _ in range(MAX_REDIRECTS + 1):
            origin, request_line = _parse(url)
            request = request_line + headers.block + tail
            connection = await self._connection(origin)
            try:
                response = await connection.send(request, url)
            except aiohttp.ServerDisconnectedError:
                connection.close()
                if not connection.reused:
                    raise
                # The server closed the kept-alive connection as it was reused: a race
                # every keep-alive client meets; the request was not read, so send it anew.
                connection = await self._connect(origin)
                try:
                    response = await connection.send(request, url)
                except BaseException:
                    connection.close()
                    raise
            except BaseException:
                connection.close()
                raise
            if response.status not in _REDIRECTS or "Location" not in response.headers:
                return response
            response.close()
            following = str(URL(url).join(URL(response.headers["Location"])))
            if _parse(following)[0] != origin:
                headers = headers.without_private()
            url = following
        raise TooManyRedirects()

    async def close(self) -> None:
        self._closed = True
        for timer in (self._sweeper, self._watchdog):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._watchdog = None
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def idle(self) -> int:
        """Connections waiting in the pool (for tests and diagnostics)."""
        return sum(1 for cs in self._idle.values() for c in cs if c.usable())

    def busy(self) -> int:
        """Connections with a request whose response is not yet released or closed."""
        return len(self._busy)

    def _started(self, connection: _Connection) -> None:
        self._busy.add(connection)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(
                self.stall_timeout / 4, self._watch
            )

    def _watch(self) -> None:
        """Fail the reads that have waited `stall_timeout` (one timer for every request,
        where aiohttp's `sock_read` re-arms one on each socket read). A relay busy sending
        to a slow client is not reading, so the upstream is not blamed for that time."""
        self._watchdog = None
        now, limit = time.monotonic(), self.stall_timeout
        for connection in list(self._busy):
            since = connection.waiting_since
            if since is not None and now - since >= limit:
                connection.stalled(UpstreamStalled(f"the upstream sent nothing for {limit:g} s"))
        if self._busy and not self._closed:
            self._watchdog = asyncio.get_running_loop().call_later(limit / 4, self._watch)

    async def _connection(self, origin: Origin) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.take():
                return connection
        return await self._connect(origin)

    def _put_back(self, connection: _Connection) -> None:
        idle = self._idle[connection.origin]
        if self._closed or len(idle) >= IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for `IDLE_TIMEOUT` (one timer for the pool, not one
        per connection put back)."""
        self._sweeper = None
        stale = time.monotonic() - IDLE_TIMEOUT
        for origin, idle in list(self._idle.items()):
            kept = [c for c in idle if c.idle_since > stale and c.usable()]
            for connection in idle:
                if connection not in kept:
                    connection.close()
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]
        if self._idle and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT / 2, self._sweep)

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        addresses = await self._resolve(host, port)
        policy = self._policy
        if not (policy.allow_private or policy.is_exempt(host, port)):
            for _, address in addresses:
                policy.check_address(host, address)
        tls = self._tls_context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        failure: OSError | None = None
        for family, address in addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self, origin),
                        address,
                        port,
                        family=family,
                        ssl=tls,
                        server_hostname=host if tls else None,
                    )
            except OSError as exc:  # ssl.SSLError included
                failure = exc
                continue
            return connection
        raise aiohttp.ClientConnectionError(f"Cannot connect to {host}:{port}: {failure!r}")

    async def _resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        now = time.monotonic()
        known = self._dns.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise aiohttp.ClientConnectionError(f"Cannot resolve {host}: {exc!r}") from exc
        addresses: list[tuple[int, str]] = list(
            dict.fromkeys((int(family), str(info[0])) for family, *_, info in infos)
        )
        if len(self._dns) > 256:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


@functools.lru_cache(maxsize=256)  # a download asks for the same URL piece after piece
def _parse(url: str) -> tuple[Origin, bytes]:
    """The origin of `url` and its request line with the Host header."""
    parsed = URL(url)
    scheme, host, port = parsed.scheme, parsed.raw_host, parsed.port
    if scheme not in ("http", "https") or not host or port is None:
        raise aiohttp.InvalidURL(url)
    shown = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        shown = f"{shown}:{port}"
    line = f"GET {parsed.raw_path_qs or '/'} HTTP/1.1\r\nHost: {shown}\r\n"
    return (scheme, host, port), line.encode("ascii")


class RequestHeaders:
    """A request's headers, checked and encoded once (a download sends them with every
    piece). A name or value holding a line break is refused (header injection)."""

    __slots__ = ("block", "items")

    def __init__(self, headers: dict[str, str]) -> None:
        self.items = {k: v for k, v in headers.items() if k.lower() != "host"}
        lines = [f"{name}: {value}\r\n" for name, value in self.items.items()]
        if any(c in line[:-2] for line in lines for c in "\r\n\0"):
            raise ValueError("a request header holds a line break")
        self.block = "".join(lines).encode("latin-1")

    def without_private(self) -> RequestHeaders:
        """These headers but those a redirect to another origin does not carry."""
        return RequestHeaders(
            {k: v for k, v in self.items.items() if k.lower() not in _PRIVATE_HEADERS}
        )


class Response:
    """A piece's head and its body as it arrives (`upstream.PieceResponse`)."""

    def __init__(
        self, connection: _Connection, url: str, status: int, headers: CIMultiDict[str]
    ) -> None:
        self._connection = connection
        self.url = url
        self.status = status
        self.headers = CIMultiDictProxy(headers)
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self._blocks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

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
        self._connection.finished(self, reuse=self.at_eof())

    def close(self) -> None:
        self._connection.finished(self, reuse=False)

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


class _Connection(asyncio.Protocol):
    """One kept-alive connection: a head parsed by httptools, a sized body passed on."""

    def __init__(self, client: PieceClient, origin: Origin) -> None:
        self._client = client
        self.origin = origin
        self._transport: asyncio.Transport | None = None
        self._parser: Any = None
        self._head: asyncio.Future[Response] | None = None
        self._url = ""
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

    async def send(self, request: bytes, url: str) -> Response:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        self._head, self._url = loop.create_future(), url
        self._parser = httptools.HttpResponseParser(self)
        self._header_list, self._response, self._remaining = [], None, None
        self.reusable = False  # until its body has been read to the end
        self._client._started(self)
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

    def finished(self, response: Response, *, reuse: bool) -> None:
        if response is not self._response:
            return  # released twice
        self._response = None
        self._client._busy.discard(self)
        if reuse and self.reusable and not self._lost:
            self.resume()
            self._client._put_back(self)
        else:
            self.close()

    def close(self) -> None:
        self.reusable = False
        self._client._busy.discard(self)
        if self._transport is not None:
            self._transport.close()

    def stalled(self, error: BaseException) -> None:
        self._fail(error)

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
            self._fail(aiohttp.ClientResponseError(_no_info(), (), message="Unexpected upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(aiohttp.ClientResponseError(_no_info(), (), message=f"Bad response: {exc}"))

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

    def pause_writing(self) -> None:  # a request is one small write
        pass

    def resume_writing(self) -> None:
        pass

    # httptools' side.

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_list.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        headers: CIMultiDict[str] = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self._header_list
        )
        response = self._response = Response(self, self._url, parser.get_status_code(), headers)
        self._keep_alive = parser.should_keep_alive()
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        if response.content_length is not None and not chunked:
            self._remaining = response.content_length
        self._until_close = (
            not chunked and response.content_length is None
            and response.status not in (204, 304) and response.status >= 200
        )  # fmt: skip
        assert self._head is not None
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

    def _fail(self, error: BaseException) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        elif self._response is not None:
            self._response.set_exception(error)
        self.close()


@functools.cache
def _no_info() -> Any:
    return aiohttp.RequestInfo(URL("http://upstream/"), "GET", CIMultiDictProxy(CIMultiDict()))
