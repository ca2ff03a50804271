"""Talking to the stream's servers: fetching playlists, and what their answers mean.

`fetch_text(http, url, ...)` gets a playlist (master or media) through the app's one
aiohttp session, retrying transient failures (connection errors, 5xx, 429) with
backoff, and raises `UpstreamGone` for 401/403/404/410, the answers googlevideo gives
once a URL has expired or been revoked, or when it refuses the playback: the caller
decides (`relay.py`, `forbidden.py`) whether to re-resolve the channel.
A playlist is read to its end and refused past 8 MiB (`ytproxy.upstream.read_capped`).

Errors raised from here never carry the upstream URL, in their message or anywhere
else, because their messages reach clients and the URL must not. Segments are
fetched by `relay.py`, which streams them instead of reading them whole.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from ..backoff import backoff
from ..errors import UpstreamError
from ..metrics import Metrics
from ..upstream import REFUSED, read_capped, retryable

log = logging.getLogger(__name__)

# Retry delays for live upstream requests: short, a segment's time budget is seconds.
RETRY_BASE = 0.25
RETRY_CAP = 2.0

PLAYLIST_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5, sock_read=10)
_MAX_PLAYLIST_BYTES = 8 * 1024 * 1024


class UpstreamGone(UpstreamError):
    """The upstream URL answered 401, 403, 404 or 410: expired, revoked, refused, or gone."""

    default_code = "upstream_gone"

    def __init__(self, status: int) -> None:
        super().__init__(f"The stream's server refused the request ({status})")
        self.upstream_status = status


class TransientUpstream(Exception):
    """An upstream answer worth retrying (5xx, 429); internal to the relay."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.upstream_status = status


def unreachable() -> UpstreamError:
    return UpstreamError("The stream's server could not be reached", code="upstream_error")


async def fetch_text(
    http: aiohttp.ClientSession,
    url: str,
    *,
    kind: str,
    metrics: Metrics,
    attempts: int = 3,
) -> tuple[str, str]:
    """`(text, final_url)` of a playlist; `UpstreamGone` on 401/403/404/410."""
    for attempt in range(attempts):
        try:
            async with http.get(url, timeout=PLAYLIST_TIMEOUT) as response:
                metrics.upstream_requests.labels(kind, str(response.status)).inc()
                if response.status in REFUSED:
                    raise UpstreamGone(response.status)
                if retryable(response.status):
                    raise TransientUpstream(response.status)
                if response.status != 200:
                    raise UpstreamError(
                        f"The stream's server answered {response.status}", code="upstream_error"
                    )
                body = await read_capped(
                    response, _MAX_PLAYLIST_BYTES, what="The stream's playlist"
                )
                return body.decode("utf-8", errors="replace"), str(response.url)
        except (aiohttp.ClientError, TimeoutError, TransientUpstream) as exc:
            log.info("%s fetch failed (attempt %d): %s", kind, attempt + 1, _describe(exc))
            if attempt == attempts - 1:
                raise unreachable() from None
            await asyncio.sleep(backoff(attempt, base=RETRY_BASE, cap=RETRY_CAP))
    raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    """An exception for the log, without the URL aiohttp puts in its messages."""
    if isinstance(exc, TransientUpstream):
        return str(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__} {exc.status}"
    return type(exc).__name__
