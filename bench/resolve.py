"""Channel resolution: cold versus cached latency, and single-flight under load.

`python -m bench.resolve` starts the test origin and the gateway (a subprocess, see
`bench.live_fanout.gateway`) and measures, for the embedded cache and, when
`redis-server` is installed, for Redis:

- cold: the first `/live/{id}.m3u8` of a channel (a yt-dlp extraction plus the
  master playlist fetch), over a few channels;
- cached: the same request again, p50/p99 over many sequential requests;
- 100 concurrent cold requests for one channel: wall time, p50/p99, and how many
  extractions the gateway ran (from its `ytdlp_requests_total` metric).

Figures, not verdicts: nothing here asserts.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bench.live_fanout import gateway, percentile
from tests.origin import Origin, generate_media

COLD_CHANNELS = 5
CACHED_REQUESTS = 200
CONCURRENT = 100


def extractions(client: httpx.Client, base: str) -> int:
    text = client.get(base + "/metrics").text
    return int(
        sum(float(v) for v in re.findall(r"^ytdlp_requests_total\{[^}]*\} (\S+)$", text, re.M))
    )


async def concurrent_cold(base: str, channel: str) -> tuple[float, list[float], list[int]]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:

        async def one() -> tuple[float, int]:
            started = time.monotonic()
            response = await client.get(f"{base}/live/{channel}.m3u8")
            return time.monotonic() - started, response.status_code

        started = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
        wall = time.monotonic() - started
    return wall, [r[0] for r in results], [r[1] for r in results]


def measure(origin: Origin, label: str, **env: str) -> None:
    channels = {f"cold{n}": origin.channel_url(f"cold{n}") for n in range(COLD_CHANNELS)}
    channels["herd"] = origin.channel_url("herd")
    with gateway(channels, **env) as (base, _pid), httpx.Client(timeout=60) as client:
        cold: list[float] = []
        for n in range(COLD_CHANNELS):
            started = time.monotonic()
            client.get(f"{base}/live/cold{n}.m3u8").raise_for_status()
            cold.append(time.monotonic() - started)
        cached: list[float] = []
        for _ in range(CACHED_REQUESTS):
            started = time.monotonic()
            client.get(f"{base}/live/cold0.m3u8").raise_for_status()
            cached.append(time.monotonic() - started)
        before = extractions(client, base)
        wall, latencies, statuses = asyncio.run(concurrent_cold(base, "herd"))
        herd = extractions(client, base) - before
    ok = statuses.count(200)
    print(f"[{label}]")
    print(
        f"  cold   p50 {percentile(cold, 0.5) * 1000:7.1f} ms  max {max(cold) * 1000:7.1f} ms"
        f"  ({COLD_CHANNELS} channels)"
    )
    print(
        f"  cached p50 {percentile(cached, 0.5) * 1000:7.1f} ms  p99 "
        f"{percentile(cached, 0.99) * 1000:7.1f} ms  ({CACHED_REQUESTS} requests)"
    )
    print(
        f"  {CONCURRENT} concurrent cold: wall {wall * 1000:.0f} ms, p50 "
        f"{percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f}"
        f" ms, {ok}/{CONCURRENT} OK, extractions: {herd}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as media_dir:
        origin = Origin(generate_media(Path(media_dir)))
        with origin:
            measure(origin, "embedded cache")
            if shutil.which("redis-server"):
                from tests.redis_server import RedisServer

                with RedisServer() as redis:
                    measure(origin, "redis", REDIS_URL=redis.url)


if __name__ == "__main__":
    main()
