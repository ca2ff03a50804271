"""Subtitle downloads: one track as WebVTT, or converted to SRT, through the gateway.

`GET|HEAD /v1/download/subtitle/{token}` (`subtitle`): the signed link names the video,
the kind (`subtitles` or `automatic_captions`), the language and `vtt` or `srt`. The
track's WebVTT source comes from the video's private sources (`captions.track_sources`),
and is fetched through the app's one HTTP session, so the address policy and
`GLOBAL_PROXY` apply; the client never sees the upstream URL.

- A WebVTT file is relayed as it is, byte for byte, in `CHUNK_SIZE` pieces.
- An HLS rendition (protocol `m3u8_native`: a VOD media playlist of WebVTT segments) is
  joined into one file as its segments arrive: one `WEBVTT` header; each segment's own
  header (with its `X-TIMESTAMP-MAP`) is dropped, and its cues are moved by the
  difference between its map and the first segment's, so every cue sits on the first
  segment's timeline (when all segments share one map, as most packagers write them,
  cue blocks pass through byte for byte). `STYLE`/`REGION` blocks after the first
  segment, which WebVTT allows only before the first cue, are dropped, and so is a cue
  repeated verbatim from the previous segment (a cue that spans a boundary).
- SRT is converted from that WebVTT by webvtt-py, in a worker thread, from at most
  `MAX_SUBTITLE_BYTES` held in memory; nothing touches the disk.

An upstream that refuses the first request (403/404/410, an expired timedtext URL)
re-extracts the video once. Errors before the first byte are JSON errors
(`subtitle_not_found` 404, `invalid_subtitles` and `upstream_error` 502); after it,
they can only end the stream.

It does not convert YouTube's srv3/json3/ttml (a track without a WebVTT source has no
link), shift inline karaoke timestamps, or count as a download slot: a track is small.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import webvtt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from webvtt.errors import MalformedFileError

from ..captions import KINDS
from ..core import core
from ..errors import Forbidden, NotFound, UpstreamError, YtproxyError
from ..sources import source_store
from ..upstream import REFUSED, read_capped
from .fragments import HLS_PROTOCOLS, parse_media_playlist
from .headers import content_disposition
from .links import read_subtitle
from .upstream import NETWORK_ERRORS, Upstream, release

MAX_SUBTITLE_BYTES = 8 * 1024 * 1024
_MAX_PLAYLIST = 1024 * 1024
_TYPES = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8"}
# 33-bit MPEG-TS clock at 90 kHz.
_TS_WRAP = 1 << 33
_TIMESTAMP = re.compile(r"(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})")
_TIMING = re.compile(r"^(\S+)([ \t]+-->[ \t]+)(\S+)(.*)$")


async def subtitle(request: Request) -> Response:
    svc, sources_of = core(request), source_store(request)
    link = read_subtitle(svc.signer, request.path_params["token"])
    source_url, kind, code, ext = (str(link.get(k) or "") for k in ("u", "k", "l", "x"))
    if not source_url or kind not in KINDS or ext not in _TYPES:
        raise Forbidden("This link is not valid", code="invalid_token")
    sources = await sources_of.load(source_url)
    track = _track(sources, kind, code)
    title = str(link.get("t") or sources.get("title") or "video")
    headers = {
        "Content-Type": _TYPES[ext],
        "Content-Disposition": content_disposition(f"{title}.{code}", ext),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if request.method == "HEAD":
        return Response(headers=headers)

    def locate(fresh: dict[str, Any]) -> dict[str, Any]:
        return {**_track(fresh, kind, code), "fetched_at": fresh.get("fetched_at", 0)}

    upstream = Upstream(
        svc.http, svc.metrics, sources_of, source_url, locate(sources), locate=locate
    )
    fetch = _Fetch(upstream)
    if track["protocol"] in HLS_PROTOCOLS:
        body = await fetch.first()
        try:
            text = (await read_capped(body, _MAX_PLAYLIST, what="The subtitles' playlist")).decode(
                "utf-8", "replace"
            )
        finally:
            body.release()
        segments, _ = parse_media_playlist(text, str(body.url))
        pieces = _joined(fetch, segments)
    else:
        pieces = _relayed(await fetch.first(), svc.settings.chunk_size)
    if ext == "vtt":
        return StreamingResponse(pieces, headers=headers)
    vtt = await _collect(pieces)
    srt = await run_in_threadpool(to_srt, vtt)
    return Response(srt.encode(), headers=headers)


def to_srt(vtt: str) -> str:
    """SubRip text of a WebVTT document (cue tags dropped, as most SRT players want)."""
    try:
        captions = webvtt.from_string(vtt)
    except MalformedFileError:
        raise YtproxyError(
            "The subtitles are not valid WebVTT", code="invalid_subtitles", status=502
        ) from None
    out = io.StringIO()
    captions.write(out, format="srt")
    return out.getvalue() + "\n"


def join_segment(
    text: str, first_offset: int | None, previous: set[str], *, is_first: bool
) -> tuple[list[str], int | None, set[str]]:
    """The cue blocks of one HLS WebVTT segment, on the first segment's timeline.

    Returns the blocks to write, the first segment's offset (its own, for the first
    segment) and this segment's blocks, for dropping repeats from the next segment.
    Offsets are in 90 kHz ticks: `MPEGTS - LOCAL` of the segment's `X-TIMESTAMP-MAP`.
    """
    blocks = re.split(r"\n{2,}", text.replace("\r\n", "\n").replace("\r", "\n").strip("\n"))
    header, rest = (blocks[0], blocks[1:]) if blocks[0].startswith("WEBVTT") else ("", blocks)
    offset = _map_offset(header)
    if first_offset is None:
        first_offset = offset
    shift = 0
    if offset is not None and first_offset is not None:
        shift = (offset - first_offset) % _TS_WRAP
        if shift >= _TS_WRAP // 2:
            shift -= _TS_WRAP
    kept: list[str] = []
    for block in rest:
        if not is_first and block.startswith(("STYLE", "REGION")):
            continue
        moved = _shifted(block, shift) if shift else block
        if moved not in previous:
            kept.append(moved)
    return kept, first_offset, set(kept)


class _Fetch:
    """GETs of one track's upstream (through the download relay's `Upstream`), its URL
    renewed once when refused."""

    def __init__(self, upstream: Upstream) -> None:
        self._up = upstream

    async def first(self) -> aiohttp.ClientResponse:
        """The track's own URL (file or playlist), re-extracted once if refused."""
        response = await self.get(self._up.url, check=False)
        if response.status in REFUSED:
            response.release()
            await self._up.renew()
            response = await self.get(self._up.url, check=False)
        if response.status != 200:
            response.release()
            raise UpstreamError(f"The subtitles' upstream answered {response.status}")
        return response

    async def get(self, url: str, *, check: bool = True) -> aiohttp.ClientResponse:
        try:
            response = await self._up.get(url)
        except NETWORK_ERRORS:
            raise UpstreamError("The subtitles' upstream could not be reached") from None
        if check and response.status != 200:
            response.release()
            raise UpstreamError(f"A subtitle segment's upstream answered {response.status}")
        return response


