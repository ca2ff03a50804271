"""GLOBAL_PROXY carries all outbound traffic: extraction, the relays, and merges.

A real forward proxy on loopback (`tests.forward_proxy`) counts what it carries, and
the googlevideo-like origin counts what it receives. With GLOBAL_PROXY set, the two
counts are equal after each kind of work: every request that reached the origin came
through the proxy.

- extraction: yt-dlp's `proxy` param (an analysis of the DASH "video");
- relaying: the app's one aiohttp session (a single-format download's pieces: the
  direct-only piece client, `ytproxy.pieces`, is not built with GLOBAL_PROXY; and a
  live channel's playlists and segments);
- merging: ffmpeg reads its inputs from the gateway's own part URLs on loopback (not
  through the proxy, which is right: they never leave the host), and the gateway
  fetches those parts upstream through the proxy.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apps import AppServer
from tests.forward_proxy import ForwardProxy
from tests.origin import Origin
from tests.test_analyse_origin import analyse


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


def origin_total(origin: Origin) -> int:
    return sum(origin.requests.values())


def target_of(origin: Origin) -> str:
    return origin.base_url.removeprefix("http://").rstrip("/")


def test_extraction_relay_and_merge_all_go_through_the_proxy(
    app_server, settings, origin: Origin, proxy: ForwardProxy, tmp_path: Path
) -> None:
    server: AppServer = app_server(settings, global_proxy=proxy.url, download_piece_size=65536)
    target = target_of(origin)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        task = analyse(client, origin.dash_url)
        assert task["state"] == "completed", task["error"]
        extraction = proxy.count(target)
        assert extraction >= 2  # the watch page's redirect and the manifest
        assert any(p.startswith("/dash/manifest.mpd") for p in proxy.paths)
        assert origin_total(origin) == extraction

        result = task["result"]
        audio = result["formats"]["audio_only"][0]
        single = client.get(audio["download_url"])
        assert single.status_code == 200 and len(single.content) > 1000
        assert any(p.startswith(f"/dash/file/{audio['format_id']}") for p in proxy.paths)
        relayed = proxy.count(target)
        assert relayed > extraction
        assert origin_total(origin) == relayed

        pair = result["recommended"]["best_overall"]
        assert len(pair["format_ids"]) == 2
        out = tmp_path / f"merged.{pair['ext']}"
        merged = client.get(pair["download_url"])
        assert merged.status_code == 200
        out.write_bytes(merged.content)
    streams = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
            capture_output=True,
            check=True,
            text=True,
            timeout=60,
        ).stdout
    )["streams"]
    assert sorted(s["codec_type"] for s in streams) == ["audio", "video"]
    for format_id in pair["format_ids"]:
        assert any(p.startswith(f"/dash/file/{format_id}") for p in proxy.paths), format_id
    assert proxy.count(target) > relayed
    assert origin_total(origin) == proxy.count(target)
    # ffmpeg's inputs are the gateway's own part URLs, read on loopback, not via the proxy.
    assert proxy.count(f"127.0.0.1:{server.port}") == 0


def test_live_channel_relay_goes_through_the_proxy(
    app_server, settings, origin: Origin, proxy: ForwardProxy, tmp_path: Path
) -> None:
    channels = tmp_path / "live.toml"
    channels.write_text(
        f'[[channel]]\nid = "news"\nname = "News"\nurl = "{origin.channel_url("news")}"\n',
        encoding="utf-8",
    )
    server = app_server(settings, global_proxy=proxy.url, channels_file=channels)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        master = client.get("/live/news.m3u8")
        assert master.status_code == 200, master.text
        variant_uri = next(
            line for line in master.text.splitlines() if line and not line.startswith("#")
        )
        media = client.get(variant_uri)
        assert media.status_code == 200
        segment_uri = next(
            line for line in media.text.splitlines() if line and not line.startswith("#")
        )
        segment = client.get(segment_uri)
        assert segment.status_code == 200 and len(segment.content) > 1000
    paths = list(proxy.paths)
    assert any(p.startswith("/channel/news/live") for p in paths)
    assert any("/seg/" in p for p in paths)
    assert origin_total(origin) == proxy.count(target_of(origin))


def test_without_global_proxy_nothing_goes_through_it(
    app_server, settings, origin: Origin, proxy: ForwardProxy
) -> None:
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert analyse(client, origin.vod_url)["state"] == "completed"
    assert origin_total(origin) > 0
    assert proxy.count(target_of(origin)) == 0
