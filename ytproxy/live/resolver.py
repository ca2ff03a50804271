"""Resolving a channel to its current live HLS stream, cached and single-flight.

`pick_stream(info)` makes the YouTube-specific choices on yt-dlp's info dict: a live
(`live_status == "is_live"`) entry with HLS formats (`protocol` `m3u8_native`); the
master is the formats' common `manifest_url` (YouTube's `hls_variant` manifest),
else one is built from the formats' own media playlist URLs and `tbr`, `width`,
`height`, `vcodec`, `acodec`, `fps`. `expiry_of(url)` reads googlevideo's expiry
(`expire=` query parameter or `/expire/<ts>/` path segment).

`Resolver` caches a `Resolution` per channel (and per channel URL, so an edited URL
is a new entry) with a TTL of `min(CACHE_TTL, earliest expiry - margin)`, shares one
extraction between all concurrent callers (across instances through the cache's
single-flight), and remembers failures briefly: an offline channel is not asked for
again for `offline_ttl` seconds, any other failure for `error_ttl`, and a channel that
goes live later is picked up once that entry expires (or is invalidated).

It does not fetch media playlists or segments (`relay.py`) and does not decide when
to refresh ahead of expiry (`service.py` does, for channels with viewers).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ExtractionError, ServiceUnavailable, YtproxyError
from . import playlist
from .channels import Channel
from .playlist import PlaylistError, VariantFormat
from .upstream import fetch_text

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)

OFFLINE_CODES = frozenset({"video_unavailable", "live_not_started", "private_video", "not_live"})
MIN_TTL = 2.0
_EXPIRE_PATH = re.compile(r"/expire/(\d+)(?:/|$)")
_ITAG = re.compile(r"(?:/itag/|[?&]itag=)(\d+)")


class NotLive(Exception):
    """yt-dlp found the channel, but not a live HLS stream (ended, upcoming, a VOD)."""


def expiry_of(url: str) -> float | None:
    """The Unix time a googlevideo-style URL expires at, if it says."""
    parts = urlsplit(url)
    for value in parse_qs(parts.query).get("expire", []):
        if value.isdigit():
            return float(value)
    match = _EXPIRE_PATH.search(parts.path)
    return float(match.group(1)) if match else None


@dataclasses.dataclass(frozen=True)
class StreamChoice:
    stream_id: str
    master_url: str | None
    formats: list[VariantFormat]
    expires_at: float | None


def pick_stream(info: dict[str, Any]) -> StreamChoice:
    status = info.get("live_status")
    if status not in (None, "is_live") or (status is None and info.get("is_live") is False):
        raise NotLive(status or "not_live")
    formats = info.get("formats") or ([info] if info.get("url") else [])
    hls = [
        f
        for f in formats
        if str(f.get("protocol") or "").startswith("m3u8")
        and f.get("url")
        and not (f.get("vcodec") == "none" and f.get("acodec") == "none")
    ]
    if not hls:
        raise NotLive("no_hls_formats")
    manifests = {f["manifest_url"] for f in hls if f.get("manifest_url")}
    master_url = manifests.pop() if len(manifests) == 1 else None
    variants: dict[str, VariantFormat] = {}
    for f in hls:
        variants.setdefault(
            f["url"],
            VariantFormat(
                url=f["url"],
                bandwidth=int(float(f.get("tbr") or 0) * 1000),
                width=_int_or_none(f.get("width")),
                height=_int_or_none(f.get("height")),
                codecs=_codecs(f),
                frame_rate=float(f["fps"]) if f.get("fps") else None,
            ),
        )
    urls = [u for u in (master_url, *variants) if u]
    expiries = [e for e in map(expiry_of, urls) if e is not None]
    return StreamChoice(
        stream_id=str(info.get("id") or ""),
        master_url=master_url,
        formats=list(variants.values()),
        expires_at=min(expiries) if expiries else None,
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _codecs(f: dict[str, Any]) -> str | None:
    found = [str(f[k]) for k in ("vcodec", "acodec") if f.get(k) and f[k] != "none"]
    return ",".join(found) or None


def variant_key(uri: playlist.Uri) -> str:
    """A key for a media playlist that survives re-resolution: the itag when the URL
    has one (YouTube), else its position in the master."""
    match = _ITAG.search(uri.url)
    return f"i{match.group(1)}" if match else f"p{uri.index}"


def resolution_ttl(cache_ttl: float, fetched_at: float, expires_at: float | None) -> float:
    if expires_at is None:
        return float(cache_ttl)
    lifetime = expires_at - fetched_at
    margin = min(300.0, max(2.0, lifetime * 0.25))
    return max(MIN_TTL, min(float(cache_ttl), lifetime - margin))


@dataclasses.dataclass(frozen=True)
class Resolution:
    """A channel's resolved stream: the upstream master and its media playlists."""

    channel: str
    stream_id: str
    master: str  # upstream master playlist text
    base_url: str  # what relative URIs in `master` are relative to
    variants: dict[str, str]  # variant key -> upstream media playlist URL
    bandwidths: dict[str, int]
    fetched_at: float  # Unix time
    expires_at: float | None
    ttl: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resolution:
        return cls(**data)

    @classmethod
    def from_cache(cls, data: Any) -> Resolution | None:
        """A cached entry, or None if it is absent or from another version's layout."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(**data)
        except TypeError:
            return None

    def variant_url(self, key: str, bandwidth_hint: int = 0) -> tuple[str, str]:
        """`(key, url)` of a variant; the nearest by bandwidth if `key` is gone."""
        if key in self.variants:
            return key, self.variants[key]
        if not self.variants:
            raise ServiceUnavailable("The channel has no playable stream", code="channel_offline")
        nearest = min(self.variants, key=lambda k: abs(self.bandwidths.get(k, 0) - bandwidth_hint))
        return nearest, self.variants[nearest]

    def quality(self) -> list[dict[str, Any]]:
        """The master's variants as people read them (for /api/stream)."""
        out = []
        for uri in playlist.uris(self.master, self.base_url):
            if uri.tag == "EXT-X-STREAM-INF":
                out.append(
                    {
                        "bandwidth": _int_or_none(_number(uri.attributes.get("BANDWIDTH"))),
                        "resolution": uri.attributes.get("RESOLUTION"),
                        "codecs": uri.attributes.get("CODECS"),
                        "frame_rate": _number(uri.attributes.get("FRAME-RATE")),
                    }
                )
        return out


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def make_resolution(
    channel_id: str,
    choice: StreamChoice,
    master: str,
    base_url: str,
    fetched_at: float,
    cache_ttl: float,
) -> Resolution:
    variants: dict[str, str] = {}
    bandwidths: dict[str, int] = {}
    expiries = [choice.expires_at] if choice.expires_at else []
    for uri in playlist.uris(master, base_url):
        if uri.tag not in playlist.PLAYLIST_TAGS:
            continue
        key = variant_key(uri)
        if key in variants:
            key = f"{key}-{uri.index}"
        variants[key] = uri.url
        bandwidths[key] = int(_number(uri.attributes.get("BANDWIDTH")) or 0)
        expiry = expiry_of(uri.url)
        if expiry is not None:
            expiries.append(expiry)
    expires_at = min(expiries) if expiries else None
    return Resolution(
        channel=channel_id,
        stream_id=choice.stream_id,
        master=master,
        base_url=base_url,
        variants=variants,
        bandwidths=bandwidths,
        fetched_at=fetched_at,
        expires_at=expires_at,
        ttl=resolution_ttl(cache_ttl, fetched_at, expires_at),
    )