def _track(sources: dict[str, Any], kind: str, code: str) -> dict[str, Any]:
    track = ((sources.get("subtitles") or {}).get(kind) or {}).get(code)
    if not isinstance(track, dict):
        raise NotFound(
            f"The video has no downloadable subtitles for {code!r}", code="subtitle_not_found"
        )
    return track


async def _relayed(response: aiohttp.ClientResponse, chunk_size: int) -> AsyncIterator[bytes]:
    try:
        async for piece in response.content.iter_chunked(chunk_size):
            yield piece
    finally:
        release(response)


async def _joined(fetch: _Fetch, segments: list[str]) -> AsyncIterator[bytes]:
    yield b"WEBVTT\n"
    first_offset: int | None = None
    previous: set[str] = set()
    budget = MAX_SUBTITLE_BYTES
    for number, url in enumerate(segments):
        response = await fetch.get(url)
        try:
            data = await read_capped(response, budget, what="The subtitles")
        finally:
            response.release()
        budget -= len(data)
        blocks, first_offset, previous = join_segment(
            data.decode("utf-8-sig", "replace"), first_offset, previous, is_first=number == 0
        )
        for block in blocks:
            yield f"\n{block}\n".encode()


async def _collect(pieces: AsyncIterator[bytes]) -> str:
    body = bytearray()
    async for piece in pieces:
        body += piece
        if len(body) > MAX_SUBTITLE_BYTES:
            raise UpstreamError(f"The subtitles are larger than {MAX_SUBTITLE_BYTES} bytes")
    return body.decode("utf-8-sig", "replace")


def _map_offset(header: str) -> int | None:
    """`MPEGTS - LOCAL` in 90 kHz ticks, from a header's X-TIMESTAMP-MAP, or None."""
    for line in header.split("\n"):
        if not line.startswith("X-TIMESTAMP-MAP="):
            continue
        mpegts, local = None, None
        for part in line.removeprefix("X-TIMESTAMP-MAP=").split(","):
            name, _, value = part.strip().partition(":")
            if name == "MPEGTS" and value.isdigit():
                mpegts = int(value)
            elif name == "LOCAL":
                local = _millis(value)
        if mpegts is not None and local is not None:
            return mpegts - local * 90
    return None


def _shifted(block: str, ticks: int) -> str:
    lines = block.split("\n")
    for index, line in enumerate(lines[:2]):
        match = _TIMING.match(line)
        if match is None:
            continue
        start, end = _millis(match[1]), _millis(match[3])
        if start is None or end is None:
            return block
        delta = round(ticks / 90)
        lines[index] = f"{_stamp(start + delta)}{match[2]}{_stamp(end + delta)}{match[4]}"
        return "\n".join(lines)
    return block


def _millis(text: str) -> int | None:
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        return None
    hours, minutes, seconds, millis = (int(g or 0) for g in match.groups())
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def _stamp(millis: int) -> str:
    millis = max(0, millis)
    seconds, ms = divmod(millis, 1000)
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours:02d}:{m:02d}:{s:02d}.{ms:03d}"
