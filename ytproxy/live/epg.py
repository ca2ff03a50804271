"""The guide's HTTP side: `/epg.xml` and `/epg.xml.gz` (XMLTV, see `guide.py`).

The M3U names the guide in its header (`x-tvg-url`, and `url-tvg` for older players),
absolute and carrying `?token=` when `ACCESS_TOKEN` is set; the access guard asks the
guide for the token like any other route. Each request reads only what is cached for
the M3U's channels (the same lineup, expanded lives included) and answers at once;
channels with nothing cached are handed to the `GuideWarmer`, which resolves a few of
them in the background for the next request. Players fetch a guide every few hours,
so it may be cached for a few minutes.

It never waits on yt-dlp and keeps nothing of its own but the warmer's tasks.
"""

from __future__ import annotations

import gzip
import time

from starlette.requests import Request
from starlette.responses import Response

from ..images import image_path
from .endpoints import links_for
from .guide import GuideEntry, build_guide
from .service import live_service

CACHE = {"Cache-Control": "private, max-age=300"}


async def _guide(request: Request) -> bytes:
    live, links = live_service(request), links_for(request)
    entries: list[GuideEntry] = []
    for number, channel in await live.lineup(live.book.enabled()):
        resolution = await live.resolver.peek(channel)
        failure = None if resolution is not None else await live.resolver.peek_failure(channel)
        icon = links.url(image_path(links.signer, channel.logo)) if channel.logo else None
        entries.append(GuideEntry(number, channel, icon, resolution, failure))
    live.warmer.warm([e.channel for e in entries if e.resolution is None and e.failure is None])
    return build_guide(entries, time.time())


async def epg_xml(request: Request) -> Response:
    return Response(await _guide(request), media_type="application/xml", headers=CACHE)


async def epg_xml_gz(request: Request) -> Response:
    body = gzip.compress(await _guide(request), mtime=0)
    return Response(body, media_type="application/gzip", headers=CACHE)
