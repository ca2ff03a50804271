"""Channels that run several lives at once: their `/streams` tab, picked or expanded.

A news channel's `/live` shows one of its current lives, chosen by YouTube. A channel
whose `url` is its `/streams` tab, or that has `pick` or `expand`, is listed instead:
yt-dlp returns the tab as a flat playlist (`extract_flat: in_playlist`: one request,
entries with `url`, `title`, `live_status`, `release_timestamp`, none extracted).

- `pick` (a case-insensitive substring of the title, or a regex written `/.../`) keeps
  the lives it matches; `choose(entries, pick)` takes the first live one, else says why
  there is none: `upcoming` with the nearest start, or `offline` (`no_matching_live`
  when a pick found nothing, `no_live` otherwise). The resolver then extracts the chosen
  live's watch URL as for any channel.
- `expand = true` makes each current live its own channel, with the id
  `<channel id>~<8 hex digits of a hash of the video id>` (stable across restarts and
  never a file id, which cannot hold `~`), the name `<channel name> · <live title>`, the
  channel's group and logo, and the live's watch URL as its `url`. `Listings` keeps each
  expanded channel's listing in the cache (`LISTING_FRESH` seconds, then refreshed in the
  background while the old one is still served) and an index of the derived channels, so
  the M3U and the API list what is known without waiting on yt-dlp.

It does not resolve streams (`resolver.py`), and an expanded live that has ended drops
out of the index at the next listing (its URL then answers 404).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import YtproxyError
from ..flights import Flights
from .channels import Channel, pick_pattern

if TYPE_CHECKING:
    from ..cache import Cache
    from ..extractor import Extractor
    from ..signing import Signer

log = logging.getLogger(__name__)

# yt-dlp options that list a channel tab's entries instead of extracting each one. The
# tab lists current and upcoming lives first, then every past one: the first page will do.
LISTING_OPTIONS: dict[str, Any] = {
    "extract_flat": "in_playlist",
    "noplaylist": False,
    "playlistend": 30,
}
LISTING_FRESH = 60.0
_LISTING_KEEP = 600.0
_RETRY_AFTER_FAILURE = 30.0
DERIVED_SEPARATOR = "~"


@dataclasses.dataclass(frozen=True)
class LiveEntry:
    video_id: str
    title: str
    url: str
    live_status: str
    release_timestamp: float | None = None


@dataclasses.dataclass(frozen=True)
class NoLive:
    """Why a listing gives no live: a channel status, a reason code, and a start."""

    status: str
    code: str
    starts_at: float | None = None


def is_listing(channel: Channel) -> bool:
    """Whether the channel's URL is resolved as a list of lives (its `/streams` tab)."""
    path = urlsplit(channel.url).path.rstrip("/")
    return bool(channel.pick) or channel.expand or path.endswith("/streams")


def entries_of(info: dict[str, Any]) -> list[LiveEntry]:
    """The entries of yt-dlp's flat playlist; a single video counts as a one-entry list."""
    if info.get("_type") not in {"playlist", "multi_video"}:
        raw = [info]
    else:
        raw = [e for e in info.get("entries") or [] if isinstance(e, dict)]
    found = []
    for entry in raw:
        url = entry.get("url") if entry.get("_type") == "url" else None
        url = url or entry.get("webpage_url") or entry.get("original_url") or entry.get("url")
        video_id = str(entry.get("id") or "")
        if not video_id or not isinstance(url, str):
            continue
        starts = entry.get("release_timestamp")
        found.append(
            LiveEntry(
                video_id=video_id,
                title=str(entry.get("title") or ""),
                url=url,
                live_status=str(entry.get("live_status") or ""),
                release_timestamp=float(starts) if isinstance(starts, int | float) else None,
            )
        )
    return found


def matching(entries: list[LiveEntry], pick: str) -> list[LiveEntry]:
    pattern = pick_pattern(pick)
    return [e for e in entries if pattern is None or pattern.search(e.title)]


def current_lives(entries: list[LiveEntry], pick: str) -> list[LiveEntry]:
    return [e for e in matching(entries, pick) if e.live_status == "is_live"]


def choose(entries: list[LiveEntry], pick: str) -> LiveEntry | NoLive:
    """The live to play: the first live entry matching `pick`, else why there is none."""
    candidates = matching(entries, pick)
    for entry in candidates:
        if entry.live_status == "is_live":
            return entry
    starts = [
        e.release_timestamp
        for e in candidates
        if e.live_status == "is_upcoming" and e.release_timestamp is not None
    ]
    if starts or any(e.live_status == "is_upcoming" for e in candidates):
        return NoLive("upcoming", "live_not_started", min(starts) if starts else None)
    return NoLive("offline", "no_matching_live" if pick else "no_live")


