"""The relays against upstreams the origin does not imitate: HLS and DASH fragment
lists, and a file far larger than any buffer (for backpressure).

A small aiohttp server runs on the test's own loop; the video's sources are stored
in the gateway's cache directly (the shape `ytproxy.sources` keeps), so no
extraction is involved.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.apps import AppServer
from tests.local_http import serving
from ytproxy.download.links import download_path
from ytproxy.settings import Settings

SEGMENTS = [hashlib.sha256(bytes([i])).digest() * 2000 for i in range(5)]  # 64000 B each
INIT = b"\x00\x00\x00\x18ftypiso6" + b"\x00" * 12
BIG = 256 * 1024 * 1024
_PATTERN = bytes(range(256)) * 256  # 64 KiB


class Upstream:
    """HLS/DASH fragments and a big synthetic file, with Range and one-shot drops."""

    def __init__(self) -> None:
        self.base = ""
        self.drops: dict[str, int] = {}
        self.ranges: list[tuple[str, str | None]] = []
        self.big_sent = 0
        self._big_sending: Any = None  # the connection of the piece being sent, if any
        self._big_seen = -1

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/hls/{name}.m3u8", self.playlist)
        app.router.add_get("/seg/{name}", self.segment)
        app.router.add_get("/big", self.big)
        app.router.add_get("/unsized", self.unsized)
        return app

    async def playlist(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:2"]
        if name == "encrypted":
            lines.append('#EXT-X-KEY:METHOD=AES-128,URI="/key"')
        if name == "fmp4":
            lines.append('#EXT-X-MAP:URI="/seg/init"')
        for i in range(len(SEGMENTS)):
            lines += ["#EXTINF:2.0,", f"/seg/{i}" if i % 2 else f"{self.base}/seg/{i}"]
        if name != "live":
            lines.append("#EXT-X-ENDLIST")
        return web.Response(text="\n".join(lines) + "\n")

    async def segment(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        data = INIT if name == "init" else SEGMENTS[int(name)]
        header = request.headers.get("Range")
        self.ranges.append((name, header))
        start = int(header.removeprefix("bytes=").split("-")[0]) if header else 0
        response = web.StreamResponse(status=206 if header else 200)
        response.content_length = len(data) - start
        if header:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        drop = self.drops.pop(name, None)
        if drop is not None:
            response.force_close()
        await response.prepare(request)
        await response.write(data[start : start + drop] if drop is not None else data[start:])
        return response

    async def big(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Range", "")
        self.ranges.append(("big", header))
        first, _, last = header.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) if last else BIG - 1, BIG - 1)
        response = web.StreamResponse(status=206)
        response.headers["Content-Range"] = f"bytes {start}-{end}/{BIG}"
        response.content_length = end - start + 1
        await response.prepare(request)
        self._big_sending = request.protocol
        position = start
        try:
            while position <= end:
                offset = position % len(_PATTERN)
                block = _PATTERN[offset : offset + min(len(_PATTERN) - offset, end + 1 - position)]
                await response.write(block)
                position += len(block)
                self.big_sent += len(block)
        except ConnectionError:
            pass
        finally:
            self._big_sending = None
        return response

    async def unsized(self, request: web.Request) -> web.StreamResponse:
        """A server that knows no ranges or sizes: 200, the body chunked, in two writes."""
        self.ranges.append(("unsized", request.headers.get("Range")))
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for part in (SEGMENTS[2], SEGMENTS[3]):
            await response.write(part)
        await response.write_eof()
        return response

    def big_held_back(self) -> bool:
        """True once nothing has been sent since the last call and no piece is being
        sent, or the one being sent waits on a full socket: nobody reads any more."""
        seen, self._big_seen = self._big_seen, self.big_sent
        sending = self._big_sending
        return self.big_sent == seen and (sending is None or bool(sending.writing_paused))


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Polls `predicate`; the deadline only guards against a hang."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def big_digest() -> bytes:
    """sha256 of the whole synthetic file, computed block by block."""
    digest = hashlib.sha256()
    for _ in range(BIG // len(_PATTERN)):
        digest.update(_PATTERN)
    return digest.digest()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    async with serving(server.app()) as server.base:
        yield server


@pytest.fixture
def gateway(app_server: Callable[..., AppServer], settings: Settings) -> AppServer:
    return app_server(settings, chunk_size=16 * 1024)


def publish(server: AppServer, source_url: str, formats: list[dict[str, Any]]) -> None:
    info = {"id": "synthetic", "title": "synthetic", "duration": 10, "formats": formats}
    server.call(lambda: server.sources.store(source_url, info))


def link(server: AppServer, source_url: str, format_id: str, ext: str = "mp4") -> str:
    path = download_path(
        server.core.signer, 3600, source_url=source_url, format_ids=[format_id],
        title="片段", ext=ext,
    )  # fmt: skip
    return server.url(path)


def hls_format(upstream: Upstream, name: str) -> dict[str, Any]:
    return {
        "format_id": name, "url": f"{upstream.base}/hls/{name}.m3u8", "protocol": "m3u8_native",
        "ext": "mp4", "vcodec": "avc1.4d401e", "acodec": "mp4a.40.2",
    }  # fmt: skip


async def test_hls_format_is_one_ts_stream_and_a_segment_cut_short_is_resumed(
    gateway: AppServer, upstream: Upstream
) -> None:
    publish(gateway, "https://video.test/hls", [hls_format(upstream, "vod")])
    upstream.drops["2"] = 20_000
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(link(gateway, "https://video.test/hls", "vod"))
    assert response.status_code == 200
    assert response.content == b"".join(SEGMENTS)
    assert response.headers["accept-ranges"] == "none"
    assert "content-length" not in response.headers
    assert response.headers["content-type"] == "video/mp2t"
    assert response.headers["content-disposition"].endswith("%E7%89%87%E6%AE%B5.ts")
    assert ("2", "bytes=20000-") in upstream.ranges


async def test_hls_format_with_an_init_segment_starts_with_it_and_keeps_its_container(
    gateway: AppServer, upstream: Upstream
) -> None:
    publish(gateway, "https://video.test/fmp4", [hls_format(upstream, "fmp4")])
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(link(gateway, "https://video.test/fmp4", "fmp4"))
    assert response.content == INIT + b"".join(SEGMENTS)
    assert response.headers["content-type"] == "video/mp4"


@pytest.mark.parametrize("name", ["live", "encrypted"])
async def test_live_or_encrypted_hls_is_refused_with_422(
    gateway: AppServer, upstream: Upstream, name: str
) -> None:
    publish(gateway, f"https://video.test/{name}", [hls_format(upstream, name)])
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(link(gateway, f"https://video.test/{name}", name))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unsupported_format"


async def test_dash_fragments_are_relayed_in_order_as_one_stream(
    gateway: AppServer, upstream: Upstream
) -> None:
    fmt = {
        "format_id": "dash", "protocol": "http_dash_segments", "ext": "mp4",
        "url": f"{upstream.base}/manifest.mpd", "fragment_base_url": f"{upstream.base}/seg/",
        "fragments": [{"path": "init"}, *({"path": str(i)} for i in range(5))],
        "vcodec": "avc1.4d401e", "acodec": "none",
    }  # fmt: skip
    publish(gateway, "https://video.test/dash", [fmt])
    upstream.drops["0"] = 1000
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(link(gateway, "https://video.test/dash", "dash"))
    assert response.content == INIT + b"".join(SEGMENTS)
    assert response.headers["content-type"] == "video/mp4"


async def test_a_slow_client_holds_the_upstream_back_and_a_big_file_arrives_intact(
    gateway: AppServer, upstream: Upstream
) -> None:
    fmt = {
        "format_id": "big", "url": f"{upstream.base}/big", "protocol": "https", "ext": "mp4",
        "filesize": BIG, "vcodec": "avc1.4d401e", "acodec": "mp4a.40.2",
    }  # fmt: skip
    publish(gateway, "https://video.test/big", [fmt])
    url = link(gateway, "https://video.test/big", "big")
    async with httpx.AsyncClient(timeout=60) as client, client.stream("GET", url) as response:
        assert response.headers["content-length"] == str(BIG)
        chunks = response.aiter_raw()
        received = bytearray()
        while len(received) < 1024 * 1024:
            received += await anext(chunks)
        assert await wait_for(upstream.big_held_back)
        # The client has read 1 MiB of 256 and stopped: the upstream has sent about the
        # socket buffers' worth more, not the file (nor even one 10 MiB piece).
        assert upstream.big_sent < 16 * 1024 * 1024
        digest = hashlib.sha256(received)
        total = len(received)
        async for chunk in chunks:
            digest.update(chunk)
            total += len(chunk)
    assert total == BIG
    assert digest.digest() == big_digest()
    pieces = [r for name, r in upstream.ranges if name == "big"]
    assert pieces[:2] == [
        f"bytes=0-{10 * 1024 * 1024 - 1}",
        f"bytes={10 * 1024 * 1024}-{20 * 1024 * 1024 - 1}",
    ]
    assert len(pieces) == BIG // (10 * 1024 * 1024) + 1


async def test_a_wrong_filesize_from_ytdlp_gives_way_to_the_upstreams_own_size(
    gateway: AppServer, upstream: Upstream
) -> None:
    fmt = {
        "format_id": "file", "url": f"{upstream.base}/seg/1", "protocol": "https", "ext": "m4a",
        "filesize": 999, "vcodec": "none", "acodec": "mp4a.40.2",
    }  # fmt: skip
    publish(gateway, "https://video.test/file", [fmt])
    url = link(gateway, "https://video.test/file", "file", ext="m4a")
    async with httpx.AsyncClient(timeout=30) as client:
        whole = await client.get(url)
        tail = await client.get(url, headers={"Range": "bytes=-100"})
    assert whole.headers["content-length"] == str(len(SEGMENTS[1]))
    assert whole.content == SEGMENTS[1]
    assert whole.headers["content-type"] == "audio/mp4"
    assert tail.status_code == 206 and tail.content == SEGMENTS[1][-100:]
    assert tail.headers["content-range"] == f"bytes 63900-63999/{len(SEGMENTS[1])}"


async def test_an_upstream_without_ranges_or_sizes_is_relayed_to_its_end(
    gateway: AppServer, upstream: Upstream
) -> None:
    fmt = {
        "format_id": "unsized", "url": f"{upstream.base}/unsized", "protocol": "https",
        "ext": "mp4", "vcodec": "avc1.4d401e", "acodec": "mp4a.40.2",
    }  # fmt: skip
    publish(gateway, "https://video.test/unsized", [fmt])
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(link(gateway, "https://video.test/unsized", "unsized"))
    assert response.status_code == 200
    assert "content-length" not in response.headers  # nobody knew it
    assert response.content == SEGMENTS[2] + SEGMENTS[3]
    first_piece = f"bytes=0-{gateway.core.settings.download_piece_size - 1}"
    assert upstream.ranges == [("unsized", first_piece)]  # one request, answered whole
