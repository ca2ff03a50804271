"""Analyse API: POST latency under 50 concurrent clients, and tasks per second on cached results.

`python -m bench.analyze` starts the test origin (tests.origin, in this process) and
the gateway in a subprocess of its own (`app.py`, defaults but no rate limit and a
large queue; `REDIS_URL` is passed through if set, otherwise the embedded cache), then:

1. **Submission**: 50 clients each POST 10 URLs, 500 POSTs over 50 distinct videos
   (the origin's MP4 with a distinct query each), so the gateway registers new tasks,
   joins running ones and completes cached ones while extractions run beside it.
   Prints POST latency p50/p99 (the POST answers before extraction starts, so this is
   the cost of accepting), then how long the 50 real extractions took to drain.
2. **Cached results**: 50 clients, each repeatedly POSTing one of the 50 analysed URLs
   and fetching the task (completed at once, links made on the fly), for
   `BENCH_SECONDS` (default 10). Prints completed tasks per second and the latency of
   both requests.

Figures, not verdicts: nothing here asserts. Clients, gateway and origin share the
machine's cores, and yt-dlp's extractions in phase 1 compete with the POSTs for CPU.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.live_fanout import gateway, percentile, rss_mib
from tests.origin import Origin, generate_media

CLIENTS = 50
POSTS_PER_CLIENT = 10
VIDEOS = 50
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))


def main() -> None:
    with tempfile.TemporaryDirectory() as media_dir:
        origin = Origin(generate_media(Path(media_dir)))
        with origin:
            urls = [f"{origin.vod_url}?video={n}" for n in range(VIDEOS)]
            env = {"ANALYZE_RATE_LIMIT": "0", "ANALYZE_QUEUE_SIZE": "100000"}
            with gateway({}, **env) as (base, pid):
                backend = "redis" if os.environ.get("REDIS_URL") else "embedded"
                print(f"cache: {backend}; {CLIENTS} concurrent clients")
                asyncio.run(_submission(base, urls))
                extractions = origin.count("/watch/vod")
                print(f"extractions (origin requests for the video page): {extractions}")
                asyncio.run(_cached(base, urls))
                now, peak = rss_mib(pid)
                print(f"gateway RSS now / peak: {now:.0f} / {peak:.0f} MiB")


async def _submission(base: str, urls: list[str]) -> None:
    latencies: list[float] = []
    task_ids: set[str] = set()
    async with _client(base) as client:

        async def submitter(number: int) -> None:
            for step in range(POSTS_PER_CLIENT):
                url = urls[(number * POSTS_PER_CLIENT + step) % len(urls)]
                started = time.perf_counter()
                async with client.post("/v1/analyze", json={"url": url}) as response:
                    response.raise_for_status()
                    body = await response.json()
                latencies.append(time.perf_counter() - started)
                task_ids.add(body["task_id"])

        started = time.perf_counter()
        await asyncio.gather(*(submitter(n) for n in range(CLIENTS)))
        posted = time.perf_counter() - started
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        print(
            f"submission: {len(latencies)} POSTs in {posted:.2f} s "
            f"({len(latencies) / posted:.0f}/s), POST latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
        pending = set(task_ids)
        states: dict[str, int] = {}
        while pending:
            for task_id in list(pending):
                async with client.get(f"/v1/tasks/{task_id}") as response:
                    body = await response.json()
                if body["state"] in {"completed", "failed"}:
                    states[body["state"]] = states.get(body["state"], 0) + 1
                    pending.discard(task_id)
            await asyncio.sleep(0.2)
        drained = time.perf_counter() - started
        print(f"  {len(task_ids)} distinct tasks, all ended {drained:.1f} s after the first POST")
        print(f"  final states: {states}")


async def _cached(base: str, urls: list[str]) -> None:
    posts: list[float] = []
    polls: list[float] = []
    completed = 0
    deadline = time.perf_counter() + SECONDS
    async with _client(base) as client:

        async def worker(number: int) -> None:
            nonlocal completed
            step = 0
            while time.perf_counter() < deadline:
                url = urls[(number + step) % len(urls)]
                step += 1
                started = time.perf_counter()
                async with client.post("/v1/analyze", json={"url": url}) as response:
                    task_id = (await response.json())["task_id"]
                posts.append(time.perf_counter() - started)
                started = time.perf_counter()
                async with client.get(f"/v1/tasks/{task_id}") as response:
                    body = await response.json()
                polls.append(time.perf_counter() - started)
                if body["state"] == "completed":
                    completed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    print(
        f"cached results: {completed} tasks completed in {elapsed:.1f} s = "
        f"{completed / elapsed:.0f} tasks/s (POST + GET each)"
    )
    for name, values in (("POST", posts), ("GET ", polls)):
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        print(f"  {name} latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def _client(base: str) -> aiohttp.ClientSession:
    # aiohttp rather than httpx: httpx's async pool, not the gateway, capped the rate
    # at ~300 requests/s with 50 connections here.
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    return aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(60))


if __name__ == "__main__":
    main()
