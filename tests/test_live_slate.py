"""The slate of a channel that is not live: the segment ffmpeg makes (probed), its
text, single flight, the bounded cache, ffmpeg killed on timeout and cancellation,
the looping playlist, and ffmpeg playing that playlist in real time across the
discontinuity before every repeat."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import stat
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp import web

from tests.local_http import serving
from ytproxy.errors import ServiceUnavailable
from ytproxy.live import slate
from ytproxy.live.slate import (
    SEGMENT_SECONDS,
    Font,
    Slates,
    SlateText,
    ffmpeg_args,
    run_process,
    slate_media_playlist,
    slate_sequence,
)

UPCOMING = SlateText("新闻台 / News", "upcoming", datetime(2026, 11, 3, 12, 0, tzinfo=UTC))
BEIJING = timezone(timedelta(hours=8))


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(out)


def counting_ffmpeg(tmp_path: Path) -> tuple[str, Path]:
    """A wrapper that notes each run in a file, then is the real ffmpeg."""
    runs = tmp_path / "runs"
    script = tmp_path / "ffmpeg"
    script.write_text(f'#!/bin/sh\necho run >> "{runs}"\nexec "{shutil.which("ffmpeg")}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), runs


def stuck_ffmpeg(tmp_path: Path) -> tuple[str, Path]:
    """A stand-in for an ffmpeg that hangs: it writes its pid, then sleeps."""
    pid_file = tmp_path / "pid"
    script = tmp_path / "ffmpeg-stuck"
    script.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 60\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), pid_file


def run_count(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


async def wait_for_pid(pid_file: Path) -> int:
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            return int(pid_file.read_text())
        await asyncio.sleep(0.02)
    raise AssertionError("the process never started")


def process_is_gone(pid: int) -> bool:
    """Gone and reaped: a zombie still has its /proc entry."""
    return not Path(f"/proc/{pid}").exists()


def cjk_fonts() -> list[str]:
    if shutil.which("fc-list") is None:
        return []
    out = subprocess.run(["fc-list", "-f", "%{file}\n", ":lang=zh"], capture_output=True)
    return out.stdout.decode().split()


# The text


def test_status_lines_are_chinese_and_english_with_the_time_and_its_utc_offset() -> None:
    now = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    assert UPCOMING.lines(tz=BEIJING, now=now) == (
        "新闻台 / News",
        "直播将于 20:00 开始 · Starts at 20:00 UTC+8",
    )
    assert UPCOMING.lines(tz=UTC, now=now) == (
        "新闻台 / News",
        "直播将于 12:00 开始 · Starts at 12:00 UTC",
    )
    later = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert UPCOMING.lines(tz=timezone(timedelta(hours=-3, minutes=-30)), now=later)[1] == (
        "直播将于 11月3日 08:30 开始 · Starts Nov 3, 08:30 UTC-3:30"
    )
    assert SlateText("新闻台", "ended").lines()[1] == "直播已结束 · Ended"
    assert SlateText("新闻台", "offline").lines()[1] == "暂未直播 · Offline"
    assert SlateText("新闻台", "error").lines()[1] == "暂未直播 · Offline"
    assert SlateText("新闻台", "upcoming").lines()[1] == "即将开始 · Starting soon"


def test_status_lines_without_a_cjk_font_are_english() -> None:
    now = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    assert UPCOMING.lines(tz=BEIJING, now=now, cjk=False)[1] == "Starts at 20:00 UTC+8"
    assert SlateText("News", "ended").lines(cjk=False) == ("News", "Ended")
    assert SlateText("a\nb\x00", "offline").lines(cjk=False) == ("ab", "Offline")


def test_drawtext_quotes_every_character_of_a_channel_name() -> None:
    args = ffmpeg_args(("a'b:c,d;[e]\\f%{pts}", "x"), Font("/f'o:o.ttf", cjk=True))
    graph = args[args.index("-filter_complex") + 1]
    assert "expansion='\\''none'\\''" in graph
    assert "a'\\''\\'\\'''\\''b:c,d;[e]\\f%{pts}" in graph


# The segment


async def test_slate_segment_is_one_h264_and_one_aac_stream_of_segment_seconds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "slate.ts"
    path.write_bytes(await Slates().segment(UPCOMING))
    probe = ffprobe(path)
    assert probe["format"]["format_name"] == "mpegts"
    video, audio = sorted(probe["streams"], key=lambda s: s["codec_type"], reverse=True)
    assert len(probe["streams"]) == 2
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "Main", "yuv420p")
    assert (video["width"], video["height"]) == (640, 360)
    assert int(video["nb_read_packets"]) == SEGMENT_SECONDS * 10
    assert (audio["codec_name"], audio["profile"], audio["channels"]) == ("aac", "LC", 2)
    assert audio["sample_rate"] in ("44100", "48000")
    # 1024 samples a packet: within one packet of the segment, not past it.
    audio_seconds = int(audio["nb_read_packets"]) * 1024 / int(audio["sample_rate"])
    assert SEGMENT_SECONDS - 0.05 <= audio_seconds <= SEGMENT_SECONDS + 0.05
    assert float(probe["format"]["duration"]) == pytest.approx(SEGMENT_SECONDS, abs=0.1)
    first = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert first.startswith("K"), "the segment starts with a keyframe"


async def test_chinese_text_is_drawn_with_a_cjk_font_when_one_is_installed(
    tmp_path: Path,
) -> None:
    installed = cjk_fonts()
    if not installed:
        pytest.skip("no CJK font: bash scripts/install-system-deps.sh test installs one")
    slates = Slates()
    font = await slates.font()
    assert font is not None and font.cjk and font.path in installed
    args = ffmpeg_args(UPCOMING.lines(), font)
    graph = args[args.index("-filter_complex") + 1]
    assert font.path in graph and "新闻台" in graph and "直播将于" in graph
    # Drawn: the picture with the text differs from the same slate without it.
    with_text = await slates.segment(UPCOMING)
    without = await run_process(ffmpeg_args(UPCOMING.lines(), None))
    frames = []
    for data in (with_text, without):
        (tmp_path / "s.ts").write_bytes(data)
        frames.append(
            subprocess.run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-i",
                    str(tmp_path / "s.ts"),
                    "-frames:v",
                    "1",
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "gray",
                    "-",
                ],
                check=True,
                capture_output=True,
            ).stdout
        )
    assert len(set(frames[1])) == 1, "no text: one flat colour"
    assert len(set(frames[0])) > 10, "text: anti-aliased glyphs"


async def test_without_any_font_the_slate_has_no_text_and_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def no_font() -> None:
        return None

    # The one boundary we cannot remove here: the fonts installed on this machine.
    monkeypatch.setattr(slate, "find_font", no_font)
    slates = Slates()
    with caplog.at_level(logging.WARNING, logger="ytproxy.live.slate"):
        first = await slates.segment(SlateText("新闻台", "ended"))
        await slates.segment(SlateText("新闻台", "offline"))
    assert first.startswith(b"\x47")
    assert [r.getMessage() for r in caplog.records if "font" in r.getMessage()] == [
        "No font found: live slates show no text (install fonts-wqy-microhei)"
    ]


async def test_concurrent_requests_for_one_text_run_ffmpeg_once(tmp_path: Path) -> None:
    ffmpeg, runs = counting_ffmpeg(tmp_path)
    slates = Slates(ffmpeg=ffmpeg)
    results = await asyncio.gather(*(slates.segment(UPCOMING) for _ in range(8)))
    assert run_count(runs) == 1
    assert len({bytes(r) for r in results}) == 1
    await slates.segment(UPCOMING)
    assert run_count(runs) == 1, "then it is cached"
    await slates.segment(SlateText("新闻台 / News", "ended"))
    assert run_count(runs) == 2


async def test_the_cache_is_bounded_in_bytes_dropping_the_least_recent(tmp_path: Path) -> None:
    ffmpeg, runs = counting_ffmpeg(tmp_path)
    one = len(await Slates().segment(UPCOMING))
    slates = Slates(ffmpeg=ffmpeg, max_bytes=int(one * 2.5))
    texts = [SlateText(f"channel {n}", "offline") for n in range(4)]
    for text in texts:
        await slates.segment(text)
    assert run_count(runs) == 4
    assert slates.cached_bytes <= one * 2.5
    await slates.segment(texts[3])
    assert run_count(runs) == 4, "the most recent is kept"
    await slates.segment(texts[0])
    assert run_count(runs) == 5, "the oldest was dropped"


# ffmpeg that hangs


async def test_a_timed_out_ffmpeg_is_killed_and_reaped(tmp_path: Path) -> None:
    ffmpeg, pid_file = stuck_ffmpeg(tmp_path)
    slates = Slates(ffmpeg=ffmpeg, timeout=1.0, font=Font("/nonexistent.ttf", cjk=True))
    with pytest.raises(ServiceUnavailable) as caught:
        await slates.segment(UPCOMING)
    assert caught.value.code == "slate_unavailable"
    assert process_is_gone(int(pid_file.read_text()))


async def test_cancelling_a_run_kills_and_reaps_ffmpeg(tmp_path: Path) -> None:
    ffmpeg, pid_file = stuck_ffmpeg(tmp_path)
    run = asyncio.create_task(run_process([ffmpeg]))
    pid = await wait_for_pid(pid_file)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert process_is_gone(pid)


async def test_closing_the_slates_kills_the_ffmpeg_under_way(tmp_path: Path) -> None:
    ffmpeg, pid_file = stuck_ffmpeg(tmp_path)
    slates = Slates(ffmpeg=ffmpeg, font=Font("/nonexistent.ttf", cjk=True))
    waiting = asyncio.create_task(slates.segment(UPCOMING))
    pid = await wait_for_pid(pid_file)
    await slates.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert process_is_gone(pid)


# The playlist


def test_slate_media_playlist_repeats_the_segment_after_discontinuities() -> None:
    text = slate_media_playlist(
        100,
        3,
        lambda n: f"/live/news/slate/{n}.ts",
        program_date_time=lambda n: datetime.fromtimestamp(n * SEGMENT_SECONDS, UTC),
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:4\n"
        "#EXT-X-MEDIA-SEQUENCE:100\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:100\n"
        "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:06:40.000+00:00\n"
        "#EXTINF:4.000,\n"
        "/live/news/slate/100.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:06:44.000+00:00\n"
        "#EXTINF:4.000,\n"
        "/live/news/slate/101.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:06:48.000+00:00\n"
        "#EXTINF:4.000,\n"
        "/live/news/slate/102.ts\n"
    )
    assert "#EXT-X-ENDLIST" not in text
    assert slate_sequence(1000.0) == 250
    assert slate_sequence(1003.9) == 250
    assert slate_sequence(1004.0, epoch=0.0) == 251
    assert slate_sequence(1004.0, epoch=1000.0) == 1


async def test_ffmpeg_plays_the_looping_slate_in_real_time(tmp_path: Path) -> None:
    segment = await Slates().segment(UPCOMING)
    served: list[int] = []
    # The playlist's clock is aligned with ffmpeg's start, so the window moves on at
    # known times: segment n is the newest from epoch + n * SEGMENT_SECONDS on, and
    # segment 100 became the newest half a second before ffmpeg starts. (ffmpeg 5.1
    # never starts on a playlist whose media sequence is negative.)
    epoch = time.time() - 100 * SEGMENT_SECONDS - 0.5

    async def playlist(request: web.Request) -> web.Response:
        newest = slate_sequence(time.time(), epoch)
        text = slate_media_playlist(newest - 2, 3, lambda n: f"s/{n}.ts")
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl")

    async def media(request: web.Request) -> web.Response:
        served.append(int(request.match_info["n"]))
        return web.Response(body=segment, content_type="video/mp2t")

    app = web.Application()
    app.router.add_get("/slate.m3u8", playlist)
    app.router.add_get("/s/{n}.ts", media)
    out = tmp_path / "recorded.ts"
    wall = 20.0
    async with serving(app) as base:
        try:
            started = time.monotonic()
            ffmpeg = await asyncio.create_subprocess_exec(
                "ffmpeg",
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-live_start_index",
                "-1",
                "-i",
                f"{base}/slate.m3u8",
                "-map",
                "0",
                "-c",
                "copy",
                "-f",
                "mpegts",
                "-y",
                str(out),
                stdin=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            await asyncio.sleep(wall - (time.monotonic() - started))
            assert ffmpeg.returncode is None, "ffmpeg is still playing"
            # SIGINT, as a person's Ctrl-C: ffmpeg closes the recording properly.
            ffmpeg.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(ffmpeg.communicate(), 10)
            wall = time.monotonic() - started
        finally:
            if ffmpeg.returncode is None:
                ffmpeg.kill()
                await ffmpeg.wait()
    probe = ffprobe(out)
    recorded = float(probe["format"]["duration"])
    # ffmpeg fetched the segments in order, one per SEGMENT_SECONDS, and every one is
    # in the recording but the last, which it may have been reading when stopped: the
    # timestamps carried on across each repeat instead of starting again...
    assert served == list(range(100, 100 + len(served))), served
    assert (len(served) - 1) * SEGMENT_SECONDS - 0.5 <= recorded, (served, err)
    assert recorded <= len(served) * SEGMENT_SECONDS + 0.5, (served, err)
    # ...and the slate arrived as fast as time passed.
    assert recorded == pytest.approx(wall, rel=0.1), (served, wall)
    assert {s["codec_name"] for s in probe["streams"]} == {"h264", "aac"}