class Resolver:
    offline_ttl = 30.0
    error_ttl = 10.0

    def __init__(self, services: Services) -> None:
        self._svc = services

    def _key(self, channel: Channel) -> str:
        return f"live:stream:{channel.id}:{self._svc.signer.digest(channel.url)[:16]}"

    async def peek(self, channel: Channel) -> Resolution | None:
        """The cached resolution, if any; never extracts."""
        return Resolution.from_cache(await self._svc.cache.get(self._key(channel)))

    async def peek_failure(self, channel: Channel) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._svc.cache.get(self._key(channel) + ":failed")
        return found

    async def current(self, channel: Channel) -> Resolution:
        """The cached resolution, or a new one (one extraction for all callers)."""
        cached = Resolution.from_cache(await self._svc.cache.get(self._key(channel)))
        if cached is not None:
            self._svc.metrics.cache_hits.labels("live_stream").inc()
            return cached
        failure = await self.peek_failure(channel)
        if failure is not None:
            self._svc.metrics.cache_hits.labels("live_stream").inc()
            raise failure_error(failure)
        self._svc.metrics.cache_misses.labels("live_stream").inc()
        return await self._flight(channel, "cold", newer_than=None)

    async def refresh(self, channel: Channel, *, reason: str, newer_than: float) -> Resolution:
        """A resolution fetched after `newer_than`: the cached one if it is, else a new one."""
        return await self._flight(channel, reason, newer_than=newer_than)

    async def invalidate(self, channel: Channel) -> None:
        await self._svc.cache.delete(self._key(channel))
        await self._svc.cache.delete(self._key(channel) + ":failed")

    async def _flight(self, channel: Channel, reason: str, newer_than: float | None) -> Resolution:
        key = self._key(channel)
        data = await self._svc.cache.single_flight(
            f"{key}:resolve",
            lambda: self._produce(channel, reason, newer_than),
            lock_ttl=self._svc.settings.ytdlp_timeout * 2,
        )
        return Resolution.from_json(data)

    async def _produce(
        self, channel: Channel, reason: str, newer_than: float | None
    ) -> dict[str, Any]:
        cache, key = self._svc.cache, self._key(channel)
        cached = Resolution.from_cache(await cache.get(key))
        if cached is not None and (newer_than is None or cached.fetched_at > newer_than):
            return cached.to_json()  # another caller resolved it while we were on our way
        failure = await self.peek_failure(channel)
        if failure is not None:
            raise failure_error(failure)
        metrics = self._svc.metrics
        metrics.live_resolutions.labels(channel.id, reason).inc()
        fetched_at = time.time()
        try:
            info = await self._svc.extractor.extract(channel.url, lane="live")
            choice = pick_stream(info)
            master, base_url = await self._master(choice)
        except ExtractionError as exc:
            await self._remember_failure(channel, exc.code)
            raise failure_error({"code": exc.code}) from None
        except NotLive as exc:
            await self._remember_failure(channel, "not_live", str(exc))
            raise failure_error({"code": "not_live"}) from None
        except YtproxyError as exc:
            await self._remember_failure(channel, exc.code)
            raise failure_error({"code": exc.code}) from None
        except Exception:
            # A resolution runs apart from any request (a shared flight, a watcher):
            # this is its outer edge, and an unexpected error must not become a 500.
            log.exception("resolving channel %s failed unexpectedly", channel.id)
            await self._remember_failure(channel, "extraction_failed")
            raise failure_error({"code": "extraction_failed"}) from None
        resolution = make_resolution(
            channel.id, choice, master, base_url, fetched_at, self._svc.settings.cache_ttl
        )
        data = resolution.to_json()
        await cache.set(key, data, resolution.ttl)
        metrics.channel_up.labels(channel.id).set(1)
        log.info(
            "channel %s resolved (%s): %d variant(s), cached %.0fs",
            channel.id,
            reason,
            len(resolution.variants),
            resolution.ttl,
        )
        return data

    async def _master(self, choice: StreamChoice) -> tuple[str, str]:
        """The upstream master (fetched), else one built from the formats."""
        if choice.master_url:
            try:
                text, final_url = await fetch_text(
                    self._svc.http,
                    choice.master_url,
                    kind="live_master",
                    metrics=self._svc.metrics,
                )
                playlist.check(text)
            except (YtproxyError, PlaylistError) as exc:
                log.info("master playlist unusable (%s); building one from the formats", exc)
            else:
                if playlist.is_master(text):
                    return text, final_url
                return playlist.single_variant_master(final_url), ""
        if not choice.formats:
            raise NotLive("no_hls_formats")
        return playlist.build_master(choice.formats), ""

    async def _remember_failure(self, channel: Channel, code: str, detail: str = "") -> None:
        offline = code in OFFLINE_CODES
        ttl = self.offline_ttl if offline else self.error_ttl
        status = "offline" if offline else "error"
        record = {"code": code, "status": status, "checked_at": time.time()}
        await self._svc.cache.set(self._key(channel) + ":failed", record, ttl)
        await self._svc.cache.delete(self._key(channel))
        self._svc.metrics.channel_up.labels(channel.id).set(0)
        log.info(
            "channel %s is %s (%s%s)",
            channel.id,
            record["status"],
            code,
            f": {detail}" if detail else "",
        )


def failure_error(failure: dict[str, Any]) -> ServiceUnavailable:
    """The error a client gets for a channel that failed to resolve; never upstream text."""
    code = str(failure.get("code", "extraction_failed"))
    if code in OFFLINE_CODES:
        return ServiceUnavailable(
            "The channel is not live right now", code="channel_offline", retry_after=30
        )
    return ServiceUnavailable(
        f"The channel could not be resolved ({code}); try again shortly",
        code="channel_unavailable",
        retry_after=10,
    )
