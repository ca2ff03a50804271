"""A playlist's ZIP: the gateway's memory while it streams a ZIP with a 2 GiB entry.

`python -m bench.zip` starts the synthetic upstream of `bench.download` (files of any
size from one 1 MiB pattern in memory, with Range; here also `/feed.rss`, a playlist
of those files) and the gateway, each in its own process. It analyses the feed
through the API (yt-dlp's generic extractor lists the RSS as a playlist), asks for a
ZIP of its entries (`POST /v1/zip`) and downloads it to nowhere, sampling the
gateway's RSS every 20 ms. It prints, for a ZIP of one 100 MiB entry and for a ZIP of
a 100 MiB and a 2 GiB entry: the archive's size, the rate, the gateway's peak RSS
during the transfer (it should not grow with the archive), and whether the archive
ends with a ZIP end-of-central-directory record.

Figures, not verdicts: nothing here asserts.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.download import MIB, PeakRss, rate, synthetic_upstream
from bench.live_fanout import gateway, rss_mib

_EOCD = b"PK\x05\x06"


async def _analyse(session: aiohttp.ClientSession, base: str, url: str) -> str:
    async with session.post(f"{base}/v1/analyze", json={"url": url}) as response:
        task_id = str((await response.json())["task_id"])
    while True:
        async with session.get(f"{base}/v1/tasks/{task_id}") as response:
            body = await response.json()
        if body["state"] == "completed":
            return task_id
        if body["state"] == "failed":
            raise RuntimeError(f"the feed's analysis failed: {body['error']}")
        await asyncio.sleep(0.1)


async def _zip(session: aiohttp.ClientSession, base: str, task_id: str) -> tuple[int, bool]:
    async with session.post(f"{base}/v1/zip", json={"task_id": task_id, "page": 1}) as response:
        path = (await response.json())["zip_url"]
    total, tail = 0, b""
    async with session.get(base + path) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(MIB):
            total += len(chunk)
            tail = (tail + chunk)[-65536:]
    return total, _EOCD in tail


async def run(upstream: str, base: str, pid: int) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        print(f"gateway RSS after start-up: {rss_mib(pid)[0]:.0f} MiB")
        for files in ("100m", "100m,2g"):
            task_id = await _analyse(session, base, f"{upstream}/feed.rss?files={files}")
            with PeakRss(pid) as sampler:
                started = time.monotonic()
                size, ends_well = await _zip(session, base, task_id)
                seconds = time.monotonic() - started
            print(
                f"   ZIP of {files:>9}: {size / MIB:6.0f} MiB  peak RSS {sampler.peak:6.1f} MiB"
                f"  at {rate(size, seconds).strip()}"
                f"  {'EOCD present' if ends_well else 'NO end record'}"
            )
        print(f"   process peak (VmHWM) so far: {rss_mib(pid)[1]:.1f} MiB")


def main() -> None:
    with synthetic_upstream() as upstream, gateway({}, ANALYZE_RATE_LIMIT="0") as (base, pid):
        asyncio.run(run(upstream, base, pid))


if __name__ == "__main__":
    main()
