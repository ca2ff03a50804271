"""The ASGI response that streams a download and cleans up whatever happens.

Every download body (`RangedRelay`, `FragmentRelay`, `MergedStream`) has the same
life: `open()` does the upstream work that decides the status and headers, `chunks()`
yields the body, `aclose()` releases the upstream connection or the ffmpeg process.
`DownloadResponse` runs that life:

- the transfer is registered first (429 when `MAX_CONCURRENT_DOWNLOADS` are running,
  or `MAX_DOWNLOADS_PER_CLIENT` from this client);
- `open()` runs before `http.response.start`, so its errors (403, 404, 416, 502...)
  are rendered as JSON like any other;
- the body is pumped inside `upstream.ClientWatch`: uvicorn silently drops what
  is sent to a client that has gone, so without the watcher a dead download would keep
  reading the upstream to the end;
- the request's task is the transfer's `task`: cancelling it (shutdown, the end of the
  merge a part belongs to, or the registry's watchdog ending a client that stopped
  reading) ends the body like a disconnect;
- `aclose()` and the transfer's end run in `finally` — not in a Starlette
  `BackgroundTask`, which is skipped when the client disconnects;
- an error after the first byte can only end the stream: the response is left
  incomplete, and uvicorn closes the connection, so the client sees a short body (or
  a chunked body without its final chunk) rather than a file that looks whole.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import YtproxyError
from ..upstream import ClientWatch
from ..web import error_response
from .transfers import Transfer

log = logging.getLogger(__name__)


class Head(NamedTuple):
    """What a body's `open()` decided: the status and headers to answer with."""

    status: int
    headers: dict[str, str]


class Body(Protocol):
    mode: str

    async def open(self) -> Head: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class DownloadResponse(Response):
    """A Starlette response that runs one download body (see the module docstring)."""

    def __init__(
        self,
        request: Request,
        make_body: Callable[[Transfer], Body],
        begin: Callable[[], Transfer],
    ) -> None:
        # Not Response.__init__: it renders an empty body and its headers, which this
        # response never sends (`__call__` sends what the body's `open()` decides).
        # `headers` reads as empty (what is sent is decided by the body's `open()`).
        self.status_code = 200
        self.background = None
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._request = request
        self._make_body = make_body
        self._begin = begin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head_only = scope["method"] == "HEAD"
        try:
            transfer = self._begin()
        except YtproxyError as exc:
            await error_response(self._request, exc)(scope, receive, send)
            return
        body = self._make_body(transfer)
        task = transfer.task = asyncio.current_task()
        assert task is not None
        try:
            async with ClientWatch(receive, scope, task) as watch:
                await self._pump(body, transfer, send, head_only)
            if watch.left:
                transfer.outcome = "aborted"
        except asyncio.CancelledError:
            # The registry ended it (a stalled client, the end of its merge, shutdown).
            task.uncancel()
            transfer.outcome = transfer.stopped or "cancelled"
        except Exception as error:  # answered or logged, never raised
            if not transfer.started:
                if not isinstance(error, YtproxyError):
                    log.error("download %s failed to open", transfer.id, exc_info=error)
                    error = YtproxyError("Internal error; it has been logged")
                await error_response(self._request, error)(scope, receive, send)
                transfer.outcome = "rejected"
            else:
                transfer.outcome = "failed"
                log.warning("download %s ended early: %s", transfer.id, _describe(error))
        finally:
            await body.aclose()
            transfer.end()

    @staticmethod
    async def _pump(body: Body, transfer: Transfer, send: Send, head_only: bool) -> None:
        head = await body.open()
        headers = list(_encoded(tuple(head.headers.items())))
        await send({"type": "http.response.start", "status": head.status, "headers": headers})
        length = _length(head)
        transfer.start(length)
        if head_only:
            await send({"type": "http.response.body", "body": b""})
            transfer.outcome = "completed"
            return
        # With a known length the last block ends the response (one message fewer).
        sent, done = 0, False
        async for chunk in body.chunks():
            if done:
                break  # more than Content-Length said: never sent (a relay's bug)
            sent += len(chunk)
            done = sent == length
            await send({"type": "http.response.body", "body": chunk, "more_body": not done})
            transfer.sent(len(chunk))
        if not done:
            await send({"type": "http.response.body", "body": b""})
        transfer.outcome = "completed"


@functools.lru_cache(maxsize=1024)  # the same for every whole download of a file
def _encoded(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
    )


def _length(head: Head) -> int | None:
    value = head.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def _describe(error: BaseException) -> str:
    if isinstance(error, YtproxyError):
        return f"{error.code}: {error.message}"
    return repr(error)
