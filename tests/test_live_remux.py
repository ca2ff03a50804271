"""Per-segment stream copy (`ytproxy/live/remux.py`) on real ffmpeg-made segments."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from ytproxy.errors import UpstreamError
from ytproxy.live.remux import Remuxer


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("remux")
    muxed = folder / "muxed.ts"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x90:rate=10:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-output_ts_offset", "30",
        "-f", "mpegts", str(muxed),
    )  # fmt: skip
    ffmpeg("-i", str(muxed), "-map", "0:v", "-c", "copy", "-copyts", str(folder / "v.ts"))
    ffmpeg("-i", str(muxed), "-map", "0:a", "-c", "copy", "-copyts", str(folder / "a.ts"))
    return {name: (folder / f"{name}.ts").read_bytes() for name in ("muxed", "v", "a")}


def probe(data: bytes, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "probe.ts"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


async def test_a_video_only_and_an_audio_only_segment_become_one_with_their_timestamps(
    segments: dict[str, bytes], tmp_path: Path
) -> None:
    muxed = await Remuxer().mux(segments["v"], segments["a"])
    info = probe(muxed, tmp_path)
    kinds = sorted(s["codec_type"] for s in info["streams"])  # type: ignore[index,union-attr]
    assert kinds == ["audio", "video"]
    assert float(info["format"]["start_time"]) >= 29.9  # type: ignore[index]
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.3)  # type: ignore[index]


async def test_the_audio_of_a_muxed_segment_is_kept_alone(
    segments: dict[str, bytes], tmp_path: Path
) -> None:
    audio = await Remuxer().audio(segments["muxed"])
    kinds = [s["codec_type"] for s in probe(audio, tmp_path)["streams"]]  # type: ignore[union-attr]
    assert kinds == ["audio"]


async def test_garbage_is_an_upstream_error_and_nothing_is_left_behind(
    segments: dict[str, bytes],
) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(UpstreamError):
        await Remuxer().mux(b"not a segment" * 100, segments["a"])
    with pytest.raises(UpstreamError):
        await Remuxer().audio(segments["v"])  # no audio stream to keep
    assert len(os.listdir("/proc/self/fd")) == before


async def test_a_cancelled_run_kills_ffmpeg_and_closes_its_pipes(tmp_path: Path) -> None:
    stand_in = tmp_path / "ffmpeg"
    pids = tmp_path / "pids"
    stand_in.write_text(f"#!/bin/sh\necho $$ >> {pids}\nexec sleep 60\n")
    stand_in.chmod(0o755)
    before = len(os.listdir("/proc/self/fd"))
    task = asyncio.create_task(Remuxer(ffmpeg=str(stand_in)).mux(b"x" * 10, b"y" * 10))
    while not pids.exists():
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pids.read_text().split()[0])
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped: no zombie either
    for _ in range(100):  # the writer threads close their ends once the pipes break
        if len(os.listdir("/proc/self/fd")) == before:
            break
        await asyncio.sleep(0.05)
    assert len(os.listdir("/proc/self/fd")) == before
