"""ffmpeg as a test player: record a stream with stream copy, then measure what arrived.

Players exit 0 on truncated media (DESIGN.md, "Testing offline"), so tests measure the
recording (ffprobe), never the exit code.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


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
