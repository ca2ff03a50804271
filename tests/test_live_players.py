"""Real players against the gateway: ffmpeg watching through URL expiries, the M3U
read by a real playlist parser, and fifty simulated viewers sharing one upstream.

What arrived is measured (ffprobe duration, bytes compared with the origin's files,
the origin's request counters), never an exit code: players exit 0 on truncated
media. These tests take real time: one minute and half a minute, and a few seconds.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest

from tests.apps import AppServer
from tests.origin import Origin
from tests.players import ffmpeg_record, ffprobe_duration, watch
from tests.test_live_relay import live_app_fixture, uri_lines  # noqa: F401

_IPTV_ATTRIBUTE = re.compile(r'([\w-]+)="([^"]*)"')


def problems(stderr: str) -> list[str]:
    pattern = re.compile(r"error|403|404|failed|invalid|unable", re.I)
    return [line for line in stderr.splitlines() if pattern.search(line)]


@pytest.mark.slow
def test_ffmpeg_plays_a_minute_while_origin_urls_expire(
    live_app: Callable[..., AppServer], origin: Origin, tmp_path: Path
) -> None:
    origin.set_url_lifetime(20)  # every origin URL dies 20 s after it is issued
    server = live_app("news")
    out = tmp_path / "recorded.ts"
    wall = 62.0
    started = time.monotonic()
    player = ffmpeg_record(server.url("/live/news.m3u8"), out, before=("-live_start_index", "-1"))
    time.sleep(wall / 2)
    origin.expire_all()  # and once, everything at the same time: the reactive path
    time.sleep(wall / 2)
    player.send_signal(2)  # SIGINT: ffmpeg finishes the file and exits
    _, stderr = player.communicate(timeout=30)
    elapsed = time.monotonic() - started
    recorded = ffprobe_duration(out)
    assert problems(stderr) == [], stderr
    assert abs(recorded - elapsed) <= 0.1 * elapsed, (recorded, elapsed)
    # 20 s URLs over a minute: the gateway re-resolved several times, ahead of expiry
    # and after the forced one, and the player never saw any of it.
    assert server.core.extractor.calls >= 4


def iptv_extinf(line: str, lineno: int, data: dict[str, Any], state: dict[str, Any]) -> bool:
    """m3u8's hook for the IPTV form `#EXTINF:-1 key="value" ...,Name`, which strict
    HLS parsing rejects; the attributes are collected in `data["iptv"]`."""
    if not line.startswith("#EXTINF:"):
        return False
    head, _, title = line.removeprefix("#EXTINF:").partition(",")
    duration, _, attributes = head.partition(" ")
    state["segment"] = {"duration": float(duration), "title": title}
    state["expect_segment"] = True
    data.setdefault("iptv", []).append(dict(_IPTV_ATTRIBUTE.findall(attributes)))
    return True


def test_the_m3u_parses_and_every_entry_plays_with_ffmpeg(
    live_app: Callable[..., AppServer], origin: Origin, channels_file: Path, tmp_path: Path
) -> None:
    server = live_app("news")
    channels_file.write_text(
        channels_file.read_text() + f'\n[[channel]]\nid = "sports"\nname = "Sport \\"24\\""\n'
        f'url = "{origin.channel_url("sports")}"\n'
        'logo = "https://img.example/s.png"\n'
        f'\n[[channel]]\nid = "off"\nname = "Off"\nurl = "{origin.channel_url("off")}"\n'
        "enabled = false\n",
        encoding="utf-8",
    )
    server.live.book.reload_now()
    text = httpx.get(server.url("/playlist.m3u"), timeout=20).text
    assert text.startswith(f'#EXTM3U x-tvg-url="{server.url("/epg.xml")}"')
    parsed = m3u8.loads(text, custom_tags_parser=iptv_extinf)
    entries = list(zip(parsed.segments, parsed.data["iptv"], strict=True))
    assert [(s.title, s.duration, s.uri) for s, _ in entries] == [
        ("Channel news", -1, server.url("/live/news.m3u8")),
        ("Sport '24'", -1, server.url("/live/sports.m3u8")),
    ]
    attributes = entries[1][1]
    # The logo comes through the gateway: players cannot reach the image host either.
    assert attributes.pop("tvg-logo").startswith(server.url("/v1/image/"))
    assert attributes == {
        "tvg-id": "sports.ytproxy",
        "tvg-chno": "2",
        "tvg-name": "Sport '24'",
        "group-title": "",
    }
    assert entries[0][1]["group-title"] == "Tests"
    for number, (segment, _) in enumerate(entries):
        out = tmp_path / f"entry{number}.ts"
        player = ffmpeg_record(segment.uri, out, after=("-t", "4"))
        _, stderr = player.communicate(timeout=60)
        assert problems(stderr) == [], stderr
        assert ffprobe_duration(out) >= 3.5


def _record(
    name: str,
    seen: dict[str, set[int]],
    digests: dict[tuple[str, int], set[str]],
    sequence: int,
    body: bytes,
) -> None:
    seen[name].add(sequence)
    digests[(name, sequence)].add(hashlib.sha256(body).hexdigest())


async def test_fifty_viewers_cause_one_upstream_request_per_segment_per_variant(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    server = live_app("news")
    seen: dict[str, set[int]] = defaultdict(set)
    digests: dict[tuple[str, int], set[str]] = defaultdict(set)
    await asyncio.gather(
        *(
            watch(
                server.url("/live/news.m3u8"),
                f"viewer-{n}",
                n % 2,
                30.0,
                functools.partial(_record, "low" if n % 2 == 0 else "high", seen, digests),
            )
            for n in range(50)
        )
    )
    assert server.live.viewers.count("news") == 50
    for variant in origin.media.hls_variants:
        watched = seen[variant.name]
        assert len(watched) >= 14  # half a minute of 2 s segments, plus the first three
        prefix = f"/hls/news/{variant.name}/seg/"
        requested = {path: n for path, n in origin.requests.items() if path.startswith(prefix)}
        assert sum(requested.values()) == len(watched), (variant.name, requested, watched)
        assert set(requested) == {f"{prefix}{s}.ts" for s in watched}
        for sequence in watched:
            expected = hashlib.sha256(variant.segments[sequence % 90].read_bytes()).hexdigest()
            assert digests[(variant.name, sequence)] == {expected}
    # Playlist refreshes are shared too: far fewer upstream than viewer requests.
    assert origin.count("/hls/news/low/index.m3u8") < 50
    assert origin.count("/channel/news/live") == 1
