"""Resolving a channel to its current live HLS stream, cached and single-flight.

`info.pick_stream(info)` reads yt-dlp's info dict (live or not, which formats); this
module caches what it picked and fetches the master.

`Resolver` caches a `Resolution` per channel (and per channel URL, so an edited URL is a
new entry) with a TTL of `min(CACHE_TTL, earliest expiry - margin)`, shares one
extraction between all concurrent callers (across instances through the cache's single-
flight), and remembers why a channel is not live, as its status: `upcoming` (with
`starts_at`, from yt-dlp's `live_status: is_upcoming` and `release_timestamp`), `ended`
(`post_live`, `was_live`), `offline` (nothing live, or the video is gone), `blocked`
(YouTube refuses the stream: the relay calls `block`, see `forbidden.py`) or `error`
(see `status.py`), and the next request after that asks yt-dlp again. For the guide
(`guide.py`), a `Resolution` keeps the live's title (yt-dlp's `fulltitle`), trimmed
description and start (`release_timestamp`, else `timestamp`), and the failure record of
an upcoming or ended live its title.

When yt-dlp reports `available_at` (Unix time) on the formats, googlevideo refuses them
until then: the resolution waits for it (at most `MAX_AVAILABLE_WAIT` s) before its
first fetch, and keeps it as `Resolution.available_at`.

It does not fetch media playlists or segments (`relay.py`) and does not decide when to
refresh ahead of expiry (`service.py` does, for channels with viewers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ExtractionError, ServiceUnavailable, YtproxyError
from ..upstream import expiry_of
from . import playlist, streams
from .channels import Channel
from .info import NotLive, StreamChoice, int_or_none, pick_stream
from .playlist import PlaylistError
from .status import STATUS_OF_CODE, STATUS_TTL, STATUSES, failure_error, upcoming_recheck
from .upstream import fetch_text

if TYPE_CHECKING:
    import aiohttp

    from ..cache import Cache
    from ..extractor import Extractor
    from ..metrics import Metrics
    from ..settings import Settings
    from ..signing import Signer

log = logging.getLogger(__name__)

# yt-dlp returns an upcoming live's info dict (live_status, release_timestamp) instead
# of raising "This live event will begin in ..." with this option.
LIVE_OPTIONS = {"ignore_no_formats_error": True}
MIN_TTL = 2.0
MAX_AVAILABLE_WAIT = 15.0
_ITAG = re.compile(r"(?:/itag/|[?&]itag=)(\d+)")


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
    available_at: float | None = None  # googlevideo refuses the URLs before this
    title: str = ""  # the live's, for the guide
    description: str = ""  # trimmed to DESCRIPTION_LIMIT
    started_at: float | None = None  # when the live began, as yt-dlp reports it

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
                        "bandwidth": int_or_none(_number(uri.attributes.get("BANDWIDTH"))),
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
        available_at=choice.available_at,
        title=choice.title,
        description=choice.description,
        started_at=choice.started_at,
    )


class Resolver:
    def __init__(
        self,
        cache: Cache,
        extractor: Extractor,
        http: aiohttp.ClientSession,
        metrics: Metrics,
        signer: Signer,
        settings: Settings,
    ) -> None:
        self._cache = cache
        self._extractor = extractor
        self._http = http
        self._metrics = metrics
        self._signer = signer
        self._settings = settings

    def _key(self, channel: Channel) -> str:
        return f"live:stream:{channel.id}:{self._signer.digest(channel.url)[:16]}"

    async def peek(self, channel: Channel) -> Resolution | None:
        """The cached resolution, if any; never extracts."""
        return Resolution.from_cache(await self._cache.get(self._key(channel)))

    async def peek_failure(self, channel: Channel) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._cache.get(self._key(channel) + ":failed")
        return found

    async def current(self, channel: Channel) -> Resolution:
        """The cached resolution, or a new one (one extraction for all callers)."""
        cached = Resolution.from_cache(await self._cache.get(self._key(channel)))
        if cached is not None:
            self._metrics.cache_hits.labels("live_stream").inc()
            return cached
        failure = await self.peek_failure(channel)
        if failure is not None:
            self._metrics.cache_hits.labels("live_stream").inc()
            raise failure_error(failure)
        self._metrics.labelled(self._metrics.cache_misses, "live_stream").inc()
        return await self._flight(channel, "cold", newer_than=None)

    async def refresh(self, channel: Channel, *, reason: str, newer_than: float) -> Resolution:
        """A resolution fetched after `newer_than`: the cached one if it is, else a new one."""
        return await self._flight(channel, reason, newer_than=newer_than)

    async def block(self, channel: Channel, reason: str, ttl: float) -> dict[str, Any]:
        """Hold `channel` as `blocked` (why: `reason`) for `ttl` seconds: until then every
        request gets `channel_blocked` (or the slate) and nothing is extracted."""
        return await self._remember_failure(channel, "blocked", reason, ttl=ttl)

    async def invalidate(self, channel: Channel) -> None:
        await self._cache.delete(self._key(channel))
        await self._cache.delete(self._key(channel) + ":failed")

    async def _flight(self, channel: Channel, reason: str, newer_than: float | None) -> Resolution:
        key = self._key(channel)
        data = await self._cache.single_flight(
            f"{key}:resolve",
            lambda: self._produce(channel, reason, newer_than),
            lock_ttl=self._settings.ytdlp_timeout * 2,
        )
        return Resolution.from_json(data)

    async def _produce(
        self, channel: Channel, reason: str, newer_than: float | None
    ) -> dict[str, Any]:
        cache, key = self._cache, self._key(channel)
        cached = Resolution.from_cache(await cache.get(key))
        if cached is not None and (newer_than is None or cached.fetched_at > newer_than):
            return cached.to_json()  # another caller resolved it while we were on our way
        failure = await self.peek_failure(channel)
        if failure is not None:
            raise failure_error(failure)
        metrics = self._metrics
        metrics.live_resolutions.labels(channel.id, reason).inc()
        fetched_at = time.time()
        try:
            info = await self._live_info(channel)
            choice = pick_stream(info)
            await wait_until_available(choice.available_at)
            master, base_url = await self._master(choice)
        except ExtractionError as exc:
            status = STATUS_OF_CODE.get(exc.code, "error")
            raise failure_error(await self._remember_failure(channel, status, exc.code)) from None
        except NotLive as exc:
            record = await self._remember_failure(
                channel, exc.status, exc.detail, starts_at=exc.starts_at, title=exc.title
            )
            raise failure_error(record) from None
        except YtproxyError as exc:
            raise failure_error(await self._remember_failure(channel, "error", exc.code)) from None
        except Exception:
            # A resolution runs apart from any request (a shared flight, a watcher):
            # this is its outer edge, and an unexpected error must not become a 500.
            log.exception("resolving channel %s failed unexpectedly", channel.id)
            record = await self._remember_failure(channel, "error", "extraction_failed")
            raise failure_error(record) from None
        resolution = make_resolution(
            channel.id, choice, master, base_url, fetched_at, self._settings.cache_ttl
        )
        data = resolution.to_json()
        await cache.set(key, data, resolution.ttl)
        metrics.channel_up.labels(channel.id).set(1)
        self._set_status(channel, "live")
        log.info(
            "channel %s resolved (%s): %d variant(s), cached %.0fs",
            channel.id,
            reason,
            len(resolution.variants),
            resolution.ttl,
        )
        return data

    async def _live_info(self, channel: Channel) -> dict[str, Any]:
        """yt-dlp's info dict of the channel's live; for a listing channel (its
        `/streams` tab, `pick`, `expand`) of the live chosen from the listing."""
        url = channel.url
        if streams.is_listing(channel):
            lives = await streams.list_lives(self._extractor, channel)
            chosen = streams.choose(lives, channel.pick)
            if isinstance(chosen, streams.NoLive):
                raise NotLive(chosen.status, chosen.code, chosen.starts_at)
            url = chosen.url
        return await self._extractor.extract(url, lane="live", options=LIVE_OPTIONS)

    async def _master(self, choice: StreamChoice) -> tuple[str, str]:
        """The upstream master (fetched), else one built from the formats."""
        if choice.master_url:
            try:
                text, final_url = await fetch_text(
                    self._http,
                    choice.master_url,
                    kind="live_master",
                    metrics=self._metrics,
                )
                playlist.check(text)
            except (YtproxyError, PlaylistError) as exc:
                log.info("master playlist unusable (%s); building one from the formats", exc)
            else:
                if playlist.is_master(text):
                    return text, final_url
                return playlist.single_variant_master(final_url), ""
        if not choice.formats:
            raise NotLive("offline", "no_hls_formats")
        return playlist.build_master(choice.formats), ""

    def _set_status(self, channel: Channel, status: str) -> None:
        gauge = self._metrics.channel_status
        for name in STATUSES:
            gauge.labels(channel.id, name).set(1 if name == status else 0)

    async def _remember_failure(
        self,
        channel: Channel,
        status: str,
        code: str,
        *,
        starts_at: float | None = None,
        ttl: float | None = None,
        title: str | None = None,
    ) -> dict[str, Any]:
        """Record that `channel` is not live (`status`, why) for as long as that is
        believed; the next request after that asks yt-dlp again."""
        now = time.time()
        if ttl is None:
            ttl = (
                upcoming_recheck(starts_at, now)
                if status == "upcoming"
                else STATUS_TTL.get(status, STATUS_TTL["error"])
            )
        record = {
            "code": code,
            "status": status,
            "starts_at": starts_at,
            "title": title,
            "checked_at": now,
            "recheck_at": now + ttl,
        }
        await self._cache.set(self._key(channel) + ":failed", record, ttl)
        await self._cache.delete(self._key(channel))
        self._metrics.channel_up.labels(channel.id).set(0)
        self._set_status(channel, status)
        log.info("channel %s is %s (%s); asking again in %.0f s", channel.id, status, code, ttl)
        return record


async def wait_until_available(available_at: float | None) -> None:
    """Sleep until `available_at` (Unix time), for at most `MAX_AVAILABLE_WAIT` s."""
    if available_at is not None:
        ahead = available_at - time.time()
        if ahead > 0:
            log.info("stream available in %.1f s; waiting", ahead)
            await asyncio.sleep(min(ahead, MAX_AVAILABLE_WAIT))


async def channel_rows(channels: Iterable[Channel], resolver: Resolver) -> list[dict[str, Any]]:
    """Each channel's last resolution as the resolver cached it (the shape of
    `diagnostics.ChannelReport`); never resolves."""
    rows: list[dict[str, Any]] = []
    for channel in channels:
        row: dict[str, Any] = {"id": channel.id, "name": channel.name, "enabled": channel.enabled}
        resolution = await resolver.peek(channel)
        failure = await resolver.peek_failure(channel)
        if resolution is not None:
            row.update(
                status="live", checked_at=resolution.fetched_at, expires_at=resolution.expires_at
            )
        elif failure is not None:
            row.update(failure)
        rows.append(row)
    return rows
