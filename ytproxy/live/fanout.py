"""One upstream fetch for many viewers: shared fetches and a bounded segment buffer.

A `Fetch` is one upstream body being received. Its producer (a task of its own, so a
viewer going away does not cancel it for the others) appends bytes as they arrive;
any number of readers stream it from the start, in fixed `chunk_size` pieces (the
last one shorter), each piece sent as soon as it is complete. The first viewer is
therefore streamed to while the segment arrives, and later viewers follow the same
fetch or, once it is done, read the bytes kept in memory.

`SegmentBuffer` keeps fetches by key (channel, stream, variant, media sequence) and
drops the least recently used finished ones once their bytes pass the limit
(`SEGMENT_BUFFER_MB`). A fetch that failed is forgotten at once, its bytes dropped
(its readers get the error), so the next request tries again. The limit bounds what
the buffer keeps, not what readers still hold. One fetch is capped on its own
(`SEGMENT_MAX_BYTES`): a body announced or arriving bigger fails with `BodyTooLarge`.

`FetchResponse` is the ASGI response that streams a fetch to one client.

This module knows nothing of HLS, tokens or channels.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import ServiceUnavailable, UpstreamError, YtproxyError
from ..metrics import Metrics
from ..upstream import BodyTooLarge, ClientWatch

log = logging.getLogger(__name__)

T = TypeVar("T")


class Fetch:
    """One upstream body, shared by every reader."""

    def __init__(
        self,
        key: str,
        on_grow: Callable[[int], None] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.key = key
        self.max_bytes = max_bytes
        self.data: bytearray | bytes = bytearray()
        self.content_type = "application/octet-stream"
        self.length: int | None = None
        self.done = False
        self.answered = False
        self.error: YtproxyError | None = None
        self._started = asyncio.Event()
        self._changed = asyncio.Event()
        self._on_grow = on_grow

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def start(self, content_type: str, length: int | None) -> None:
        """The upstream answered: the status and headers clients get are decided.

        Raises `BodyTooLarge`, before anything is decided, when `length` is over the cap.
        """
        if self.max_bytes is not None and length is not None and length > self.max_bytes:
            raise self._too_large()
        self.content_type, self.length = content_type, length
        self.answered = True
        self._started.set()

    def feed(self, piece: bytes) -> None:
        """Append `piece`; `BodyTooLarge` (and nothing appended) if it passes the cap."""
        if self.max_bytes is not None and len(self.data) + len(piece) > self.max_bytes:
            raise self._too_large()
        if piece:
            self.data += piece
            if self._on_grow is not None:
                self._on_grow(len(piece))
            self._wake()

    def finish(self) -> None:
        self.done = True
        self._started.set()
        self._wake()

    def fail(self, error: YtproxyError) -> None:
        self.error = error
        self.finish()

    def discard(self) -> None:
        """Drop the bytes of a failed fetch; its readers get the error, not the rest."""
        self.data = bytearray()
        self._wake()

    def _too_large(self) -> BodyTooLarge:
        assert self.max_bytes is not None
        log.warning("segment %s refused: larger than SEGMENT_MAX_BYTES", self.key)
        return BodyTooLarge("The segment", self.max_bytes)

    def _wake(self) -> None:
        # Readers wait on the event they saw; a new one is armed for the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def ready(self) -> None:
        """Wait for the upstream's answer; raise its error if it failed before a byte."""
        await self._started.wait()
        if self.error is not None and not self.answered:
            raise self.error

    def final(self) -> bytes:
        """The finished body as one `bytes`, made once (in place of the growing buffer,
        so the memory is not doubled) and shared by every reader."""
        if not isinstance(self.data, bytes):
            self.data = bytes(self.data)
        return self.data

    async def body(self) -> bytes:
        """The whole body once it has arrived (so at most `max_bytes`); its error if the
        fetch failed."""
        while not self.done:
            await self._changed.wait()
        if self.error is not None:
            raise self.error
        return bytes(self.data)

    async def chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        """The body from the start, in `chunk_size` pieces, as it arrives.

        Ends early (after logging) if the fetch fails midway; the caller decides
        how to tell its client.
        """
        position = 0
        while True:
            changed = self._changed
            available = len(self.data) - position
            if available >= chunk_size or (self.done and available > 0):
                size = min(chunk_size, available)
                yield bytes(self.data[position : position + size])
                position += size
                continue
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            await changed.wait()


