"""The fragmented-format relay: HLS or DASH fragments, in order, as one stream.

Formats whose protocol is `m3u8_native`/`m3u8` (a media playlist of segments) or
`http_dash_segments` (yt-dlp's `fragments` list, relative to `fragment_base_url`)
have no single file to take ranges of. Their fragments are fetched one after another
and relayed as one continuous body: the concatenation is what yt-dlp itself writes
for such formats (an MPEG-TS stream for TS segments, a fragmented MP4 or WebM for an
init segment followed by media segments). The size is not known in advance, so the
response is 200 without `Content-Length` and with `Accept-Ranges: none`.

A fragment that drops mid-body is resumed from the byte reached (by Range, or by
skipping when the upstream ignores Range); a refused fragment (403/404/410)
re-extracts the video and continues at the same fragment of the fresh list.

Limits: encrypted HLS (`EXT-X-KEY` other than NONE), byte-range HLS and live
playlists (no `EXT-X-ENDLIST`) are refused with 422; live channels are watched
through `/live/`, not downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import aiohttp

from ..errors import UpstreamError, YtproxyError
from ..upstream import REFUSED, read_capped, retryable
from .headers import Naming, parse_content_range
from .response import Head
from .upstream import NETWORK_ERRORS, Attempts, Upstream, read_block, release

log = logging.getLogger(__name__)

HLS_PROTOCOLS = frozenset({"m3u8", "m3u8_native"})
DASH_PROTOCOLS = frozenset({"http_dash_segments"})
_MAX_PLAYLIST = 8 * 1024 * 1024


def unsupported(message: str) -> YtproxyError:
    return YtproxyError(message, code="unsupported_format", status=422)


def parse_media_playlist(text: str, base_url: str) -> tuple[list[str], bool]:
    """The absolute URLs of a VOD media playlist (init segment first), and whether
    the segments carry their own init (`EXT-X-MAP`, fMP4) rather than being TS."""
    if not text.lstrip().startswith("#EXTM3U"):
        raise unsupported("The format's playlist is not an HLS playlist")
    urls: list[str] = []
    has_map = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-STREAM-INF"):
            raise unsupported("The format points at a master playlist, not at its media")
        if line.startswith("#EXT-X-KEY") and "METHOD=NONE" not in line:
            raise unsupported("Encrypted HLS formats cannot be relayed as one file")
        if line.startswith("#EXT-X-BYTERANGE"):
            raise unsupported("Byte-range HLS formats are not supported")
        if line.startswith("#EXT-X-MAP"):
            uri = _attribute(line, "URI")
            if uri is None:
                raise unsupported("The playlist has an EXT-X-MAP without a URI")
            urls.append(urljoin(base_url, uri))
            has_map = True
        elif not line.startswith("#"):
            urls.append(urljoin(base_url, line))
    if "#EXT-X-ENDLIST" not in text:
        raise unsupported("This is a live stream: watch it through the live channels instead")
    return urls, has_map


def _attribute(line: str, name: str) -> str | None:
    marker = f'{name}="'
    start = line.find(marker)
    if start < 0:
        return None
    end = line.find('"', start + len(marker))
    return line[start + len(marker) : end] if end > 0 else None


class FragmentRelay:
    mode = "fragments"

    def __init__(
        self, upstream: Upstream, *, chunk_size: int, naming: Naming, head_only: bool = False
    ) -> None:
        self._up = upstream
        self._chunk = chunk_size
        self._naming = naming
        self._head_only = head_only
        self._urls: list[str] = []
        self._index = 0
        self._offset = 0
        self._response: aiohttp.ClientResponse | None = None
        self._remaining: int | None = None
        self._attempts = Attempts()

    async def open(self) -> Head:
        ext = self._naming.ext
        if not self._head_only:
            has_map = await self._list()
            if self._up.fmt.get("protocol") in HLS_PROTOCOLS and not has_map:
                ext = "ts"  # what yt-dlp would remux: the segments themselves are MPEG-TS
            if self._urls:
                await self._open_fragment()
        elif self._up.fmt.get("protocol") in HLS_PROTOCOLS:
            ext = "ts"
        return Head(200, self._naming.headers(ext, accept_ranges="none"))

    async def chunks(self) -> AsyncIterator[bytes]:
        while self._index < len(self._urls):
            if self._response is None:
                await self._open_fragment()
            response = self._response
            assert response is not None
            want = self._chunk if self._remaining is None else min(self._chunk, self._remaining)
            data, broken = await read_block(response, want) if want else (b"", False)
            if data:
                self._offset += len(data)
                if self._remaining is not None:
                    self._remaining -= len(data)
                self._attempts.progressed()
                self._up.progressed()
                yield data
            if self._remaining == 0 or (broken is True and self._remaining is None):
                self._next_fragment()
            elif broken:
                self._drop_response()
                await self._attempts.failed(f"fragment {self._index} broke: {broken!r}")

    async def aclose(self) -> None:
        self._drop_response()

    async def _list(self) -> bool:
        fmt = self._up.fmt
        protocol = fmt.get("protocol")
        if protocol in DASH_PROTOCOLS:
            base = str(fmt.get("fragment_base_url") or "")
            self._urls = [
                str(f["url"]) if f.get("url") else urljoin(base, str(f.get("path", "")))
                for f in fmt.get("fragments") or []
            ]
            if not self._urls:
                raise unsupported("This DASH format has no fragment list")
            return True
        while True:
            try:
                response = await self._up.get()
            except NETWORK_ERRORS as exc:
                await self._attempts.failed(f"playlist request failed: {exc!r}")
                continue
            body: bytes | BaseException | None = None
            try:
                if response.status == 200:
                    body = await read_capped(response, _MAX_PLAYLIST, what="The format's playlist")
            except NETWORK_ERRORS as exc:
                body = exc
            finally:
                release(response)
            if isinstance(body, bytes):
                text = body.decode("utf-8", "replace")
                self._urls, has_map = parse_media_playlist(text, str(response.url))
                return has_map
            if body is not None:
                await self._attempts.failed(f"playlist body broke: {body!r}")
            else:
                await self._failed_status(response.status, relist=False)

    async def _open_fragment(self) -> None:
        while True:
            url = self._urls[self._index]
            offset = self._offset
            try:
                response = await self._up.get(url, byte_range=(offset, None) if offset else None)
            except NETWORK_ERRORS as exc:
                await self._attempts.failed(f"fragment request failed: {exc!r}")
                continue
            if response.status == 206 and offset:
                first, _, _ = parse_content_range(response.headers.get("Content-Range"))
                if first == offset:
                    self._take(response)
                    return
            elif response.status == 200:
                self._take(response)
                if offset and not await self._skip(offset):
                    continue
                return
            release(response)
            await self._failed_status(response.status, relist=True)

    def _take(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._remaining = response.content_length

    async def _skip(self, count: int) -> bool:
        """Discard the first `count` bytes of a response that ignored our Range."""
        assert self._response is not None
        while count > 0:
            data, broken = await read_block(self._response, min(self._chunk, count))
            count -= len(data)
            if self._remaining is not None:
                self._remaining -= len(data)
            if broken and count > 0:
                self._drop_response()
                await self._attempts.failed("fragment broke while skipping to the resume point")
                return False
        return True

    async def _failed_status(self, status: int, *, relist: bool) -> None:
        if status in REFUSED:
            await self._up.renew()
            if relist:
                count = len(self._urls)
                await self._list()
                if len(self._urls) != count:
                    raise unsupported("The format's fragments changed on re-extraction")
        elif retryable(status) or status == 206:
            await self._attempts.failed(f"upstream answered {status}")
        else:
            raise UpstreamError(f"The upstream answered {status}")

    def _next_fragment(self) -> None:
        self._drop_response()
        self._index += 1
        self._offset = 0

    def _drop_response(self) -> None:
        release(self._response)
        self._response = None
        self._remaining = None
