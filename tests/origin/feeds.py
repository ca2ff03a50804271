"""A playlist for the test origin (`origin.feeds`): an RSS feed with media enclosures.

yt-dlp's generic extractor reads an RSS document as a playlist (`_extract_rss`: one
`url_transparent` entry per `<item>`, from its `<enclosure url>`), which is how a
playlist or a channel looks to the gateway offline.

- `GET /feeds/playlist.rss`: `ITEMS` items; each has a title, an `itunes:duration` and
  an `itunes:image`; the enclosures point at `/feeds/media/{name}.mp4`, and the item
  named in `MISSING` points at a file that answers 404 (the entry a ZIP must skip).
- `GET /feeds/media/{name}.mp4`: distinct small MP4s (with Range). `first` is the
  origin's VOD file; the others are stream copies of it with their own `title` tag, so
  their bytes differ. They are made with ffmpeg once, on the first request.
- `GET /feeds/big.rss?n=N`: a feed of `N` items (all the `first` file, under distinct
  URLs), for paging and the entry limit.

No signatures or faults: the playlist path is what is tested.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from tests.origin.media import Media
from tests.origin.responses import send_bytes, send_file

# (name, title, duration in seconds); `None` title for the entry that 404s.
ITEMS: tuple[tuple[str, str, int], ...] = (
    ("first", "First clip", 4),
    ("second", "Second clip — zwei", 4),
    ("missing", "A clip that is gone", 4),
    ("third", "Third clip", 4),
)
MISSING = "missing"
FEED_TITLE = "The test feed"
_RSS = "application/rss+xml; charset=utf-8"


class FeedVideos:
    def __init__(self, media: Media, base_url: Callable[[], str]) -> None:
        self._media = media
        self._base_url = base_url
        self._made: dict[str, Path] = {"first": media.vod.path}
        self._lock = asyncio.Lock()

    @property
    def feed_url(self) -> str:
        return self._base_url() + "/feeds/playlist.rss"

    def big_feed_url(self, count: int) -> str:
        return f"{self._base_url()}/feeds/big.rss?n={count}"

    def media_url(self, name: str) -> str:
        return f"{self._base_url()}/feeds/media/{name}.mp4"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/feeds/playlist.rss", self._feed, name="feeds_playlist"),
            web.get("/feeds/big.rss", self._big_feed, name="feeds_big"),
            web.get("/feeds/media/{name}.mp4", self._media_file, name="feeds_media"),
        ]

    def _rss(self, items: list[tuple[str, str, str, int]]) -> bytes:
        body = "".join(
            "<item>"
            f"<title>{escape(title)}</title>"
            f'<enclosure url={quoteattr(url)} type="video/mp4" length="1"/>'
            f"<itunes:duration>{duration}</itunes:duration>"
            f"<itunes:image href={quoteattr(self._base_url() + '/feeds/thumb/' + name + '.jpg')}/>"
            "</item>"
            for url, name, title, duration in items
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
            f"<channel><title>{escape(FEED_TITLE)}</title>"
            "<description>Clips for the gateway's tests</description>"
            f"{body}</channel></rss>"
        ).encode()

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        items = [(self.media_url(name), name, title, d) for name, title, d in ITEMS]
        return await send_bytes(request, self._rss(items), _RSS)

    async def _big_feed(self, request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("n", "10"))
        # Distinct URLs (a query the file ignores): a listing keeps one entry per URL.
        items = [
            (f"{self.media_url('first')}?n={n + 1}", "first", f"Clip {n + 1}", 4)
            for n in range(count)
        ]
        return await send_bytes(request, self._rss(items), _RSS)

    async def _media_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in {n for n, _, _ in ITEMS} or name == MISSING:
            return web.Response(status=404, text="no such clip\n")
        return await send_file(request, await self._path(name), "video/mp4")

    async def _path(self, name: str) -> Path:
        async with self._lock:
            if name not in self._made:
                out = self._media.vod.path.with_name(f"feed-{name}.mp4")
                command = [
                    "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    "-i", str(self._media.vod.path), "-c", "copy",
                    "-metadata", f"title={name}", str(out),
                ]  # fmt: skip
                await asyncio.to_thread(subprocess.run, command, check=True)
                self._made[name] = out
            return self._made[name]