class SegmentBuffer:
    """Fetches by key, the finished ones kept up to a byte limit (LRU)."""

    def __init__(
        self, limit_bytes: int, metrics: Metrics, max_fetch_bytes: int | None = None
    ) -> None:
        self.limit_bytes = limit_bytes
        self.max_fetch_bytes = max_fetch_bytes
        self._metrics = metrics
        self._entries: OrderedDict[str, Fetch] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, producer: Callable[[Fetch], Awaitable[None]]) -> tuple[Fetch, bool]:
        """The fetch for `key`, starting `producer` if there is none; (fetch, started_now)."""
        fetch = self._entries.get(key)
        if fetch is not None:
            self._entries.move_to_end(key)
            return fetch, False
        fetch = Fetch(key, self._grew, self.max_fetch_bytes)
        self._entries[key] = fetch
        task = asyncio.create_task(self._run(fetch, producer), name=f"fetch {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fetch, True

    async def _run(self, fetch: Fetch, producer: Callable[[Fetch], Awaitable[None]]) -> None:
        try:
            await producer(fetch)
            fetch.finish()
        except YtproxyError as exc:
            fetch.fail(exc)
        except asyncio.CancelledError:
            fetch.fail(ServiceUnavailable("The gateway is shutting down", code="not_ready"))
            raise
        except Exception:
            log.exception("segment fetch %s failed", fetch.key)
            fetch.fail(UpstreamError("The segment could not be fetched"))
        finally:
            if fetch.error is not None:
                self._forget(fetch)
                fetch.discard()
            self._evict()

    def _grew(self, nbytes: int) -> None:
        self.size += nbytes
        self._metrics.segment_buffer_bytes.set(self.size)

    def _forget(self, fetch: Fetch) -> None:
        if self._entries.get(fetch.key) is fetch:
            del self._entries[fetch.key]
            self.size -= len(fetch.data)
            self._metrics.segment_buffer_bytes.set(self.size)

    def _evict(self) -> None:
        for key in list(self._entries):
            if self.size <= self.limit_bytes:
                break
            fetch = self._entries[key]
            if fetch.done:
                self._forget(fetch)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()
        self.size = 0
        self._metrics.segment_buffer_bytes.set(0)


class FetchResponse(Response):
    """Streams a started `Fetch` to one client; the status is already decided (200).

    If the fetch fails midway the response ends without its last message, so the
    server closes the connection and the player sees a cut, not a short "complete"
    segment. A client that disconnects stops only its own reading.
    """

    def __init__(
        self,
        fetch: Fetch,
        chunk_size: int,
        headers: dict[str, str],
        on_bytes: Callable[[int], None],
    ) -> None:
        # Response.__init__ is not called: it would render a body; this one streams.
        self.status_code = 200
        self.background = None
        self.fetch = fetch
        self.chunk_size = chunk_size
        self.extra_headers = headers
        self.on_bytes = on_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(self.extra_headers)
        headers["content-type"] = self.fetch.content_type
        if self.fetch.length is not None:
            headers["content-length"] = str(self.fetch.length)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            }
        )
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if self.fetch.done and self.fetch.error is None:
            # A buffered segment (the common case with many viewers): one message, no
            # per-chunk copies and no disconnect watcher, whose two tasks per request
            # cost more than sending what is already in memory.
            body = self.fetch.final()
            await send({"type": "http.response.body", "body": body, "more_body": False})
            self.on_bytes(len(body))
            return
        async with ClientWatch(receive, scope):
            await self._stream(send)

    async def _stream(self, send: Send) -> None:
        try:
            async for chunk in self.fetch.chunks(self.chunk_size):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.on_bytes(len(chunk))
        except YtproxyError as exc:
            log.warning("segment %s cut short: %s", self.fetch.key, exc.code)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
