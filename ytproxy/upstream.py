"""What both jobs need to know about upstream servers: their answers, their URLs' expiry,
and their bodies.

- `REFUSED` (401, 403, 404, 410): the URL is dead, or refused; googlevideo answers this
  once a signed URL has expired, been revoked, or its PO token was rejected. The relays
  decide what to do (re-extract, shrink a range, block a channel).
- `retryable(status)`: worth trying again with backoff (408, 425, 429, 5xx).
- `expiry_of(url)`: the Unix time a googlevideo-style URL says it expires at, in an
  `expire=` query parameter or an `/expire/<ts>/` path segment; `expired(url)`.
- `read_capped(response, limit, what=...)` returns the body of an aiohttp response, read
  to its end, and raises `BodyTooLarge` (a 502 `UpstreamError`) as soon as it is clear
  the body is bigger than `limit` bytes: at once when `Content-Length` says so,
  otherwise the moment more than `limit` bytes have arrived, so at most `limit + 1`
  bytes are ever held. It is for bodies that must be had whole before they mean
  anything (HLS playlists, manifests), and which a server that is slow, chunked or
  hostile could otherwise make arbitrarily large. Unlike `response.content.read(n)`,
  which returns after the first socket read and so can silently cut a body that arrives
  in several pieces, it reads until EOF.

- `ClientWatch(receive, scope)`: the disconnect watcher of every streamed response (a
  download, a live segment still arriving). uvicorn silently drops what is sent to a
  client that has gone, so a relay that only sends would keep reading its upstream to
  the end; inside `async with ClientWatch(receive, scope) as watch:` the current task
  is cancelled when the client leaves, the cancellation ends at the block (`watch.left`
  is then True), and the code after it cleans up as usual. The block runs in the
  request's own task; the client's leaving is learnt from the server's disconnect
  extension (`DISCONNECT_EXTENSION`, offered by `server.HeadLimitProtocol`), or else
  from a watcher task reading `receive()` (a task per request, and before it a second
  one for the body with `asyncio.wait` on both, showed in the profile of small
  downloads).

- `PieceResponse`: what the relays use of a streamed response, whether aiohttp's
  `ClientResponse` or the piece client's (`http1.Response`).
- The limits both outbound HTTP clients keep, the app's aiohttp session
  (`core.open_http_session`) and the download relay's piece client (`pieces`), so the
  two behave alike: `CONNECT_TIMEOUT`, `READ_TIMEOUT` (a head or body read waiting
  that long is a stall), `DNS_TTL`, `KEEPALIVE_TIMEOUT` and `READ_BUFFER` (what a
  response buffers before its socket is paused; aiohttp's default, 64 KiB, is a
  quarter of a relay block, `CHUNK_SIZE`, so the socket would be paused and resumed
  within every block).

It does not retry, decode, release responses or stream: media bodies are relayed in
fixed-size pieces by the relays, never read whole. Errors raised from here never carry
the upstream URL.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import aiohttp
from starlette.types import Receive, Scope

from .errors import UpstreamError

# The outbound clients' limits (see the module docstring).
CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 30.0  # seconds
DNS_TTL = 300  # seconds
KEEPALIVE_TIMEOUT = 15.0  # seconds; aiohttp's own default
READ_BUFFER = 1024 * 1024  # bytes

# A scope extension of `server.HeadLimitProtocol`: `scope["extensions"][...](callback)`
# registers a callback for the client's connection being lost and returns the function
# that unregisters it.
DISCONNECT_EXTENSION = "ytproxy.disconnect"

_PIECE = 64 * 1024
_EXPIRE_PATH = re.compile(r"/expire/(\d+)(?:/|$)")

REFUSED = frozenset({401, 403, 404, 410})
_RETRY = frozenset({408, 425, 429})


def retryable(status: int) -> bool:
    """An answer worth retrying with backoff: the upstream is busy or failing for now."""
    return status in _RETRY or 500 <= status <= 599


def expiry_of(url: str) -> float | None:
    """The Unix time a googlevideo-style URL expires at, if it says."""
    parts = urlsplit(url)
    for value in parse_qs(parts.query).get("expire", []):
        if value.isdigit():
            return float(value)
    match = _EXPIRE_PATH.search(parts.path)
    return float(match.group(1)) if match else None


def expired(url: str, now: float | None = None) -> bool:
    """Whether the URL's own expiry (query or path) is in the past."""
    expiry = expiry_of(url)
    return expiry is not None and expiry <= (time.time() if now is None else now)


