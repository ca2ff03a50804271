"""The live-channels component: what the endpoints ask for, and the refresh watchers.

`LiveService(settings=, cache=, http=, extractor=, metrics=, signer=)` is built in the
app's lifespan and reached by handlers through `live_service(request)`. `start()` loads
the channels file (a bad file stops start-up with the channel and field named);
`close()` stops the refresh watchers and the relay's fetches. `channel_report()` is
what diagnostics shows of each channel (published in the lifespan state).

It turns requests into playlists: the channel's master with every variant pointing
at a signed gateway URL, and media playlists with every segment, key and map
pointing at a signed media URL. Rendered media playlists are kept with the upstream
playlist they came from (for its short freshness), so a hundred viewers cost one
rewrite, not a hundred. A segment keeps the link first made for it across playlist
refreshes (`SegmentLinks`): hls.js, the channels page's player, compares a refreshed
playlist with the previous one and stops with "media sequence mismatch" when a
segment's URI changed, and a freshly sealed token always differs.

While a channel has viewers, a watcher task re-resolves it before its cached
resolution runs out (at `REFRESH_AT` of its TTL), so players never meet an expired
URL; the watcher ends once the channel has had no viewer for the viewer window, and
all watchers are cancelled on `close()`.

Radio entries (`radio.py`): `audio_playlist` answers `/live/{id}/audio.m3u8`, the
channel's audio alone (its audio rendition, or the audio taken from its muxed segments
by `audio_segment`); while the channel is not live it answers the slate, as a media
playlist that goes on with the audio once the live starts.

A channel with `expand = true` stands for its current lives (`streams.py`): `listed()`
gives each as a virtual channel with a derived id (from the cached listing, never
waiting on yt-dlp), and `channel(id)` finds a derived id, so it plays like any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from ..errors import NotFound, ServiceUnavailable, YtproxyError
from ..images import image_path
from . import playlist, quality, radio
from .channels import Channel, ChannelBook
from .demuxed import MuxedSegments, video_keys
from .fanout import Fetch
from .guide import GuideWarmer
from .links import MEDIA_TOKEN_TTL, Links
from .program import ProgramClock, program_master
from .relay import LiveRelay, MediaPlaylist, media_payload
from .remux import Remuxer
from .resolver import Resolution, Resolver, channel_rows
from .slate import Slates, SlateText
from .status import NOT_LIVE_CODES
from .streams import Listings, parent_id
from .viewers import Viewers

if TYPE_CHECKING:
    import aiohttp

    from ..cache import Cache
    from ..extractor import Extractor
    from ..metrics import Metrics
    from ..settings import Settings
    from ..signing import Signer

log = logging.getLogger(__name__)

REFRESH_AT = 0.75
SEGMENT_LINKS = 4096
_WATCH_MAX_SLEEP = 5.0
_WATCH_RETRY = 2.0
_UPCOMING_LOOK = 2.0


class LiveService:
    def __init__(
        self,
        *,
        settings: Settings,
        cache: Cache,
        http: aiohttp.ClientSession,
        extractor: Extractor,
        metrics: Metrics,
        signer: Signer,
    ) -> None:
        self._settings = settings
        self.book = ChannelBook(settings.channels_file)
        self.resolver = Resolver(cache, extractor, http, metrics, signer, settings)
        self.relay = LiveRelay(http, metrics, settings, self.resolver)
        self.viewers = Viewers(settings.max_concurrent_streams, metrics)
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self.segment_links = SegmentLinks()
        self.slates = Slates()
        self._programs: dict[str, ProgramClock] = {}
        # Radio entries: ffmpeg takes the audio of muxed segments, once per segment.
        self.remuxer = Remuxer()
        self.audio_segments = radio.AudioSegments(self.relay, self.remuxer)
        self.muxed_segments = MuxedSegments(self.relay, self.remuxer)
        self._audio_programs: dict[str, ProgramClock] = {}
        # Channels last seen upcoming: re-checked on their schedule, watched or not.
        self._upcoming: set[str] = set()
        self._rechecker: asyncio.Task[None] | None = None
        self.listings = Listings(cache, extractor, signer)
        # Resolves channels the guide knows nothing about, in the background.
        self.warmer = GuideWarmer(self.resolver)

    async def channel_report(self) -> list[dict[str, Any]]:
        """Each channel's last resolution, for diagnostics; never resolves."""
        return await channel_rows(self.book.all(), self.resolver)

    async def start(self) -> None:
        self.book.load()
        self._rechecker = asyncio.create_task(self._recheck_upcoming(), name="live upcoming")

    async def close(self) -> None:
        if self._rechecker is not None:
            self._rechecker.cancel()
            await asyncio.gather(self._rechecker, return_exceptions=True)
        await self.slates.close()
        await self.listings.close()
        await self.warmer.close()
        watchers = list(self._watchers.values())
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self._watchers.clear()
        await self.relay.close()
        self.viewers.forget()

    def channel(self, channel_id: str) -> Channel:
        found = self._lookup(channel_id)
        if found is not None:
            return found
        parent = self._lookup(parent_id(channel_id) or "")
        if parent is not None and parent.expand and not self.listings.listed(parent):
            raise ServiceUnavailable(
                "The channel's lives are being listed; try again shortly",
                code="channel_unavailable",
                retry_after=2,
            )
        raise NotFound(f"There is no channel {channel_id!r}", code="channel_not_found")

    def _lookup(self, channel_id: str) -> Channel | None:
        """An enabled channel of the file, or a current live of an expanded one."""
        parent = parent_id(channel_id)
        found = self.book.get(parent or channel_id)
        if found is None or not found.enabled:
            return None
        if parent is None:
            return found
        return self.listings.find(channel_id, found) if found.expand else None

    async def listed(self, channels: list[Channel]) -> list[Channel]:
        """`channels` with each expanded one replaced by its current lives, as cached
        (the channel itself while none is known or none is on)."""
        out: list[Channel] = []
        for channel in channels:
            expand = channel.expand and channel.enabled
            lives = await self.listings.expanded(channel) if expand else None
            out.extend(lives or [channel])
        return out

    async def lineup(self, channels: list[Channel]) -> list[tuple[int, Channel]]:
        """`listed(channels)` with their channel numbers (`tvg-chno`): a channel's own
        `number`, else the one after the previous channel's; never the same twice."""
        numbered: list[tuple[int, Channel]] = []
        used: set[int] = set()
        last = 0
        for channel in await self.listed(channels):
            number = channel.number if channel.number and channel.number not in used else last + 1
            while number in used:
                number += 1
            used.add(number)
            last = number
            numbered.append((number, channel))
        return numbered

    def watch(self, channel: Channel, client: str) -> None:
        """Count `client` as a viewer (or refuse it) and keep the channel refreshed."""
        self.viewers.touch(channel.id, client)
        task = self._watchers.get(channel.id)
        if task is None or task.done():
            self._watchers[channel.id] = asyncio.create_task(
                self._watch(channel.id), name=f"live watcher {channel.id}"
            )

    async def master_playlist(self, channel: Channel, links: Links) -> str:
        resolution = await self.resolver.current(channel)
        keys = {url: key for key, url in resolution.variants.items()}

        def replace(uri: playlist.Uri) -> str:
            if uri.tag in playlist.PLAYLIST_TAGS and uri.url in keys:
                key = keys[uri.url]
                return links.variant(channel.id, key, resolution.bandwidths.get(key, 0))
            return links.media(channel.id, media_payload(resolution, "", uri), uri.url)

        master = quality.capped_master(resolution.master, resolution.base_url, self.cap(channel))
        return playlist.rewrite(master, resolution.base_url, replace)

    def cap(self, channel: Channel) -> int | None:
        """The channel's quality cap (`max_height`, `LIVE_MAX_HEIGHT`): see quality.py."""
        return quality.cap_for(self._settings.live_max_height, channel)

    async def master_or_program(self, channel: Channel, links: Links) -> str:
        """The channel's master; while it is not live, the program's (the slate), when
        the slate is on."""
        try:
            return await self.master_playlist(channel, links)
        except ServiceUnavailable as exc:
            if not self._settings.live_slate or exc.code not in NOT_LIVE_CODES:
                raise
            await self._note_status(channel)
            return program_master(links.program(channel.id))

    async def program_playlist(self, channel: Channel, links: Links) -> str:
        """The slate while the channel is not live, then its live stream (program.py)."""
        clock = self._programs.setdefault(channel.id, ProgramClock())
        try:
            resolution = await self.resolver.current(channel)
        except ServiceUnavailable as exc:
            if exc.code not in NOT_LIVE_CODES:
                raise
            await self._note_status(channel)
            return clock.slate(lambda n: links.slate(channel.id, n))
        self._upcoming.discard(channel.id)
        offered = quality.offered_keys(resolution, self.cap(channel))
        if playlist.has_audio_renditions(resolution.master, resolution.base_url):
            # Demuxed: the best video variant, each segment muxed with its audio.
            audio_key, _ = radio.audio_source(resolution, offered)
            videos = video_keys(resolution, offered) or offered
            key = max(videos, key=lambda k: resolution.bandwidths.get(k, 0))
            current = await self.relay.media_playlist(
                channel, key, resolution.bandwidths.get(key, 0)
            )
            text = self._render(
                channel,
                current,
                links,
                f"muxed {audio_key}",
                lambda payload: links.muxed_segment(channel.id, {**payload, "a": audio_key}),
            )
            return clock.live_playlist(text, resolution.stream_id)
        key = max(offered, key=lambda k: resolution.bandwidths.get(k, 0))
        payload = {"v": key, "b": resolution.bandwidths.get(key, 0)}
        text = await self.media_playlist(channel, payload, links)
        return clock.live_playlist(text, resolution.stream_id)

    async def slate_segment(self, channel: Channel) -> bytes:
        failure = await self.resolver.peek_failure(channel) or {}
        starts_at = failure.get("starts_at")
        text = SlateText(
            channel.name,
            str(failure.get("status", "offline")),
            datetime.fromtimestamp(float(starts_at), UTC) if starts_at else None,
        )
        return await self.slates.segment(text)

    async def _note_status(self, channel: Channel) -> None:
        failure = await self.resolver.peek_failure(channel)
        if failure is not None and failure.get("status") == "upcoming":
            self._upcoming.add(channel.id)

    async def _recheck_upcoming(self) -> None:
        """Ask yt-dlp again about upcoming channels when their status runs out, so the
        channels page and the guide see them go live even with nobody watching."""
        while True:
            await asyncio.sleep(_UPCOMING_LOOK)
            for channel_id in list(self._upcoming):
                channel = self._lookup(channel_id)
                if channel is None:
                    self._upcoming.discard(channel_id)
                    continue
                if await self.resolver.peek_failure(channel) is not None:
                    continue  # still believed; its record says when to ask again
                try:
                    await self.resolver.current(channel)
                    self._upcoming.discard(channel_id)
                except YtproxyError:
                    await self._note_status(channel)
                    failure = await self.resolver.peek_failure(channel)
                    if failure is None or failure.get("status") != "upcoming":
                        self._upcoming.discard(channel_id)

    async def media_playlist(self, channel: Channel, payload: dict[str, Any], links: Links) -> str:
        key, bandwidth = str(payload.get("v", "")), int(payload.get("b", 0))
        cap = self.cap(channel)
        if cap is not None:
            # A link made before the cap (or for a variant gone since) never fetches
            # a variant over it: the nearest offered one is served instead.
            resolution = await self.resolver.current(channel)
            offered = quality.offered_keys(resolution, cap)
            if key not in offered and offered:
                key = min(offered, key=lambda k: abs(resolution.bandwidths.get(k, 0) - bandwidth))
        current = await self.relay.media_playlist(channel, key, bandwidth)
        return self._render(channel, current, links)

    def _render(
        self,
        channel: Channel,
        current: MediaPlaylist,
        links: Links,
        kind: str = "",
        segment_link: Callable[[dict[str, Any]], str] | None = None,
    ) -> str:
        """`current` with every URI a gateway link; `segment_link(payload)`, when given,
        makes the segments' (a `kind` of rendering). Kept with `current`, so viewers
        share one rewrite."""
        label = f"{kind} {links.base_url}" if kind else links.base_url
        rendered = current.rendered.get(label)
        if rendered is None:

            def replace(uri: playlist.Uri) -> str:
                payload = media_payload(current.resolution, current.key, uri)
                if payload["k"] != "segment" or uri.sequence is None:
                    return links.media(channel.id, payload, uri.url)
                slot = (
                    label,
                    channel.id,
                    str(current.resolution.stream_id),
                    current.key,
                    uri.sequence,
                )
                if segment_link is not None:
                    return self.segment_links.get(slot, lambda: segment_link(payload))
                return self.segment_links.get(
                    slot, lambda: links.media(channel.id, payload, uri.url)
                )

            rendered = playlist.rewrite(current.text, current.url, replace)
            current.rendered[label] = rendered
        return rendered

    async def audio_playlist(self, channel: Channel, links: Links) -> str:
        """The channel's audio alone, as a media playlist (radio.py); while it is not
        live, the slate (when the slate is on), going on with the audio once it is."""
        clock = self._audio_programs.get(channel.id)
        try:
            resolution = await self.resolver.current(channel)
        except ServiceUnavailable as exc:
            if not self._settings.live_slate or exc.code not in NOT_LIVE_CODES:
                raise
            await self._note_status(channel)
            clock = self._audio_programs.setdefault(channel.id, ProgramClock())
            return clock.slate(lambda n: links.slate(channel.id, n))
        key, direct = radio.audio_source(
            resolution, quality.offered_keys(resolution, self.cap(channel))
        )
        bandwidth = resolution.bandwidths.get(key, 0)
        if direct:
            text = await self.media_playlist(channel, {"v": key, "b": bandwidth}, links)
        else:
            current = await self.relay.media_playlist(channel, key, bandwidth)
            text = self._render(
                channel,
                current,
                links,
                "audio",
                lambda payload: links.audio_segment(channel.id, payload),
            )
        # Renumbered only after a slate: a listener never sees the numbers go back.
        return text if clock is None else clock.live_playlist(text, resolution.stream_id)

    def audio_segment(self, channel: Channel, payload: dict[str, Any]) -> Fetch:
        return self.audio_segments.segment(channel, payload)

    def muxed_segment(self, channel: Channel, payload: dict[str, Any]) -> Fetch:
        return self.muxed_segments.segment(channel, payload)

    def media(self, channel: Channel, payload: dict[str, Any]) -> Fetch:
        return self.relay.media(channel, payload)

    async def invalidate(self, channel: Channel) -> None:
        await self.resolver.invalidate(channel)
        self.relay.forget(channel.id)
        log.info("channel %s: cached resolution dropped", channel.id)

    async def describe(
        self, channel: Channel, links: Links, *, resolve: bool, number: int | None = None
    ) -> dict[str, Any]:
        """A channel as the API and the channels page show it."""
        if resolve:
            resolution: Resolution | None = await self.resolver.current(channel)
        else:
            resolution = await self.resolver.peek(channel)
        failure = None if resolution is not None else await self.resolver.peek_failure(channel)
        if resolution is not None:
            status = "live"
        elif failure is not None:
            status = str(failure.get("status", "error"))
            if status == "upcoming":
                self._upcoming.add(channel.id)
        else:
            status = "unknown"
        described: dict[str, Any] = {
            "id": channel.id,
            "number": number,
            "name": channel.name,
            "group": channel.group,
            "logo": channel.logo,
            "logo_url": links.url(image_path(links.signer, channel.logo)) if channel.logo else None,
            "description": channel.description,
            "enabled": channel.enabled,
            "url": links.master(channel.id),
            "audio_url": links.audio(channel.id) if channel.audio_only or channel.radio else None,
            "status": status,
            "reason": failure.get("code") if failure else None,
            "starts_at": _iso(failure.get("starts_at")) if failure else None,
            "checked_at": _iso(failure.get("checked_at")) if failure else None,
            "viewers": self.viewers.count(channel.id),
            "max_height": self.cap(channel),
            "fetched_at": _iso(resolution.fetched_at) if resolution else None,
            "expires_at": _iso(resolution.expires_at) if resolution else None,
            "cached_until": _iso(resolution.fetched_at + resolution.ttl) if resolution else None,
        }
        if resolve and resolution is not None:
            described["quality"] = resolution.quality()
        return described

    async def _watch(self, channel_id: str) -> None:
        try:
            while self.viewers.count(channel_id) > 0:
                channel = self._lookup(channel_id)
                if channel is None:
                    return
                delay = await self._refresh_if_due(channel)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refresh watcher of channel %s failed", channel_id)
        finally:
            if self._watchers.get(channel_id) is asyncio.current_task():
                del self._watchers[channel_id]

    async def _refresh_if_due(self, channel: Channel) -> float:
        """Re-resolve if the cached resolution is near its end; seconds until next look."""
        resolution = await self.resolver.peek(channel)
        if resolution is None:
            return _WATCH_RETRY  # cold or failed: the next viewer request resolves it
        due = resolution.fetched_at + resolution.ttl * REFRESH_AT
        now = time.time()
        if now < due:
            return min(max(due - now, 0.2), _WATCH_MAX_SLEEP)
        try:
            await self.resolver.refresh(channel, reason="refresh", newer_than=resolution.fetched_at)
        except YtproxyError as exc:
            log.warning("channel %s: refresh before expiry failed (%s)", channel.id, exc.code)
            return _WATCH_RETRY
        return 0.2


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class SegmentLinks:
    """The link first made for each live segment, reused while its token is young.

    Keyed by (base URL, channel, stream, variant, media sequence); the relay re-maps an
    expired upstream URL by sequence, so an old link stays good. Bounded: the oldest
    entries go first.
    """

    def __init__(self, limit: int = SEGMENT_LINKS, max_age: float = MEDIA_TOKEN_TTL / 2) -> None:
        self._links: OrderedDict[tuple[str, str, str, str, int], tuple[float, str]] = OrderedDict()
        self._limit = limit
        self._max_age = max_age

    def get(self, slot: tuple[str, str, str, str, int], make: Callable[[], str]) -> str:
        now = time.monotonic()
        found = self._links.get(slot)
        if found is not None and now - found[0] < self._max_age:
            return found[1]
        link = make()
        self._links[slot] = (now, link)
        self._links.move_to_end(slot)
        while len(self._links) > self._limit:
            self._links.popitem(last=False)
        return link


def live_service(conn: HTTPConnection) -> LiveService:
    found: LiveService = conn.scope["state"]["live"]
    return found
