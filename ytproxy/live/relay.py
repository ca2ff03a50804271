"""The relay: upstream media playlists and segments, fetched once for every viewer.

`media_playlist(channel, key)` returns a variant's current upstream playlist. It is
kept for a fraction of the target duration (`min(max(target / 2, 0.5), 3)` s) and
concurrent requests share the one fetch in flight, so the upstream sees one request
per refresh whatever the number of viewers. A 403/404/410 re-resolves the channel
once (single-flight) and retries with the new URL.

`media(channel, payload)` returns the shared `Fetch` of a segment (or key, map or
part) from the `SegmentBuffer`. Its producer streams the upstream body into the
fetch as it arrives; on 403/404/410 it re-resolves the channel once and finds the
same segment in the new playlist by its media sequence number; on a transient error
(connection, 5xx, 429) it retries with backoff within the segment's time budget,
resuming with a `Range` request from the bytes it already has.

A 401/403 on a URL far from its expiry is YouTube refusing the playback, not
expiry (`forbidden.py`): it is counted (`upstream_forbidden_total`) and re-resolves
once; refused again soon after, the channel is held `blocked` for a backoff instead
of being re-resolved on every request.

Upstream responses are released by `async with`, whatever happens. This module
does not sign URLs or rewrite playlists (`links.py`, `playlist.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from ..backoff import backoff
from ..errors import NotFound, UpstreamError
from ..flights import Flights
from ..upstream import REFUSED, retryable
from . import playlist
from .channels import Channel
from .fanout import Fetch, SegmentBuffer
from .forbidden import REASON, ForbiddenLog, is_forbidden
from .resolver import Resolution, Resolver
from .status import failure_error
from .upstream import (
    RETRY_BASE,
    RETRY_CAP,
    TransientUpstream,
    UpstreamGone,
    fetch_text,
    unreachable,
)

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..settings import Settings

log = logging.getLogger(__name__)

SEGMENT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5, sock_read=10)
_CONTENT_TYPES = {
    "ts": "video/mp2t",
    "aac": "audio/aac",
    "m4s": "video/iso.segment",
    "mp4": "video/mp4",
    "m4a": "audio/mp4",
    "vtt": "text/vtt",
}


@dataclasses.dataclass
class MediaPlaylist:
    """One fetch of an upstream media playlist, and the bodies rendered from it."""

    key: str
    text: str
    url: str
    resolution: Resolution
    fresh_until: float  # monotonic
    rendered: dict[str, str] = dataclasses.field(default_factory=dict)


class LiveRelay:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        metrics: Metrics,
        settings: Settings,
        resolver: Resolver,
    ) -> None:
        self._http = http
        self._metrics = metrics
        self._chunk_size = settings.chunk_size
        self._resolver = resolver
        self.buffer = SegmentBuffer(
            settings.segment_buffer_mb * 1024 * 1024,
            metrics,
            max_fetch_bytes=settings.segment_max_bytes,
        )
        self._playlists: dict[tuple[str, str], MediaPlaylist] = {}
        self._flights = Flights()
        self._forbidden = ForbiddenLog()

    async def close(self) -> None:
        await self._flights.close()
        await self.buffer.close()
        self._playlists.clear()

    def forget(self, channel_id: str) -> None:
        for cached in [k for k in self._playlists if k[0] == channel_id]:
            del self._playlists[cached]
        self._forbidden.forget(channel_id)

    async def media_playlist(self, channel: Channel, key: str, bandwidth: int = 0) -> MediaPlaylist:
        resolution = await self._resolver.current(channel)
        try:
            return await self._playlist_of(resolution, key, bandwidth)
        except UpstreamGone as exc:
            url = resolution.variant_url(key, bandwidth)[1]
            resolution = await self._recover(channel, exc, url, resolution.fetched_at)
            return await self._playlist_of(resolution, key, bandwidth)

    async def _recover(
        self, channel: Channel, exc: UpstreamGone, url: str, fetched_at: float
    ) -> Resolution:
        """A resolution newer than `fetched_at`, after `url` of it answered `exc`;
        raises `channel_blocked` instead when re-resolving has not helped."""
        if not is_forbidden(exc.upstream_status, url):
            return await self._resolver.refresh(channel, reason="expired", newer_than=fetched_at)
        self._metrics.upstream_forbidden.labels(channel.id).inc()
        block_for = self._forbidden.verdict(channel.id, fetched_at)
        if block_for is None:
            return await self._resolver.refresh(channel, reason="forbidden", newer_than=fetched_at)
        log.warning(
            "channel %s: upstream refused again after a fresh resolution; blocked for %.0f s",
            channel.id,
            block_for,
        )
        record = await self._resolver.block(channel, REASON, block_for)
        for cached in [k for k in self._playlists if k[0] == channel.id]:
            del self._playlists[cached]
        raise failure_error(record) from None

    async def _playlist_of(self, resolution: Resolution, key: str, bandwidth: int) -> MediaPlaylist:
        key, url = resolution.variant_url(key, bandwidth)
        slot = (resolution.channel, key)
        cached = self._playlists.get(slot)
        if (
            cached is not None
            and cached.resolution.fetched_at >= resolution.fetched_at
            and cached.fresh_until > time.monotonic()
        ):
            return cached

        async def fetch() -> MediaPlaylist:
            text, final_url = await fetch_text(
                self._http, url, kind="live_playlist", metrics=self._metrics
            )
            try:
                playlist.check(text)
            except playlist.PlaylistError:
                raise UpstreamError("The upstream sent no playlist") from None
            hold = min(max(playlist.target_duration(text) / 2, 0.5), 3.0)
            entry = MediaPlaylist(key, text, final_url, resolution, time.monotonic() + hold)
            self._playlists[slot] = entry
            return entry

        return await self._flights.run((*slot, resolution.fetched_at), fetch)

    def media(self, channel: Channel, payload: dict[str, Any]) -> Fetch:
        key = buffer_key(payload)
        fetch, _ = self.buffer.get(key, lambda f: self._produce(f, channel, payload))
        return fetch

    async def _produce(self, fetch: Fetch, channel: Channel, payload: dict[str, Any]) -> None:
        url = str(payload["u"])
        kind = str(payload.get("k", "segment"))
        budget = max(6.0, 2 * float(payload.get("d") or 0))
        deadline = time.monotonic() + budget
        remapped = False
        attempt = 0
        while True:
            try:
                await self._receive(fetch, url, kind)
                return
            except UpstreamGone as exc:
                if remapped:
                    raise _segment_gone() from exc
                url = await self._remap(channel, payload, exc, url)
                remapped = True
            except (aiohttp.ClientError, TimeoutError, TransientUpstream) as exc:
                attempt += 1
                pause = backoff(attempt - 1, base=RETRY_BASE, cap=RETRY_CAP)
                if attempt > 4 or time.monotonic() + pause > deadline:
                    log.warning(
                        "segment %s failed after %d attempts (%s)",
                        fetch.key,
                        attempt,
                        type(exc).__name__,
                    )
                    raise unreachable() from None
                await asyncio.sleep(pause)

    async def _receive(self, fetch: Fetch, url: str, kind: str) -> None:
        have = len(fetch.data)
        headers = {"Range": f"bytes={have}-"} if have else {}
        async with self._http.get(url, headers=headers, timeout=SEGMENT_TIMEOUT) as response:
            self._metrics.upstream_requests.labels("live_" + kind, str(response.status)).inc()
            status = response.status
            if status in REFUSED:
                raise UpstreamGone(status)
            if retryable(status):
                raise TransientUpstream(status)
            if status not in (200, 206) or (status == 206 and not have):
                raise UpstreamError(f"The stream's server answered {status}")
            skip = have if status == 200 else 0
            if not fetch.started:
                fetch.start(_content_type(url, kind, response), response.content_length)
            async for piece in response.content.iter_chunked(self._chunk_size):
                if skip:
                    dropped = min(skip, len(piece))
                    piece, skip = piece[dropped:], skip - dropped
                fetch.feed(piece)
            if fetch.length is not None and len(fetch.data) < fetch.length:
                raise aiohttp.ClientPayloadError("upstream body ended early")

    async def _remap(
        self, channel: Channel, payload: dict[str, Any], exc: UpstreamGone, url: str
    ) -> str:
        """The same segment's URL in a playlist of a newer resolution."""
        resolution = await self._recover(channel, exc, url, float(payload.get("f", 0)))
        if resolution.stream_id != payload.get("i"):
            raise NotFound("The stream has changed; reload the playlist", code="segment_gone")
        current = await self._playlist_of(resolution, str(payload["v"]), 0)
        kind, sequence = payload.get("k", "segment"), payload.get("s")
        for uri in playlist.uris(current.text, current.url):
            if kind == "segment" and uri.tag == playlist.SEGMENT and uri.sequence == sequence:
                return uri.url
            if kind == "map" and uri.tag == "EXT-X-MAP":
                return uri.url
            if kind == "key" and uri.tag == "EXT-X-KEY" and _same_path(uri.url, payload["u"]):
                return uri.url
        raise _segment_gone()


