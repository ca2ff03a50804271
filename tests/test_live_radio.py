"""Radio entries (`ytproxy/live/radio.py`): the M3U's audio entries and
`/live/{id}/audio.m3u8`, against the local imitation of YouTube (`origin.youtube`),
with ffmpeg as the player and ffprobe judging what arrived."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.origin import Origin


def uri_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def write_channel(path: Path, channel_id: str, url: str, extra: str = "radio = true\n") -> None:
    path.write_text(
        f'[[channel]]\nid = "{channel_id}"\nname = "Channel {channel_id}"\nurl = "{url}"\n' + extra,
        encoding="utf-8",
    )


def stream_kinds(path: Path) -> tuple[list[str], float]:
    """The codec types of a recording's streams, and its duration."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type:format=duration",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    probed = json.loads(out)
    kinds = sorted(s["codec_type"] for s in probed.get("streams", []))
    return kinds, float(probed.get("format", {}).get("duration") or 0)


def test_the_m3u_lists_radio_entries_and_an_audio_only_channel_plays_audio(
    app_server, settings, channels_file: Path
) -> None:
    channels_file.write_text(
        '[[channel]]\nid = "tv"\nname = "News, 24"\nurl = "https://x.example/tv"\n'
        "radio = true\n"
        '[[channel]]\nid = "fm"\nname = "Music"\nurl = "https://x.example/fm"\n'
        "audio_only = true\n"
        '[[channel]]\nid = "plain"\nname = "Plain"\nurl = "https://x.example/plain"\n',
        encoding="utf-8",
    )
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        text = client.get("/playlist.m3u").text
        rows = {row["id"]: row for row in client.get("/api/channels").json()["channels"]}
    lines = text.splitlines()
    entries = [
        (lines[i], lines[i + 1]) for i, line in enumerate(lines) if line.startswith("#EXTINF")
    ]
    assert len(entries) == 4, text
    (tv, tv_url), (tv_radio, tv_radio_url), (fm, fm_url), (plain, plain_url) = entries
    assert tv_url == server.url("/live/tv.m3u8") and 'radio="' not in tv
    assert tv_radio_url == server.url("/live/tv/audio.m3u8")
    assert 'radio="true"' in tv_radio and 'tvg-name="News‚ 24 (radio)"' in tv_radio
    assert tv_radio.endswith(",News‚ 24 (radio)")
    # The radio entry shares the channel's guide id and number (Kodi numbers radio apart).
    ids = [re.search(r'tvg-id="([^"]*)" tvg-chno="(\d+)"', line) for line in (tv, tv_radio)]
    assert ids[0] and ids[1] and ids[0].groups() == ids[1].groups() == (ids[0][1], "1")
    assert fm_url == server.url("/live/fm/audio.m3u8")
    assert 'radio="true"' in fm and fm.endswith(",Music")
    assert plain_url == server.url("/live/plain.m3u8") and 'radio="' not in plain
    assert rows["tv"]["audio_url"] == server.url("/live/tv/audio.m3u8")
    assert rows["plain"]["audio_url"] is None


@pytest.mark.slow
def test_ffmpeg_records_30_s_of_a_muxed_lives_audio_across_a_url_expiry(
    app_server, settings, channels_file: Path, origin: Origin, tmp_path: Path
) -> None:
    vid = "radiomux001"
    origin.youtube.set_url_lifetime(15)
    origin.youtube.add_live(vid, handle="radio", flavour="muxed")
    write_channel(channels_file, "r", origin.youtube.watch_url(vid))
    server = app_server(settings)
    out = tmp_path / "radio.ts"
    started = time.monotonic()
    player = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-y",
         "-live_start_index", "-1", "-i", server.url("/live/r/audio.m3u8"),
         "-map", "0", "-c", "copy", "-f", "mpegts", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(30)
        assert player.poll() is None, "ffmpeg stopped early: " + (
            player.stderr.read() if player.stderr else ""
        )
        player.send_signal(signal.SIGINT)  # ffmpeg finishes the file on SIGINT
        _, stderr = player.communicate(timeout=20)
    finally:
        if player.poll() is None:
            player.kill()
            player.wait()
    wall = time.monotonic() - started
    kinds, recorded = stream_kinds(out)
    print(f"recorded {recorded:.1f} s of {wall:.1f} s: {kinds}")
    assert kinds == ["audio"], stderr
    assert abs(recorded - wall) <= 0.1 * wall, (recorded, wall, stderr)
    assert origin.youtube.extractions(vid) >= 2
    # The audio came from the lowest variant; the taller one was never fetched.
    assert origin.youtube.count(vid, itag=92, kind="segment") == 0


