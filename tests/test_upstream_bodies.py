"""The shared upstream module (`ytproxy.upstream`): capped whole-body reads and the
playlist fetches that use them, and `ClientWatch`, the disconnect watcher.

A small aiohttp server on the test's own loop sends playlists the hard way: trickled
in many small chunked writes, or chunked and far bigger than any playlist, or with a
`Content-Length` that announces too much and then nothing at all. The download relay
is exercised through the real app (uvicorn on a socket), as in
`test_download_upstreams.py`. `ClientWatch` is held to its three cases with an ASGI
`receive` that disconnects on demand, and to the server's disconnect extension: a
stand-in that loses the connection on demand, and the real server (uvicorn with
`server.uvicorn_config`) for a connection lost before the watch began.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import pytest
import uvicorn
from aiohttp import web

from tests.apps import AppServer
from tests.local_http import serving
from tests.test_download_upstreams import SEGMENTS, link, publish
from ytproxy.live.upstream import fetch_text
from ytproxy.metrics import Metrics
from ytproxy.server import uvicorn_config
from ytproxy.settings import Settings
from ytproxy.upstream import (
    DISCONNECT_EXTENSION,
    BodyTooLarge,
    ClientWatch,
    read_capped,
)

HUGE = 64 * 1024 * 1024  # far past the 8 MiB playlist cap of both jobs, and socket buffers
_BLOCK = b"#EXT-X-DISCONTINUITY\n" * 3000  # ~62 KiB of valid-looking playlist lines


class Trickler:
    """Playlists sent slowly, hugely, or with a lying `Content-Length`."""

    def __init__(self) -> None:
        self.base = ""
        self.huge_sent = 0
        self.huge_ended = asyncio.Event()
        self.hold = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/trickle.m3u8", self.trickle)
        app.router.add_get("/seg/{index}", self.segment)
        app.router.add_get("/huge.m3u8", self.huge)
        app.router.add_get("/announced.m3u8", self.announced)
        return app

    def vod_playlist(self) -> bytes:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2"]
        for i in range(len(SEGMENTS)):
            lines += ["#EXTINF:2.0,", f"{self.base}/seg/{i}"]
        lines.append("#EXT-X-ENDLIST")
        return ("\n".join(lines) + "\n").encode()

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        response.content_type = "application/vnd.apple.mpegurl"
        await response.prepare(request)
        body = self.vod_playlist()
        for start in range(0, len(body), 20):
            await response.write(body[start : start + 20])
            await asyncio.sleep(0.01)  # each piece its own TCP write: the pace, not a check
        await response.write_eof()
        return response

    async def segment(self, request: web.Request) -> web.Response:
        return web.Response(body=SEGMENTS[int(request.match_info["index"])])

    async def huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(b"#EXTM3U\n")
            while self.huge_sent < HUGE:
                await response.write(_BLOCK)
                self.huge_sent += len(_BLOCK)
            await response.write_eof()
        except ConnectionError:
            pass
        finally:
            self.huge_ended.set()
        return response

    async def announced(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = HUGE
        await response.prepare(request)
        await self.hold.wait()  # not a byte of the body until the test ends
        return response


@pytest.fixture
async def trickler() -> AsyncIterator[Trickler]:
    server = Trickler()
    async with serving(server.app()) as server.base:
        yield server
        server.hold.set()  # held handlers return before the server is cleaned up


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_trickled_chunked_body_is_read_to_its_last_line(
    trickler: Trickler, http: aiohttp.ClientSession
) -> None:
    async with http.get(trickler.base + "/trickle.m3u8") as response:
        body = await read_capped(response, 1024 * 1024, what="The playlist")
    assert body == trickler.vod_playlist()
    assert body.decode().splitlines()[-1] == "#EXT-X-ENDLIST"


async def test_an_oversized_chunked_body_is_refused_without_reading_it_all(
    trickler: Trickler, http: aiohttp.ClientSession
) -> None:
    limit = 256 * 1024
    async with http.get(trickler.base + "/huge.m3u8") as response:
        assert response.content_length is None
        with pytest.raises(BodyTooLarge) as caught:
            await read_capped(response, limit, what="The playlist")
        assert response.content.total_bytes < HUGE
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_too_large"
    assert caught.value.message.startswith("The playlist is larger than")
    # Leaving the response closed the connection: the server stopped well short.
    await trickler.huge_ended.wait()
    assert trickler.huge_sent < HUGE


async def test_a_body_announced_too_large_is_refused_before_any_of_it_arrives(
    trickler: Trickler, http: aiohttp.ClientSession
) -> None:
    async with http.get(trickler.base + "/announced.m3u8") as response:
        with pytest.raises(BodyTooLarge):
            await read_capped(response, 1024 * 1024, what="The playlist")


async def test_a_body_exactly_at_the_cap_is_accepted(
    trickler: Trickler, http: aiohttp.ClientSession
) -> None:
    playlist = trickler.vod_playlist()
    async with http.get(trickler.base + "/trickle.m3u8") as response:
        assert await read_capped(response, len(playlist), what="The playlist") == playlist
    async with http.get(trickler.base + "/trickle.m3u8") as response:
        with pytest.raises(BodyTooLarge):
            await read_capped(response, len(playlist) - 1, what="The playlist")


async def test_live_playlist_fetch_keeps_a_trickled_playlist_whole(
    trickler: Trickler, http: aiohttp.ClientSession
) -> None:
    text, final_url = await fetch_text(
        http, trickler.base + "/trickle.m3u8", kind="live_playlist", metrics=Metrics()
    )
    assert text.encode() == trickler.vod_playlist()
    assert final_url == trickler.base + "/trickle.m3u8"


async def test_live_playlist_fetch_refuses_an_oversized_chunked_playlist_once(
    trickler: Trickler, http: aiohttp.ClientSession
) -> None:
    metrics = Metrics()
    with pytest.raises(BodyTooLarge) as caught:
        await fetch_text(http, trickler.base + "/huge.m3u8", kind="live_playlist", metrics=metrics)
    assert "127.0.0.1" not in caught.value.message
    await trickler.huge_ended.wait()
    assert trickler.huge_sent < HUGE
    sample = {"kind": "live_playlist", "status": "200"}
    assert metrics.registry.get_sample_value("upstream_requests_total", sample) == 1


@pytest.fixture
def gateway(app_server: Callable[..., AppServer], settings: Settings) -> AppServer:
    return app_server(settings, chunk_size=16 * 1024)


async def download_vod(gateway: AppServer, name: str, playlist: str) -> httpx.Response:
    """Downloads through the gateway a video whose one format is the HLS VOD `playlist`."""
    fmt = {
        "format_id": name, "url": playlist, "protocol": "m3u8_native",
        "ext": "mp4", "vcodec": "avc1.4d401e", "acodec": "mp4a.40.2",
    }  # fmt: skip
    publish(gateway, f"https://video.test/{name}", [fmt])
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.get(link(gateway, f"https://video.test/{name}", name))


async def test_a_trickled_vod_playlist_downloads_whole_instead_of_being_taken_for_live(
    gateway: AppServer, trickler: Trickler
) -> None:
    response = await download_vod(gateway, "slow", f"{trickler.base}/trickle.m3u8")
    assert response.status_code == 200, response.text
    assert response.content == b"".join(SEGMENTS)


async def test_an_oversized_vod_playlist_is_refused_with_502(
    gateway: AppServer, trickler: Trickler
) -> None:
    response = await download_vod(gateway, "huge", f"{trickler.base}/huge.m3u8")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_too_large"
    await trickler.huge_ended.wait()
    assert trickler.huge_sent < HUGE


class _Client:
    """An ASGI `receive` whose `http.disconnect` comes when `leave()` is called."""

    def __init__(self) -> None:
        self._gone = asyncio.Event()

    def leave(self) -> None:
        self._gone.set()

    async def receive(self) -> dict[str, object]:
        await self._gone.wait()
        return {"type": "http.disconnect"}


async def test_client_watch_lets_a_block_finish_while_the_client_stays() -> None:
    client = _Client()
    async with ClientWatch(client.receive) as watch:
        await asyncio.sleep(0.01)
    assert not watch.left
    await asyncio.sleep(0)
    client.leave()  # after the block: nothing left to cancel
    await asyncio.sleep(0.01)
    assert not watch.left


async def test_client_watch_ends_the_block_when_the_client_leaves() -> None:
    client = _Client()
    reached_end = False
    async with ClientWatch(client.receive) as watch:
        asyncio.get_running_loop().call_later(0.01, client.leave)
        await asyncio.sleep(30)  # an upstream read that would go on and on
        reached_end = True
    assert watch.left and not reached_end
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0)  # the task is usable afterwards (clean-up awaits)


async def test_client_watch_passes_other_cancellations_through() -> None:
    client = _Client()

    async def body() -> None:
        async with ClientWatch(client.receive):
            await asyncio.sleep(30)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()  # a watchdog or shutdown, not the client
    with pytest.raises(asyncio.CancelledError):
        await task


class _Server:
    """The server side of `DISCONNECT_EXTENSION`, with the connection lost on demand."""

    def __init__(self) -> None:
        self.callbacks: set[Callable[[], None]] = set()

    def register(self, callback: Callable[[], None]) -> Callable[[], None]:
        self.callbacks.add(callback)
        return lambda: self.callbacks.discard(callback)

    def lose(self) -> None:
        for callback in list(self.callbacks):
            callback()

    async def receive(self) -> dict[str, object]:
        raise AssertionError("with the extension, nothing waits on receive()")


async def test_client_watch_uses_the_servers_disconnect_extension() -> None:
    server = _Server()
    scope = {"extensions": {DISCONNECT_EXTENSION: server.register}}
    reached_end = False
    async with ClientWatch(server.receive, scope) as watch:
        assert len(server.callbacks) == 1
        asyncio.get_running_loop().call_later(0.01, server.lose)
        await asyncio.sleep(30)
        reached_end = True
    assert watch.left and not reached_end
    async with ClientWatch(server.receive, scope) as watch:
        await asyncio.sleep(0)
    assert not watch.left and not server.callbacks  # unregistered at the end


async def test_a_watch_begun_after_the_client_left_hears_it_from_the_real_server(
    settings: Settings,
) -> None:
    """The server's extension, when the connection is already lost as a response
    begins watching (the client left while the app was busy before it)."""
    outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert (await receive())["type"] == "http.request"
        assert (await receive())["type"] == "http.disconnect"  # gone before the watch
        async with ClientWatch(receive, scope) as watch:
            await asyncio.sleep(30)
        outcome.set_result(watch.left)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(app, settings, graceful_shutdown=1))
    serving_task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        writer.close()
        # A hang guard, not a timing claim: without the callback the block sleeps 30 s.
        assert await asyncio.wait_for(outcome, 10) is True
    finally:
        server.should_exit = True
        await serving_task
