"""Channels that are not live (yet, or any more), demuxed lives, and the slate.

Unit tests pin the YouTube-specific choices on info dicts shaped like yt-dlp's; the
players' tests run the real app against the local imitation of YouTube
(`origin.youtube` and the yt-dlp plugin in tests/plugins), with ffmpeg as the player.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.origin import Origin
from ytproxy.live import playlist
from ytproxy.live.info import NotLive, pick_stream
from ytproxy.live.program import ProgramClock
from ytproxy.live.status import upcoming_recheck

HLS = "m3u8_native"


def video(itag: str, height: int, tbr: float) -> dict[str, Any]:
    return {
        "format_id": itag,
        "url": f"https://rr1.googlevideo.com/api/manifest/hls_playlist/expire/2000000000/itag/{itag}/index.m3u8",
        "protocol": HLS,
        "vcodec": "avc1.4d401f",
        "acodec": "none",
        "width": height * 16 // 9,
        "height": height,
        "fps": 30.0,
        "tbr": tbr,
    }


def audio(itag: str, language: str | None, preference: int, note: str) -> dict[str, Any]:
    return {
        "format_id": itag,
        "url": f"https://rr1.googlevideo.com/api/manifest/hls_playlist/expire/2000000000/itag/{itag}/index.m3u8",
        "protocol": HLS,
        "vcodec": "none",
        "acodec": "mp4a.40.2",
        "tbr": 130.0,
        "language": language,
        "language_preference": preference,
        "format_note": note,
    }


def test_demuxed_formats_without_a_master_become_an_audio_group_on_every_variant() -> None:
    info = {
        "id": "abc",
        "live_status": "is_live",
        "formats": [
            video("229", 240, 300.0),
            video("232", 720, 2000.0),
            audio("233", "en", 10, "English original (default)"),
            audio("234", "zh-Hans", -1, "Chinese"),
        ],
    }
    choice = pick_stream(info)
    assert choice.master_url is None
    master = playlist.build_master(choice.formats)
    lines = master.splitlines()
    media = [line for line in lines if line.startswith("#EXT-X-MEDIA:")]
    assert len(media) == 2
    default = next(line for line in media if "DEFAULT=YES" in line)
    assert 'LANGUAGE="en"' in default and 'NAME="English original (default)"' in default
    assert all('TYPE=AUDIO,GROUP-ID="audio"' in line and "URI=" in line for line in media)
    variants = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(variants) == 2
    assert all('AUDIO="audio"' in line for line in variants)
    assert all('CODECS="avc1.4d401f,mp4a.40.2"' in line for line in variants)
    # Audio renditions are relayed like variants: the master's URIs are all media playlists.
    assert playlist.has_audio_renditions(master, "")
    tags = [uri.tag for uri in playlist.uris(master, "")]
    assert tags.count("EXT-X-MEDIA") == 2 and tags.count("EXT-X-STREAM-INF") == 2


def test_a_muxed_master_has_no_audio_group() -> None:
    formats = [{**video("91", 144, 100.0), "acodec": "mp4a.40.5"}]
    master = playlist.build_master(pick_stream({"formats": formats, "is_live": True}).formats)
    assert "EXT-X-MEDIA" not in master and "AUDIO=" not in master


@pytest.mark.parametrize(
    ("live_status", "status"),
    [
        ("is_upcoming", "upcoming"),
        ("post_live", "ended"),
        ("was_live", "ended"),
        ("not_live", "offline"),
    ],
)
def test_live_status_decides_the_channel_status(live_status: str, status: str) -> None:
    info = {"live_status": live_status, "release_timestamp": 2_000_000_000, "formats": []}
    with pytest.raises(NotLive) as caught:
        pick_stream(info)
    assert caught.value.status == status
    assert caught.value.starts_at == 2_000_000_000


def test_an_upcoming_channel_is_asked_more_often_as_its_start_nears() -> None:
    now = 1_000_000.0
    schedule = [upcoming_recheck(now + ahead, now) for ahead in (7200, 1800, 300, 30, -30)]
    assert schedule == sorted(schedule, reverse=True)
    assert schedule[-1] <= 10 and schedule[-2] <= 10  # playable within ~10 s of the start
    assert upcoming_recheck(None, now) == 60


def test_program_numbers_keep_growing_across_slate_live_and_slate_again() -> None:
    clock = ProgramClock()
    seen: list[tuple[int, int]] = []

    def heads(text: str) -> tuple[int, int]:
        values = dict(
            line[len("#EXT-X-") :].split(":", 1)
            for line in text.splitlines()
            if line.startswith(("#EXT-X-MEDIA-SEQUENCE:", "#EXT-X-DISCONTINUITY-SEQUENCE:"))
        )
        return int(values["MEDIA-SEQUENCE"]), int(values["DISCONTINUITY-SEQUENCE"])

    for moment in (1000.0, 1004.0, 1008.0):
        seen.append(heads(clock.slate(lambda n: f"/s/{n}.ts", now=moment)))
    live = (
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
        "#EXTINF:2,\na\n#EXTINF:2,\nb\n"
    )
    first_live = heads(clock.live_playlist(live, "video1"))
    assert first_live[0] == seen[-1][0] + 3  # just after the slate's last listed segment
    assert first_live[1] > seen[-1][1]
    later = live.replace("SEQUENCE:7", "SEQUENCE:9")
    assert heads(clock.live_playlist(later, "video1"))[0] == first_live[0] + 2
    back = heads(clock.slate(lambda n: f"/s/{n}.ts", now=1012.0))
    assert back[0] > first_live[0] + 2 and back[1] > first_live[1]


def write_channel(path: Path, channel_id: str, url: str) -> None:
    path.write_text(
        f'[[channel]]\nid = "{channel_id}"\nname = "Channel {channel_id}"\nurl = "{url}"\n',
        encoding="utf-8",
    )


def video_frames(path: Path) -> list[tuple[int, float]]:
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0",
            "-show_entries", "frame=width,pts_time", "-of", "json", str(path),
        ],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    frames = json.loads(out).get("frames", [])
    return [(int(f["width"]), float(f.get("pts_time") or 0)) for f in frames if "width" in f]


def channel_row(client: httpx.Client, channel_id: str) -> dict[str, Any]:
    rows = client.get("/api/channels").json()["channels"]
    return next(row for row in rows if row["id"] == channel_id)


def audio_packets(path: Path) -> list[float]:
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "a:0",
            "-show_entries", "packet=pts_time", "-of", "json", str(path),
        ],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    packets = json.loads(out).get("packets", [])
    return [float(p["pts_time"]) for p in packets if p.get("pts_time") not in (None, "N/A")]


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["muxed", "demuxed"])
def test_a_player_opened_on_an_upcoming_channel_plays_the_slate_then_the_live(
    app_server, settings, channels_file: Path, origin: Origin, tmp_path: Path, flavour: str
) -> None:
    vid = {"muxed": "upcoming001", "demuxed": "upcomingdmx"}[flavour]
    origin.youtube.add_live(vid, handle="soon", flavour=flavour, starts_in=10)
    write_channel(channels_file, "soon", origin.youtube.watch_url(vid))
    server = app_server(settings)
    out = tmp_path / "program.ts"
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        master = client.get("/live/soon.m3u8")
        assert master.status_code == 200 and "/live/soon/program.m3u8" in master.text
        row = channel_row(client, "soon")
        assert row["status"] == "upcoming" and row["starts_at"], row
        player = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", server.url("/live/soon.m3u8"),
             "-map", "0:v:0", "-map", "0:a:0", "-c", "copy", "-f", "mpegts", str(out)],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline and player.poll() is None:
                time.sleep(0.5)
            assert player.poll() is None, "ffmpeg stopped: the program ended"
        finally:
            player.terminate()
            player.wait(timeout=20)
        assert channel_row(client, "soon")["status"] == "live"
        program = client.get("/live/soon/program.m3u8").text
    frames = video_frames(out)
    slate = [t for width, t in frames if width == 640]
    live = [t for width, t in frames if width != 640]
    assert slate, "the player saw no slate"
    assert live, "the player never got the live stream"
    assert min(live) > max(slate) - 1  # slate first, then the live
    live_seconds = max(live) - min(live)
    assert live_seconds >= 20, f"only {live_seconds:.1f} s of the live stream arrived"
    if flavour == "demuxed":
        # Each video segment muxed with the audio rendition's segment of its sequence.
        assert "/live/soon/m/" in program, program
        heard = [t for t in audio_packets(out) if min(live) - 0.5 <= t <= max(live) + 0.5]
        assert heard and max(heard) - min(heard) >= live_seconds - 2, (len(heard), live_seconds)
        for itag in (229, 233):  # fetched once each, video and audio
            fetches = origin.youtube.segment_fetches(vid, itag)
            assert fetches and set(fetches.values()) == {1}, (itag, fetches)
        muxed = len(origin.youtube.segment_fetches(vid, 229))
        assert server.live.remuxer.runs == muxed


def test_an_ended_channel_has_its_status_and_the_slate_and_never_a_5xx(
    app_server, settings, channels_file: Path, origin: Origin
) -> None:
    vid = "endedlive01"
    origin.youtube.add_live(vid, handle="done", flavour="muxed")
    origin.youtube.end_now(vid)
    write_channel(channels_file, "done", origin.youtube.watch_url(vid))
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        master = client.get("/live/done.m3u8")
        assert master.status_code == 200, master.text
        program = client.get("/live/done/program.m3u8")
        assert program.status_code == 200 and "#EXTINF" in program.text
        segment_url = next(line for line in program.text.splitlines() if "/slate/" in line)
        segment = client.get(segment_url)
        assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp2t"
        assert segment.content[:1] == b"\x47"  # MPEG-TS sync byte
        row = channel_row(client, "done")
        assert row["status"] == "ended"
        stream = client.get("/api/stream/done")
        assert stream.status_code == 503 and stream.json()["error"]["code"] == "channel_ended"
        metrics = client.get("/metrics").text
        assert 'live_channel_status{channel="done",status="ended"} 1.0' in metrics
    plain = app_server(settings, live_slate=False)
    with httpx.Client(base_url=plain.base_url, timeout=30) as client:
        response = client.get("/live/done.m3u8")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "channel_ended"
