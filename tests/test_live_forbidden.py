"""403s that are not expiry: a refused stream is re-resolved once, then held `blocked`.

The origin's YouTube imitation (`origin.youtube`) refuses a live's segments 10 s after
each player call (`reject_segments_after`) although their `expire` is hours away, as
YouTube does with a missing or rejected PO token. One viewer watches for a minute like
a player (master, variant playlist, every new segment); the gateway must not extract
on every request, must report the channel `blocked` with a reason, count the refusals
and explain them on /diagnostics. A 403 on a URL near its expiry still re-resolves as
before. `ForbiddenLog`'s decisions are also checked on a fake clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Origin
from tests.test_live_relay import uri_lines
from ytproxy.extractor import YTDLP_VERSION
from ytproxy.live.forbidden import BLOCK_BASE, BLOCK_CAP, ForbiddenLog, is_forbidden
from ytproxy.live.info import pick_stream
from ytproxy.live.resolver import wait_until_available
from ytproxy.settings import Settings

VIDEO = "forbidden01"


def start_channel(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
) -> AppServer:
    origin.youtube.add_live(VIDEO, handle="blk", flavour="muxed")
    channels_file.write_text(
        f'[[channel]]\nid = "blk"\nname = "Blocked"\nurl = "{origin.youtube.watch_url(VIDEO)}"\n',
        encoding="utf-8",
    )
    return app_server(settings)


def watch(server: AppServer, seconds: float, seen_states: set[tuple[str, str]]) -> dict[int, int]:
    """Play `/live/blk.m3u8` for `seconds` as a player does; the HTTP statuses it met.
    Adds each (status, reason) /api/channels gave the channel meanwhile to `seen_states`."""
    statuses: dict[int, int] = {}
    seen: set[str] = set()
    deadline = time.monotonic() + seconds

    def count(response: httpx.Response) -> bool:
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        return response.status_code == 200

    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            master = client.get(server.url("/live/blk.m3u8"))
            if count(master):
                variant = client.get(uri_lines(master.text)[0])
                if count(variant):
                    for segment in uri_lines(variant.text):
                        if segment not in seen:
                            seen.add(segment)
                            count(client.get(segment))
            seen_states.add(channel_state(client, server))
            time.sleep(1.0)
    return statuses


def channel_state(client: httpx.Client, server: AppServer) -> tuple[str, str]:
    channels = client.get(server.url("/api/channels")).json()["channels"]
    row = next(c for c in channels if c["id"] == "blk")
    return str(row["status"]), str(row["reason"])


def forbidden_total(metrics: str) -> float:
    found = re.search(r'^upstream_forbidden_total\{channel="blk"\} ([0-9.e+]+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_segments_refused_after_each_resolution_block_the_channel_without_hammering(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
) -> None:
    # Without the slate, so that a blocked channel's answer is the 503 itself.
    server = start_channel(origin, channels_file, settings.replace(live_slate=False), app_server)
    origin.youtube.reject_segments_after(VIDEO, 10)
    states: set[tuple[str, str]] = set()
    statuses = watch(server, 60.0, states)
    assert statuses.get(200, 0) > 10, statuses  # it did play between the refusals
    assert statuses.get(503, 0) > 0, statuses  # and then was held blocked
    assert origin.youtube.extractions(VIDEO) <= 6, (statuses, states)
    assert ("blocked", "upstream_forbidden") in states, states

    # A block lasts 30 s, then 60 s: watch on until the channel is blocked again.
    deadline = time.monotonic() + 40
    with httpx.Client(timeout=30) as client:
        while channel_state(client, server)[0] != "blocked":
            assert time.monotonic() < deadline, "the channel was not blocked again"
            watch(server, 1.0, states)
    blocked = httpx.get(server.url("/live/blk.m3u8"))
    assert blocked.status_code == 503
    assert blocked.json()["error"]["code"] == "channel_blocked", blocked.text
    assert forbidden_total(httpx.get(server.url("/metrics")).text) > 0

    report = httpx.get(server.url("/diagnostics"), headers={"Accept": "application/json"})
    diagnosed = next(c for c in report.json()["channels"] if c["id"] == "blk")
    assert diagnosed["status"] == "blocked" and diagnosed["code"] == "upstream_forbidden"
    causes = {c["cause"]: c["message"] for c in diagnosed["causes"]}
    assert set(causes) == {"pot_provider", "cookies", "egress_ip", "ytdlp", "what_to_do"}
    assert "POT_PROVIDER_URL" in causes["pot_provider"]
    assert "YTDLP_COOKIES_FILE" in causes["cookies"]
    assert "GLOBAL_PROXY" in causes["egress_ip"]
    assert YTDLP_VERSION in causes["ytdlp"]
    page = httpx.get(server.url("/diagnostics?lang=zh"), headers={"Accept": "text/html"}).text
    assert "可能的原因" in page and "出口 IP" in page and 'data-cause="ytdlp"' in page


def test_a_403_near_expiry_still_re_resolves_every_time(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
) -> None:
    origin.youtube.set_url_lifetime(45)  # `expire` is always under a minute away
    server = start_channel(origin, channels_file, settings, app_server)
    with httpx.Client(timeout=30) as client:
        variant = uri_lines(client.get(server.url("/live/blk.m3u8")).text)[0]
        for _ in range(3):
            origin.youtube.expire_all()  # every URL the gateway holds now answers 403
            time.sleep(1.2)  # past the shared playlist's short cache
            response = client.get(variant)
            assert response.status_code == 200, response.text
            assert client.get(uri_lines(response.text)[-1]).status_code == 200
        metrics = client.get(server.url("/metrics")).text
        channels = client.get(server.url("/api/channels")).json()["channels"]
    assert origin.youtube.extractions(VIDEO) == 4
    assert forbidden_total(metrics) == 0
    assert next(c for c in channels if c["id"] == "blk")["status"] == "live"


def test_only_401_and_403_far_from_expiry_count_as_forbidden() -> None:
    now = 1_800_000_000.0
    far = f"https://r1.googlevideo.com/videoplayback/expire/{int(now) + 3600}/sq/1/seg.ts"
    near = f"https://r1.googlevideo.com/videoplayback?expire={int(now) + 30}&sq=1"
    assert is_forbidden(403, far, now) and is_forbidden(401, far, now)
    assert not is_forbidden(404, far, now) and not is_forbidden(410, far, now)
    assert not is_forbidden(403, near, now)
    assert not is_forbidden(403, "https://example.com/no-expiry.ts", now)


def test_forbidden_log_re_resolves_once_then_blocks_with_a_doubling_backoff() -> None:
    clock = [1000.0]
    forbidden = ForbiddenLog(lambda: clock[0])
    assert forbidden.verdict("c", 990.0) is None  # first refusal: one fresh resolution
    assert forbidden.verdict("c", 990.0) is None  # the same resolution again: joins it
    clock[0] = 1012.0
    assert forbidden.verdict("c", 1000.0) == BLOCK_BASE  # the fresh one refused too
    assert forbidden.verdict("c", 1000.0) is None  # a straggler meets the block
    ttls = []
    for _ in range(7):
        clock[0] += 200.0
        ttls.append(forbidden.verdict("c", clock[0] - 10))
    assert ttls == [60.0, 120.0, 240.0, 480.0, BLOCK_CAP, BLOCK_CAP, BLOCK_CAP]
    # A resolution that played for minutes before its refusal starts the count again.
    clock[0] += 1000.0
    assert forbidden.verdict("c", clock[0] - 300) is None
    assert forbidden.verdict("other", 0.0) is None


def test_available_at_in_the_future_is_kept_and_waited_for() -> None:
    soon = time.time() + 0.3
    expire = int(time.time()) + 3600
    info = {
        "id": "abc",
        "live_status": "is_live",
        "formats": [
            {
                "protocol": "m3u8_native",
                "url": f"https://h.example/{i}.m3u8?expire={expire}",
                "vcodec": "avc1",
                "acodec": "mp4a",
                "tbr": 1000 * i,
                "available_at": soon,
            }
            for i in (1, 2)
        ],
    }
    choice = pick_stream(info)
    assert choice.available_at == soon
    # The deadline only guards against a hang; what matters is that it waited.
    asyncio.run(asyncio.wait_for(wait_until_available(choice.available_at), 30))
    assert time.time() >= soon - 0.01
