"""ffmpeg as a test player: record a stream with stream copy, then measure what arrived.

Players exit 0 on truncated media (DESIGN.md, "Testing offline"), so tests measure the
recording (ffprobe), never the exit code.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp


def ffmpeg_record(
    url: str,
    out: Path,
    *,
    before: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    maps: tuple[str, ...] = ("0:p:0",),
) -> subprocess.Popen[str]:
    """Start ffmpeg copying `url` into MPEG-TS at `out`: the streams `maps` names (the
    first program by default: ffmpeg reading a master otherwise pulls every variant),
    with input options `before` (`-live_start_index -1`) and output options `after`
    (`-t 8`). Its stderr is a pipe, for the caller to read."""
    mapped = [arg for spec in maps for arg in ("-map", spec)]
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-y",
         *before, "-i", url, *after, *mapped, "-c", "copy", "-f", "mpegts", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(json.loads(out.stdout)["format"]["duration"])


def uri_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def watch(
    master_url: str,
    agent: str,
    variant: int,
    seconds: float,
    on_segment: Callable[[int, bytes], None],
    *,
    start_with: int = 3,
) -> None:
    """A player: opens the master as `agent`, polls its `variant`-th media playlist every
    second for `seconds`, fetches each new segment (the last `start_with` at first) and
    hands `on_segment(sequence, body)` each one."""
    async with aiohttp.ClientSession(headers={"User-Agent": agent}) as session:
        async with session.get(master_url) as response:
            variant_url = uri_lines(await response.text())[variant]
        fetched: set[int] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            async with session.get(variant_url) as response:
                assert response.status == 200
                media = await response.text()
            found = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", media)
            first = int(found.group(1)) if found else 0
            listed = {first + i: url for i, url in enumerate(uri_lines(media))}
            wanted = (
                sorted(listed)[-start_with:]
                if not fetched
                else sorted(s for s in listed if s > max(fetched))
            )
            for sequence in wanted:
                async with session.get(listed[sequence]) as response:
                    assert response.status == 200
                    body = await response.read()
                fetched.add(sequence)
                on_segment(sequence, body)
            await asyncio.sleep(1.0)