class BodyTooLarge(UpstreamError):
    """The upstream's body is bigger than the gateway accepts for it."""

    default_code = "upstream_too_large"

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} is larger than the gateway accepts ({limit} bytes)")
        self.limit = limit


async def read_capped(response: aiohttp.ClientResponse, limit: int, *, what: str) -> bytes:
    """The whole body of `response`; `BodyTooLarge` once it passes `limit` bytes.

    `what` names the body in the error message ("The stream's playlist"). Network
    errors while reading (aiohttp's `ClientPayloadError`, timeouts) propagate as they are.
    """
    if response.content_length is not None and response.content_length > limit:
        raise BodyTooLarge(what, limit)
    body = bytearray()
    while True:
        # Ask for one byte past the cap at most: that byte is the proof of excess.
        piece = await response.content.read(min(_PIECE, limit + 1 - len(body)))
        if not piece:
            return bytes(body)
        body += piece
        if len(body) > limit:
            raise BodyTooLarge(what, limit)


class ClientWatch:
    """Run the block until it ends or the client disconnects (see the module docstring);
    `left` is True when the client did. Other cancellations (a watchdog, shutdown) pass
    through unchanged. Given the request's `scope`, it uses the server's
    `ytproxy.disconnect` extension (`DISCONNECT_EXTENSION`: a callback when the connection is
    lost) when there is one, and a watcher task on `receive()` otherwise.
    (A class, not `contextlib.asynccontextmanager`, whose generator machinery showed in
    the profile of small downloads.)"""

    __slots__ = ("_active", "_receive", "_register", "_task", "_unregister", "_watcher", "left")

    def __init__(
        self, receive: Receive, scope: Scope | None = None, task: asyncio.Task[Any] | None = None
    ) -> None:
        """`task` is the one running the block (the current one when not given)."""
        self._receive = receive
        self._task: asyncio.Task[Any] | None = task
        extensions = (scope or {}).get("extensions") or {}
        self._register: Callable[[Callable[[], None]], Callable[[], None]] | None = extensions.get(
            DISCONNECT_EXTENSION
        )
        self._watcher: asyncio.Task[None] | None = None
        self._unregister: Callable[[], None] | None = None
        self._active = True
        self.left = False

    async def __aenter__(self) -> ClientWatch:
        if self._task is None:
            self._task = asyncio.current_task()
            assert self._task is not None
        if self._register is not None:
            self._unregister = self._register(self._client_left)
        else:
            self._watcher = asyncio.create_task(self._cancel_on_disconnect())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> bool:
        self._active = False  # from here on the watcher cancels nothing
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._unregister is not None:
            # Dropped once called: it holds `_client_left`, so kept it would make this
            # watch a reference cycle, left (with what it holds) for the garbage collector.
            self._unregister()
            self._unregister = None
        if kind is asyncio.CancelledError and self.left:
            assert self._task is not None
            self._task.uncancel()  # the watcher's own cancellation: the client left
            return True
        return False

    async def _cancel_on_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._client_left()

    def _client_left(self) -> None:
        if self._active and self._task is not None:
            self.left = True
            self._task.cancel()


class PieceBody(Protocol):
    async def read(self, n: int = -1) -> bytes: ...

    def at_eof(self) -> bool: ...


class PieceResponse(Protocol):
    """The part of a streamed response the relays use (aiohttp's, or `http1.Response`)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...  # names in any case

    @property
    def content_length(self) -> int | None: ...

    @property
    def content(self) -> PieceBody: ...

    def release(self) -> Any: ...

    def close(self) -> None: ...
