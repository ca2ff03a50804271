"""One format's upstream: its current URL, the requests sent to it, and its renewal.

`Upstream` holds the format's source record (URL, headers, protocol) and sends the
requests of a download, counting them in `upstream_requests{kind="download"}`: the
ranged pieces of a file (`get_piece`) through the piece client (`ytproxy.pieces`), and
everything else — and the pieces too when `GLOBAL_PROXY` is set, as the piece client
connects only directly — through the app's one aiohttp session. When the upstream
says the URL is dead (403/404/410) and the relay decides it has expired, `renew()`
re-extracts the video (`Sources.load(newer_than=...)`, single-flight, so a hundred
downloads of one video share one extraction) and swaps in the new URL.

`Attempts` is the retry budget of one transfer: failures without progress are
counted and delayed with backoff, and progress resets the count, so a long download
survives any number of spread-out drops but a dead upstream ends it quickly.

This module does not read bodies or decide what a status means for a transfer; the
relays do.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from ..backoff import backoff
from ..errors import NotFound, UpstreamError
from ..pieces import RequestHeaders
from ..upstream import PieceResponse, expired

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..pieces import PieceClient
    from ..sources import Sources

log = logging.getLogger(__name__)

# Failures in a row (without a byte of progress) before a transfer gives up.
MAX_FAILURES = 6
# Re-extractions in a row without progress: a fresh URL that fails at once will not
# be fixed by a third extraction.
MAX_RENEWALS = 2
_BACKOFF_BASE = 0.2
_BACKOFF_MAX = 3.0
R = TypeVar("R", aiohttp.ClientResponse, PieceResponse)
# Errors that mean "the connection or the body broke": resume from the byte reached.
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


class Upstream:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        metrics: Metrics,
        sources: Sources,
        source_url: str,
        fmt: dict[str, Any],
        *,
        locate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        pieces: PieceClient | None = None,
    ) -> None:
        """`fmt` is the record fetched from (its `url`, `http_headers`, `fetched_at`);
        `locate` finds its fresh copy in re-extracted sources (a format by its id unless
        given: the subtitle relay locates a track); `pieces` sends `get_piece`'s requests
        (`pieces.PieceClient`; the session does when there is none)."""
        self._http = http
        self._pieces = pieces
        self._metrics = metrics
        self._sources = sources
        self.source_url = source_url
        self.fmt = fmt  # and its request headers (the setter)
        self.renewals = 0
        # Not `locate or self._format_in`: a bound method of its own would make every
        # download's upstream a reference cycle, left for the garbage collector.
        self._locate = locate

    @property
    def fmt(self) -> dict[str, Any]:
        return self._fmt

    @fmt.setter
    def fmt(self, fmt: dict[str, Any]) -> None:
        self._fmt = fmt
        headers = {str(k): str(v) for k, v in (fmt.get("http_headers") or {}).items()}
        # The app's session decompresses by default; media must arrive byte-exact.
        headers["Accept-Encoding"] = "identity"
        self._headers = headers
        self._piece_headers: RequestHeaders | None = None  # encoded at the first piece

    @property
    def format_id(self) -> str:
        return str(self.fmt.get("format_id", ""))

    @property
    def url(self) -> str:
        return str(self.fmt["url"])

    def looks_expired(self) -> bool:
        """True when the URL's own `expire=` (query or path) is in the past."""
        return expired(self.url)

    async def get(
        self, url: str | None = None, *, byte_range: tuple[int, int | None] | None = None
    ) -> aiohttp.ClientResponse:
        """Send a GET (the format's URL unless `url`); the caller must release the response."""
        return await self._counted(
            self._http.get(url or self.url, headers=self._with_range(byte_range))
        )

    async def get_piece(self, byte_range: tuple[int, int | None]) -> PieceResponse:
        """A ranged GET of the format's URL, through the piece client when there is one
        (no `GLOBAL_PROXY`), else the session. Either fails a head or body read that has
        waited 30 s (the client's stall timeout, the session's read timeout). The caller
        must release the response."""
        if self._pieces is None:
            return await self.get(byte_range=byte_range)
        if self._piece_headers is None:
            try:
                self._piece_headers = _encoded(tuple(self._headers.items()))
            except ValueError:  # a line break in a header yt-dlp gave
                raise UpstreamError("This format's request headers cannot be sent") from None
        return await self._counted(self._pieces.get(self.url, self._piece_headers, byte_range))

    async def _counted(self, sending: Awaitable[R]) -> R:
        """The response `sending` gives, counted by its status (or as an error)."""
        try:
            response = await sending
        except NETWORK_ERRORS:
            self._count("error")
            raise
        self._count(str(response.status))
        return response

    def _with_range(self, byte_range: tuple[int, int | None] | None) -> dict[str, str]:
        if byte_range is None:
            return dict(self._headers)
        first, last = byte_range
        return {**self._headers, "Range": f"bytes={first}-{'' if last is None else last}"}

    async def renew(self) -> None:
        """Re-extract the video and take this format's fresh URL."""
        if self.renewals >= MAX_RENEWALS:
            raise UpstreamError("The upstream keeps refusing this format's fresh URLs")
        self.renewals += 1
        log.info("format %s: upstream URL refused, re-extracting the source", self.format_id)
        refused_copy = float(self.fmt.get("fetched_at") or 0)
        sources = await self._sources.load(self.source_url, newer_than=refused_copy)
        self.fmt = self._locate(sources) if self._locate else self._format_in(sources)

    def _format_in(self, sources: dict[str, Any]) -> dict[str, Any]:
        fmt = self._sources.find(sources, self.format_id)
        if fmt is None:
            raise NotFound(
                "This format is no longer offered for the video", code="format_not_found"
            )
        return fmt

    def progressed(self) -> None:
        self.renewals = 0

    def _count(self, status: str) -> None:
        self._metrics.upstream_requests.labels("download", status).inc()


@functools.lru_cache(maxsize=64)  # a format's headers, the same for each of its downloads
def _encoded(headers: tuple[tuple[str, str], ...]) -> RequestHeaders:
    return RequestHeaders(dict(headers))


class Attempts:
    """Failures without progress, with exponential backoff and jitter between them."""

    def __init__(self, limit: int = MAX_FAILURES) -> None:
        self.limit = limit
        self.failures = 0

    async def failed(self, reason: str) -> None:
        self.failures += 1
        if self.failures >= self.limit:
            raise UpstreamError(f"The upstream failed {self.failures} times in a row: {reason}")
        delay = backoff(self.failures - 1, base=_BACKOFF_BASE, cap=_BACKOFF_MAX)
        log.info("upstream failure %d (%s); retrying in %.1f s", self.failures, reason, delay)
        await asyncio.sleep(delay)

    def progressed(self) -> None:
        self.failures = 0


def release(response: PieceResponse | None) -> None:
    """Give the connection back, or close it if the body was not read to the end."""
    if response is None:
        return
    if response.content.at_eof():
        response.release()
    else:
        # A half-read body leaves the connection unusable: close the socket now, so
        # the upstream stops sending at once.
        response.close()


async def read_block(response: PieceResponse, want: int) -> tuple[bytes, BaseException | bool]:
    """Up to `want` bytes of the body: what is already buffered (waiting only while
    nothing is), as it arrived, without copying it into a block of its own. An empty
    result says why the body ended: `True` for a clean EOF (the end of an unsized body,
    or a cut one), or the error. Every byte returned before an end was counted by the
    caller, so a resume starts exactly where they end."""
    try:
        data = await response.content.read(want)
    except NETWORK_ERRORS as exc:
        return b"", exc
    return (data, False) if data else (b"", True)
