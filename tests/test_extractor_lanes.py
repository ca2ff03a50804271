"""The extractor's lanes when callers give up on yt-dlp threads that keep running.

Real yt-dlp (generic extractor) runs against a page server on the test's own loop
that holds every request until the test lets it go, so a yt-dlp thread stays blocked
in its socket read exactly as long as the test wants; the live channel it resolves
meanwhile comes from the local origin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.local_http import serving
from ytproxy.errors import ExtractionError
from ytproxy.extractor import Extractor
from ytproxy.metrics import Metrics
from ytproxy.settings import Settings


class HeldPages:
    """Answers every page request only once `release` is set; counts arrivals."""

    def __init__(self) -> None:
        self.base = ""
        self.count = 0
        self.release = asyncio.Event()
        self._arrivals: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/page/{name}", self.page)
        return app

    def url(self, name: str) -> str:
        return f"{self.base}/page/{name}"

    async def arrived(self, count: int) -> None:
        """Wait until the `count`-th request has come in."""
        await self._arrivals[count].wait()

    async def page(self, request: web.Request) -> web.Response:
        self.count += 1
        self._arrivals[self.count].set()
        await self.release.wait()
        return web.Response(
            text="<html><body>nothing to extract</body></html>", content_type="text/html"
        )


@pytest.fixture
async def held() -> AsyncIterator[HeldPages]:
    server = HeldPages()
    async with serving(server.app()) as server.base:
        yield server
        server.release.set()  # held pages answer before the server is cleaned up


def in_flight(metrics: Metrics, lane: str) -> float | None:
    return metrics.registry.get_sample_value("ytdlp_requests_in_flight", {"lane": lane})


async def test_given_up_analyses_keep_their_threads_and_the_live_lane_still_gets_one(
    held: HeldPages, origin
) -> None:
    # Three threads: the analyse lane may use two, one is always the live lane's.
    settings = Settings(
        secret_key="x" * 20,
        max_concurrent_ytdlp_requests=3,
        ytdlp_timeout=60,  # the held socket reads must outlast the test
        ytdlp_max_retries=0,
        allow_private_networks=True,
    )
    metrics = Metrics()
    extractor = Extractor(settings, metrics)
    try:
        given_up = []
        for n, name in enumerate(["a", "b"], start=1):
            task = asyncio.create_task(extractor.extract(held.url(name), lane="analyse"))
            await held.arrived(n)  # its yt-dlp thread is now blocked in a socket read
            given_up.append(task)
        for task in given_up:
            task.cancel()  # the caller gives up, as a timeout does; the thread runs on
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert in_flight(metrics, "analyse") == 2

        third = asyncio.create_task(extractor.extract(held.url("c"), lane="analyse"))
        live = asyncio.create_task(extractor.extract(origin.channel_url("fast"), lane="live"))
        third_arrived = asyncio.create_task(held.arrived(3))
        done, _ = await asyncio.wait({live, third_arrived}, return_when=asyncio.FIRST_COMPLETED)
        # Had the given-up analyses freed their slots, the third would have taken the
        # last thread and the live resolution would wait for the held pages.
        assert not third_arrived.done(), "a third analysis took the live lane's thread"
        assert live in done
        assert live.result()["is_live"] is True
        assert held.count == 2
        assert in_flight(metrics, "analyse") == 2
        assert in_flight(metrics, "live") == 0

        held.release.set()
        # The stuck threads end; the third analysis gets a slot, and fails on the page.
        with pytest.raises(ExtractionError) as caught:
            await third
        assert caught.value.code == "unsupported_url"
        assert held.count == 3
        assert in_flight(metrics, "analyse") == 0
        assert in_flight(metrics, "live") == 0
        # Every slot is back: two analyses and a live resolution run side by side.
        results = await asyncio.gather(
            extractor.extract(origin.vod_url),
            extractor.extract(origin.vod_url),
            extractor.extract(origin.channel_url("fast"), lane="live"),
        )
        assert all(r["formats"] for r in results)
        assert in_flight(metrics, "analyse") == in_flight(metrics, "live") == 0
        third_arrived.cancel()
    finally:
        extractor.close()
