"""IPTV details: quality caps and channel numbers (issue 12, items 2 and 4)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import m3u8
import pytest

from tests.origin import Origin
from ytproxy.live.channels import ChannelsError, parse_channels
from ytproxy.live.quality import cap_for, capped_master

MASTER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=426x240,CODECS="avc1.4d401e,mp4a.40.2"
low/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1500000,RESOLUTION=1280x720,CODECS="avc1.4d401f,mp4a.40.2"
hd/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,RESOLUTION=1280x720,URI="hd/iframes.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=700000,RESOLUTION=854x480
sd/index.m3u8
"""
BASE = "https://up.example/live/"


def test_variants_over_the_cap_leave_the_master_with_their_tag_lines() -> None:
    capped = capped_master(MASTER, BASE, 480)
    parsed = m3u8.loads(capped)
    assert sorted(p.stream_info.resolution[1] for p in parsed.playlists) == [240, 480]
    assert "hd/" not in capped and "1280x720" not in capped
    assert capped_master(MASTER, BASE, None) == MASTER


def test_a_cap_below_every_variant_keeps_the_lowest() -> None:
    parsed = m3u8.loads(capped_master(MASTER, BASE, 144))
    assert [p.uri for p in parsed.playlists] == ["low/index.m3u8"]


def test_the_lower_of_the_global_and_the_channel_cap_wins() -> None:
    [channel] = parse_channels(
        {"channel": [{"id": "a", "name": "A", "url": "https://x.example/", "max_height": 720}]}
    )
    assert cap_for(None, channel) == 720
    assert cap_for(480, channel) == 480
    assert cap_for(1080, channel) == 720


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_height", 10), ("max_height", "480"), ("number", 0), ("number", True), ("radio", 1)],
)
def test_bad_numbers_and_flags_are_refused_naming_the_field(field: str, value: object) -> None:
    table = {"id": "a", "name": "A", "url": "https://x.example/", field: value}
    with pytest.raises(ChannelsError, match=f"field '{field}'"):
        parse_channels({"channel": [table]})


def test_channel_numbers_follow_the_file_and_its_number_fields(
    app_server, settings, channels_file: Path
) -> None:
    tables = [
        ("one", None, True),
        ("ten", 10, True),
        ("off", None, False),
        ("eleven", None, True),
        ("dup", 10, True),  # taken: the next free number
    ]
    channels_file.write_text(
        "".join(
            f'[[channel]]\nid = "{cid}"\nname = "{cid}"\nurl = "https://x.example/{cid}"\n'
            + (f"number = {number}\n" if number else "")
            + ("" if enabled else "enabled = false\n")
            for cid, number, enabled in tables
        ),
        encoding="utf-8",
    )
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        text = client.get("/playlist.m3u").text
        numbers = dict(re.findall(r'tvg-id="([^".]+)\.ytproxy" tvg-chno="(\d+)"', text))
        assert numbers == {"one": "1", "ten": "10", "eleven": "11", "dup": "12"}
        rows = {row["id"]: row["number"] for row in client.get("/api/channels").json()["channels"]}
        assert rows == {"one": 1, "ten": 10, "off": None, "eleven": 11, "dup": 12}
        page = client.get("/channels", headers={"Accept": "text/html"}).text
        assert '<span class="channel-number"' in page and ">12</span>" in page


@pytest.mark.slow
def test_a_capped_channel_never_offers_nor_fetches_the_taller_variant(
    app_server, settings, channels_file: Path, origin: Origin, tmp_path: Path
) -> None:
    vid = "capped00001"
    origin.youtube.add_live(vid, handle="cap", flavour="muxed")  # itag 91 144p, 92 240p
    channels_file.write_text(
        f'[[channel]]\nid = "cap"\nname = "Capped"\nurl = "{origin.youtube.watch_url(vid)}"\n'
        "max_height = 144\n",
        encoding="utf-8",
    )
    server = app_server(settings)
    out = tmp_path / "capped.ts"
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        master = m3u8.loads(client.get("/live/cap.m3u8").text)
        assert [p.stream_info.resolution for p in master.playlists] == [(256, 144)]
        row = next(r for r in client.get("/api/channels").json()["channels"] if r["id"] == "cap")
        assert row["max_height"] == 144
        started = time.monotonic()
        player = subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", server.url("/live/cap.m3u8"),
             "-t", "30", "-c", "copy", "-f", "mpegts", str(out)],
            capture_output=True, timeout=120,
        )  # fmt: skip
        wall = time.monotonic() - started
    assert player.returncode == 0, player.stderr.decode()
    assert origin.youtube.count(vid, itag=92) == 0
    assert origin.youtube.count(vid, itag=91, kind="segment") >= 10
    probed = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=height",
         "-of", "csv=p=0", str(out)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "144" in probed
    assert float(probed[-1]) >= min(25.0, wall * 0.8)