def _segment_gone() -> NotFound:
    return NotFound("The segment is no longer available", code="segment_gone")


def media_payload(resolution: Resolution, key: str, uri: playlist.Uri) -> dict[str, Any]:
    """What a media token carries for `uri` of the variant `key`."""
    kind = {
        "EXTINF": "segment",
        "EXT-X-KEY": "key",
        "EXT-X-SESSION-KEY": "key",
        "EXT-X-MAP": "map",
    }.get(uri.tag, "part")
    payload: dict[str, Any] = {
        "i": resolution.stream_id,
        "v": key,
        "f": resolution.fetched_at,
        "k": kind,
        "u": uri.url,
    }
    if kind == "segment":
        payload["s"] = uri.sequence
        if uri.duration:
            payload["d"] = round(uri.duration, 3)
    return payload


def buffer_key(payload: dict[str, Any]) -> str:
    """The segment buffer's key for what a media token names."""
    base = f"{payload['c']}|{payload.get('i', '')}|{payload.get('v', '')}"
    if payload.get("k", "segment") == "segment" and payload.get("s") is not None:
        return f"{base}|{payload['s']}"
    path = urlsplit(str(payload["u"])).path
    return f"{base}|{payload.get('k')}|{hashlib.sha256(path.encode()).hexdigest()[:20]}"


def _same_path(a: str, b: str) -> bool:
    return urlsplit(a).path == urlsplit(b).path


def _content_type(url: str, kind: str, response: aiohttp.ClientResponse) -> str:
    upstream = response.content_type or ""
    if upstream.startswith(("video/", "audio/")):
        return upstream
    if kind == "key":
        return "application/octet-stream"
    ext = urlsplit(url).path.rsplit(".", 1)[-1].lower()
    return _CONTENT_TYPES.get(ext, "video/mp2t")
