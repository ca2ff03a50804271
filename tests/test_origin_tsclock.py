"""The test origin's looping live keeps its clock going (tests/origin/tsclock.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.origin import tsclock


def times(path: Path) -> list[tuple[str, float, float]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=codec_type,pts_time,dts_time",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [
        (p["codec_type"], float(p["pts_time"]), float(p["dts_time"]))
        for p in json.loads(out)["packets"]
    ]


def test_shifting_moves_every_pts_and_dts_by_the_loop_length(tmp_path: Path) -> None:
    original = tmp_path / "a.ts"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc=size=64x36:rate=10:duration=2", "-f", "lavfi",
         "-i", "sine=duration=2", "-c:v", "libx264", "-bf", "2", "-c:a", "aac",
         "-f", "mpegts", str(original)],
        check=True,
    )  # fmt: skip
    shifted = tmp_path / "b.ts"
    shifted.write_bytes(tsclock.shift(original.read_bytes(), 30 * 90_000))
    before, after = times(original), times(shifted)
    assert len(before) == len(after) > 20
    for (kind, pts, dts), (kind2, pts2, dts2) in zip(before, after, strict=True):
        assert kind == kind2
        assert abs(pts2 - pts - 30) < 1e-3 and abs(dts2 - dts - 30) < 1e-3
    assert tsclock.shift(original.read_bytes(), 0) == original.read_bytes()
