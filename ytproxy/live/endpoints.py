"""HTTP endpoints of the live channels: the M3U, the JSON API, the HLS relay, the page.

Every handler raises the project's errors (rendered as JSON for `/api/` and `/live/`
paths): unknown channel 404 `channel_not_found`, offline 503 `channel_offline`,
over the viewer limit 503 `too_many_viewers`, bad or expired token 403. Playlists are
`application/vnd.apple.mpegurl` with `Cache-Control: no-cache`; segments stream as
they arrive. No upstream URL or header is ever passed to the client.

The M3U and `/api/channels` read only what is cached: they never wait on yt-dlp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..access import base_url
from ..core import core
from ..images import image_path
from . import playlist
from .channels import Channel
from .fanout import Fetch, FetchResponse
from .guide import guide_id
from .links import Links, open_media, open_variant
from .service import LiveService, live_service

_NO_CACHE = {"Cache-Control": "no-cache"}
_NO_STORE = {"Cache-Control": "no-store"}


def links_for(request: Request) -> Links:
    svc = core(request)
    base = base_url(request, svc.settings.public_base_url)
    return Links(svc.signer, base, svc.settings.access_token)


def _live(request: Request) -> LiveService:
    return live_service(request)


def _client(request: Request) -> str:
    host = request.client.host if request.client else "unknown"
    return f"{host}|{request.headers.get('user-agent', '')[:200]}"


def _watched(request: Request) -> Channel:
    live = _live(request)
    channel = live.channel(request.path_params["channel_id"])
    live.watch(channel, _client(request))
    return channel


async def playlist_m3u(request: Request) -> Response:
    live, links = _live(request), links_for(request)
    guide = links.url("/epg.xml")  # the XMLTV guide (epg.py); url-tvg for older players
    lines = [f'#EXTM3U x-tvg-url="{guide}" url-tvg="{guide}"']
    for number, channel in await live.lineup(live.book.enabled()):
        attrs = {
            "tvg-id": guide_id(channel.id),
            "tvg-chno": str(number),
            "tvg-name": channel.name,
            "tvg-logo": links.url(image_path(links.signer, channel.logo)) if channel.logo else "",
            "group-title": channel.group,
        }
        entries = [] if channel.audio_only else [(attrs, links.master(channel.id))]
        if channel.audio_only or channel.radio:
            entries.append((_radio_attrs(attrs, channel), links.audio(channel.id)))
        for entry, url in entries:
            rendered = " ".join(f'{name}="{_attr(value)}"' for name, value in entry.items())
            lines.append(f"#EXTINF:-1 {rendered},{_attr(entry['tvg-name'])}")
            lines.append(url)
    return Response(
        "\n".join(lines) + "\n",
        media_type="audio/x-mpegurl",
        headers={**_NO_CACHE, "Content-Disposition": 'inline; filename="playlist.m3u"'},
    )


def _radio_attrs(attrs: dict[str, str], channel: Channel) -> dict[str, str]:
    """A radio entry's attributes: Kodi and TiviMate list `radio="true"` entries as radio
    stations. It keeps the channel's `tvg-id`, so the guide's programmes apply to it too,
    and its `tvg-chno` (Kodi numbers radio apart from TV); a second entry of a TV channel
    is named "<name> (radio)" to tell the two apart."""
    name = channel.name if channel.audio_only else f"{channel.name} (radio)"
    return {**attrs, "tvg-name": name, "radio": "true"}


def _attr(value: str) -> str:
    """A value safe inside an M3U attribute and on one line.

    Players split `#EXTINF` at a comma (some at the first, some at the last), so a comma
    becomes U+201A, which looks the same; a double quote would end the attribute.
    """
    return " ".join(value.replace('"', "'").replace(",", "\u201a").split())


async def _numbers(live: LiveService) -> dict[str, int]:
    """Channel numbers as the M3U gives them (disabled channels have none)."""
    return {channel.id: number for number, channel in await live.lineup(live.book.enabled())}


async def channels_api(request: Request) -> Response:
    live, links = _live(request), links_for(request)
    numbers = await _numbers(live)
    described = [
        await live.describe(channel, links, resolve=False, number=numbers.get(channel.id))
        for channel in await live.listed(live.book.all())
    ]
    return JSONResponse({"channels": described}, headers=_NO_STORE)


async def stream_api(request: Request) -> Response:
    live = _live(request)
    channel = live.channel(request.path_params["channel_id"])
    described = await live.describe(channel, links_for(request), resolve=True)
    return JSONResponse(described, headers=_NO_STORE)


async def invalidate_api(request: Request) -> Response:
    live = _live(request)
    channel = live.channel(request.path_params["channel_id"])
    live.book.reload_now()
    await live.invalidate(channel)
    return JSONResponse({"invalidated": channel.id}, headers=_NO_STORE)


async def channel_master(request: Request) -> Response:
    channel = _watched(request)
    body = await _live(request).master_or_program(channel, links_for(request))
    return _playlist_response(request, body)


async def audio_playlist(request: Request) -> Response:
    channel = _watched(request)
    body = await _live(request).audio_playlist(channel, links_for(request))
    return _playlist_response(request, body)


async def program_playlist(request: Request) -> Response:
    channel = _watched(request)
    body = await _live(request).program_playlist(channel, links_for(request))
    return _playlist_response(request, body)


async def slate_segment(request: Request) -> Response:
    channel = _live(request).channel(request.path_params["channel_id"])
    body = await _live(request).slate_segment(channel)
    metrics = core(request).metrics
    metrics.relayed_bytes.labels("live_slate").inc(len(body))
    return Response(body, media_type="video/mp2t", headers={"Cache-Control": "no-cache"})


async def media_playlist(request: Request) -> Response:
    svc = core(request)
    params = request.path_params
    payload = open_variant(svc.signer, params["channel_id"], params["token"])
    channel = _watched(request)
    body = await live_service(request).media_playlist(channel, payload, links_for(request))
    return _playlist_response(request, body)


def _playlist_response(request: Request, body: str) -> Response:
    metrics = core(request).metrics
    metrics.relayed_bytes.labels("live_playlist").inc(len(body))
    return Response(body, media_type=playlist.CONTENT_TYPE, headers=_NO_CACHE)


async def media_relay(request: Request) -> Response:
    """A segment, key, map or part, fetched once for every viewer."""
    return await _relay(request, LiveService.media)


async def audio_relay(request: Request) -> Response:
    """The audio of a muxed segment (radio entries), taken once for every listener."""
    return await _relay(request, LiveService.audio_segment, label="audio")


async def muxed_relay(request: Request) -> Response:
    """A demuxed live's video segment muxed with its audio (the program behind the slate)."""
    return await _relay(request, LiveService.muxed_segment, label="muxed")


async def _relay(
    request: Request,
    fetch_of: Callable[[LiveService, Channel, dict[str, Any]], Fetch],
    *,
    label: str | None = None,
) -> Response:
    """Stream a shared fetch named by a signed media token of the request's channel."""
    svc = core(request)
    params = request.path_params
    payload = open_media(svc.signer, params["channel_id"], params["token"])
    channel = _watched(request)
    fetch = fetch_of(live_service(request), channel, payload)
    await fetch.ready()
    kind = label or str(payload.get("k", "segment"))
    counter = svc.metrics.relayed_bytes.labels("live_" + kind)
    return FetchResponse(
        fetch, svc.settings.chunk_size, {"Cache-Control": "private, max-age=300"}, counter.inc
    )


async def channels_page(request: Request) -> Response:
    live, links = _live(request), links_for(request)
    numbers = await _numbers(live)
    rows: list[dict[str, Any]] = [
        await live.describe(channel, links, resolve=False, number=numbers.get(channel.id))
        for channel in await live.listed(live.book.all())
    ]
    m3u = links.url("/playlist.m3u")
    return core(request).templates.render(
        request, "channels.html", {"channels": rows, "m3u_url": m3u}
    )
