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
- names resolved with the loop's `getaddrinfo` (remembered `upstream.DNS_TTL`
  seconds), and every address checked by the app's `netguard.AddressPolicy` before it
  is connected to, as the session's connector does; a redirect (at most
  `netguard.MAX_REDIRECTS`) is a new request, so its target is checked again;
- `https` with the default verified TLS context (or the one given) and SNI;
- each connection is an `http1.Connection`: the head parsed by httptools, a body of
  `Content-Length` bytes handed on as the socket delivered it, without a copy, and
  reading paused while `upstream.READ_BUFFER` bytes wait for the relay (as the session's
  `read_bufsize`);
- a head, or a read of the body, that has waited `stall_timeout` seconds
  (`STALL_TIMEOUT`: `upstream.READ_TIMEOUT`, the session's read timeout) fails with
  `UpstreamStalled`, so the relay resumes from the byte reached. One timer watches
  every request, where aiohttp's `sock_read` cancels and re-arms a timer on each
  socket read (6.8% of the gateway's CPU in a profile of bulk relays); time the relay
  spends sending to a slow client is not waiting, so the upstream is not blamed for it.

Errors are aiohttp's types (`ClientConnectionError`, `ServerDisconnectedError`,
`ClientPayloadError`), a refused address `netguard.ForbiddenAddress`, so the relay
treats both clients alike. The response (`http1.Response`) has the part of aiohttp's
`ClientResponse` the relays use (`upstream.PieceResponse`).

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

import aiohttp
from yarl import URL

from .http1 import Connection, Origin, Response
from .netguard import MAX_REDIRECTS, AddressPolicy, TooManyRedirects
from .upstream import CONNECT_TIMEOUT, DNS_TTL, KEEPALIVE_TIMEOUT, READ_TIMEOUT

log = logging.getLogger(__name__)

IDLE_PER_ORIGIN = 256
IDLE_TIMEOUT = KEEPALIVE_TIMEOUT  # module attributes, so tests can shorten them
STALL_TIMEOUT = READ_TIMEOUT
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Request headers a redirect to another origin does not carry (as aiohttp and requests).
_PRIVATE_HEADERS = frozenset({"authorization", "cookie"})


class UpstreamStalled(aiohttp.ServerTimeoutError):
    """A head or body read waited the client's stall timeout (a network error: the relay
    resumes from the byte reached, as after aiohttp's own read timeout)."""


class PieceClient:
    """Sends GETs over kept-alive HTTP/1.1 connections (see the module docstring)."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        stall_timeout: float = STALL_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: the context for `https` (the default verified one unless given)."""
        self._policy = policy
        self.stall_timeout = stall_timeout
        self._busy: set[Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._idle: dict[Origin, list[Connection]] = collections.defaultdict(list)
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._tls = tls
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
                response = await _exchange(connection, request)
            except aiohttp.ServerDisconnectedError:
                if not connection.reused:
                    raise
                # The server closed the kept-alive connection as it was reused: a race
                # every keep-alive client meets; the request was not read, so send it anew.
                response = await _exchange(await self._connect(origin), request)
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

    def started(self, connection: Connection) -> None:
        """A request was sent on `connection` (`http1.Pool`)."""
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
                connection.fail(UpstreamStalled(f"the upstream sent nothing for {limit:g} s"))
        if self._busy and not self._closed:
            self._watchdog = asyncio.get_running_loop().call_later(limit / 4, self._watch)

    async def _connection(self, origin: Origin) -> Connection:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.take():
                return connection
        return await self._connect(origin)

    def forget(self, connection: Connection) -> None:
        """`connection`'s request is over (`http1.Pool`)."""
        self._busy.discard(connection)

    def put_back(self, connection: Connection) -> None:
        """`connection` may serve another request (`http1.Pool`)."""
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

    async def _connect(self, origin: Origin) -> Connection:
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
                        lambda: Connection(self, origin),
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


async def _exchange(connection: Connection, request: bytes) -> Response:
    """Send `request` on `connection` and wait for the head; close it on any failure."""
    try:
        return await connection.send(request)
    except BaseException:
        connection.close()
        raise


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