async def listen(base_url: str, agent: str, seconds: float, seen: set[int]) -> None:
    """A radio player: polls the audio playlist every second, fetches each new segment."""
    async with aiohttp.ClientSession(headers={"User-Agent": agent}) as session:
        fetched: set[int] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            async with session.get(f"{base_url}/live/r/audio.m3u8") as response:
                assert response.status == 200, await response.text()
                media = await response.text()
            first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", media).group(1))  # type: ignore[union-attr]
            listed = {first + i: url for i, url in enumerate(uri_lines(media))}
            wanted = sorted(listed)[-2:] if not fetched else [s for s in listed if s > max(fetched)]
            for sequence in sorted(wanted):
                assert "/live/r/a/" in listed[sequence]
                async with session.get(listed[sequence]) as response:
                    assert response.status == 200
                    assert response.content_type == "video/mp2t"
                    assert (await response.read())[:1] == b"\x47"
                fetched.add(sequence)
                seen.add(sequence)
            await asyncio.sleep(1.0)


async def test_ten_listeners_of_a_muxed_live_cause_one_fetch_and_one_ffmpeg_run_per_segment(
    app_server, settings, channels_file: Path, origin: Origin
) -> None:
    vid = "radiomux010"
    origin.youtube.add_live(vid, handle="radio", flavour="muxed")
    write_channel(channels_file, "r", origin.youtube.watch_url(vid))
    server = app_server(settings)
    seen: set[int] = set()
    await asyncio.gather(*(listen(server.base_url, f"listener-{n}", 20.0, seen) for n in range(10)))
    assert server.live.viewers.count("r") == 10
    fetches = origin.youtube.segment_fetches(vid, 91)
    assert len(seen) >= 8, seen
    assert fetches == dict.fromkeys(seen, 1), (fetches, seen)
    assert server.live.remuxer.runs == len(seen)
    assert origin.youtube.count(vid, itag=92) == 0


def test_a_demuxed_lives_audio_entry_relays_its_audio_rendition_without_remuxing(
    app_server, settings, channels_file: Path, origin: Origin, tmp_path: Path
) -> None:
    vid = "radiodmx001"
    origin.youtube.add_live(vid, handle="radio", flavour="demuxed")
    write_channel(channels_file, "d", origin.youtube.watch_url(vid), "audio_only = true\n")
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        media = client.get("/live/d/audio.m3u8")
        assert media.status_code == 200, media.text
        segments = uri_lines(media.text)
        assert segments and all("/live/d/s/" in url for url in segments)
        data = b""
        for url in segments[-2:]:
            segment = client.get(url)
            assert segment.status_code == 200
            data += segment.content
    (tmp_path / "audio.ts").write_bytes(data)
    assert stream_kinds(tmp_path / "audio.ts")[0] == ["audio"]
    assert origin.youtube.segment_fetches(vid, 233)
    assert origin.youtube.count(vid, itag=269) == origin.youtube.count(vid, itag=229) == 0
    assert server.live.remuxer.runs == 0


def test_an_ended_channels_audio_entry_answers_the_slate_or_its_status(
    app_server, settings, channels_file: Path, origin: Origin
) -> None:
    vid = "radioend001"
    origin.youtube.add_live(vid, handle="radio", flavour="muxed")
    origin.youtube.end_now(vid)
    write_channel(channels_file, "e", origin.youtube.watch_url(vid))
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        media = client.get("/live/e/audio.m3u8")
        assert media.status_code == 200, media.text
        assert "#EXTINF" in media.text and "/live/e/slate/" in media.text
    plain = app_server(settings, live_slate=False)
    with httpx.Client(base_url=plain.base_url, timeout=30) as client:
        response = client.get("/live/e/audio.m3u8")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "channel_ended"