def derived_id(channel_id: str, video_id: str) -> str:
    digest = hashlib.sha256(video_id.encode()).hexdigest()[:8]
    return f"{channel_id}{DERIVED_SEPARATOR}{digest}"


def parent_id(channel_id: str) -> str | None:
    """The expanded channel a derived id belongs to, or None for a file id."""
    parent, separator, _ = channel_id.partition(DERIVED_SEPARATOR)
    return parent if separator else None


def virtual_channel(channel: Channel, entry: LiveEntry) -> Channel:
    return Channel(
        id=derived_id(channel.id, entry.video_id),
        name=f"{channel.name} · {' '.join(entry.title.split())}".strip(),
        url=entry.url,
        group=channel.group,
        logo=channel.logo,
        description=channel.description,
        enabled=True,
    )


async def list_lives(extractor: Extractor, channel: Channel) -> list[LiveEntry]:
    """One flat listing of the channel's URL by yt-dlp (the live lane)."""
    info = await extractor.extract(
        channel.url, lane="live", options=LISTING_OPTIONS, allow_playlist=True
    )
    return entries_of(info)


class Listings:
    """The current lives of expanded channels, from the cache, refreshed in the background."""

    def __init__(self, cache: Cache, extractor: Extractor, signer: Signer) -> None:
        self._cache = cache
        self._extractor = extractor
        self._signer = signer
        self._tasks = Flights()
        self._failed: dict[str, float] = {}
        # derived id -> virtual channel, from the newest listing of each parent.
        self._index: dict[str, Channel] = {}
        self._listed: set[str] = set()

    def _key(self, channel: Channel) -> str:
        digest = self._signer.digest(f"{channel.url}\n{channel.pick}")[:16]
        return f"live:streams:{channel.id}:{digest}"

    async def expanded(self, channel: Channel) -> list[Channel] | None:
        """The virtual channels of `channel`'s current lives, as cached; None while no
        listing is known (one is then started in the background)."""
        data = await self._cache.get(self._key(channel))
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            self._start(channel)
            return None
        if time.time() - float(data.get("fetched_at") or 0) > LISTING_FRESH:
            self._start(channel)
        entries = [LiveEntry(**e) for e in data["entries"] if isinstance(e, dict)]
        return self._remember(channel, entries)

    def find(self, channel_id: str, parent: Channel) -> Channel | None:
        """The virtual channel of a derived id in the parent's newest listing; if it is
        not there, a listing is started (`listed(parent)` says whether one was known)."""
        found = self._index.get(channel_id)
        if found is None:
            self._start(parent)
        return found

    def listed(self, parent: Channel) -> bool:
        return parent.id in self._listed

    async def settled(self) -> None:
        """Wait for the listings under way (tests)."""
        await self._tasks.wait()

    def _remember(self, channel: Channel, entries: list[LiveEntry]) -> list[Channel]:
        lives = [virtual_channel(channel, e) for e in current_lives(entries, channel.pick)]
        prefix = channel.id + DERIVED_SEPARATOR
        for stale in [k for k in self._index if k.startswith(prefix)]:
            del self._index[stale]
        self._index.update((c.id, c) for c in lives)
        self._listed.add(channel.id)
        return lives

    def _start(self, channel: Channel) -> None:
        if time.monotonic() - self._failed.get(channel.id, -1e9) < _RETRY_AFTER_FAILURE:
            return
        self._tasks.start(channel.id, functools.partial(self._refresh, channel))

    async def _refresh(self, channel: Channel) -> None:
        try:
            entries = await list_lives(self._extractor, channel)
        except YtproxyError as exc:
            self._failed[channel.id] = time.monotonic()
            log.warning("channel %s: listing its lives failed (%s)", channel.id, exc.code)
            return
        except Exception:
            # A background task: its outer edge.
            self._failed[channel.id] = time.monotonic()
            log.exception("channel %s: listing its lives failed unexpectedly", channel.id)
            return
        self._failed.pop(channel.id, None)
        record = {"fetched_at": time.time(), "entries": [dataclasses.asdict(e) for e in entries]}
        await self._cache.set(self._key(channel), record, _LISTING_KEEP)
        lives = self._remember(channel, entries)
        log.info("channel %s: %d current live(s) listed", channel.id, len(lives))

    async def close(self) -> None:
        await self._tasks.close()
