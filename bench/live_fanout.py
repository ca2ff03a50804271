"""Live fan-out: many viewers of one channel, and what reaches the upstream.

`python -m bench.live_fanout` starts the test origin (tests.origin, in this process)
and the gateway in a subprocess of its own (so its RSS is its own), then, for 1, 10,
100 and 500 viewers of a fresh channel each, runs simulated players for a while:
each polls one variant's playlist every second and fetches each new segment, half
on each variant. It prints, per round: upstream segment requests per distinct
segment watched (1.00 is the goal), segment time-to-first-byte p50/p99 as the
viewers saw it, and the gateway's resident memory (now and peak).

Figures, not verdicts: nothing here asserts. Viewers run in one event loop here, so
at 500 the client side shares the two cores with the gateway and the origin.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx

from tests.origin import Origin, generate_media

ROUNDS = (1, 10, 100, 500)
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
SECRET = "bench-secret-key-0123456789abcdef"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gateway(channels: dict[str, str], **env: str) -> Iterator[tuple[str, int]]:
    """The gateway in a subprocess serving `channels` (id -> URL); yields (base URL, pid)."""
    workdir = Path(tempfile.mkdtemp(prefix="ytproxy-bench-"))
    channels_file = workdir / "channels.toml"
    channels_file.write_text(
        "".join(
            f'[[channel]]\nid = "{cid}"\nname = "{cid}"\nurl = "{url}"\n\n'
            for cid, url in channels.items()
        ),
        encoding="utf-8",
    )
    port = _free_port()
    environment = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SECRET_KEY": SECRET,
        "CHANNELS_FILE": str(channels_file),
        "ALLOW_PRIVATE_NETWORKS": "true",
        "MAX_CONCURRENT_STREAMS": "10000",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, str(root / "app.py")], cwd=workdir, env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.1)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of `pid`, in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def viewer(
    session: aiohttp.ClientSession,
    base: str,
    channel: str,
    number: int,
    seconds: float,
    seen: dict[int, set[int]],
    ttfb: list[float],
) -> None:
    await asyncio.sleep(random.uniform(0, 2))  # players do not all start on the same tick
    agent = {"User-Agent": f"bench-viewer-{number}"}
    variant = number % 2
    async with session.get(f"{base}/live/{channel}.m3u8", headers=agent) as response:
        variant_url = _uris(await response.text())[variant]
    newest = -1
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with session.get(variant_url, headers=agent) as response:
            media = await response.text()
        first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", media).group(1))  # type: ignore[union-attr]
        listed = list(enumerate(_uris(media), start=first))
        todo = listed[-3:] if newest < 0 else [(s, u) for s, u in listed if s > newest]
        for sequence, url in todo:
            started = time.monotonic()
            async with session.get(url, headers=agent) as response:
                await response.content.readany()
                ttfb.append(time.monotonic() - started)
                await response.read()
            newest = max(newest, sequence)
            seen[variant].add(sequence)
        await asyncio.sleep(1.0)


async def run_round(base: str, channel: str, viewers: int) -> tuple[int, list[float]]:
    seen: dict[int, set[int]] = defaultdict(set)
    ttfb: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(
            *(viewer(session, base, channel, n, SECONDS, seen, ttfb) for n in range(viewers))
        )
    return sum(len(s) for s in seen.values()), ttfb


def main() -> None:
    with tempfile.TemporaryDirectory() as media_dir:
        origin = Origin(generate_media(Path(media_dir)))
        with origin:
            _rounds(origin)


def _rounds(origin: Origin) -> None:
    channels = {f"fan{n}": origin.channel_url(f"fan{n}") for n in ROUNDS}
    with gateway(channels) as (base, pid):
        print(f"{SECONDS:.0f} s per round; segments of 2 s, two variants, viewers split evenly")
        print(f"gateway RSS at start: {rss_mib(pid)[0]:.0f} MiB")
        print("viewers  upstream req/segment  TTFB p50    TTFB p99    RSS now / peak")
        for viewers in ROUNDS:
            channel = f"fan{viewers}"
            watched, ttfb = asyncio.run(run_round(base, channel, viewers))
            variants = origin.media.hls_variants
            upstream = sum(origin.count(f"/hls/{channel}/{v.name}/seg/") for v in variants)
            now, peak = rss_mib(pid)
            p50, p99 = percentile(ttfb, 0.5) * 1000, percentile(ttfb, 0.99) * 1000
            print(
                f"{viewers:7d}  {upstream / max(watched, 1):20.2f}  {p50:8.1f} ms  {p99:8.1f} ms"
                f"  {now:5.0f} / {peak:.0f} MiB"
            )


if __name__ == "__main__":
    main()
