"""Tiny live material for the googlevideo imitation, made by one ffmpeg process.

`generate_youtube_media(directory)` encodes 30 s of lavfi test picture and tone, cut into
15 MPEG-TS segments of 2 s (a keyframe every 2 s), as the five renditions a YouTube live
offers through its two kinds of HLS master:

- muxed (what `web`-style clients get): itag 91 (256x144) and 92 (426x240), H.264 + AAC;
- demuxed (what `visionos` gets): video-only itag 269 (256x144) and 229 (426x240), and
  audio-only itag 233 (AAC).

All five come from the same sources in one ffmpeg run, so their segments line up. The
origin loops them forever. This module only encodes and describes; `googlevideo.py`
renders playlists and serves them. Nothing here is cached between sessions.
"""

from __future__ import annotations

import re
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.origin.media import (
    _GOP,
    _QUIET,
    _X264,
    MediaGenerationError,
    _finish,
    _h264_profile_bytes,
    _start,
)

SEGMENT_SECONDS = 2
LOOP_SEGMENTS = 15
FPS = 15

Kind = Literal["muxed", "video", "audio"]


@dataclass(frozen=True)
class Rendition:
    """One itag of a live: its looped segment files and the facts a master advertises."""

    itag: int
    kind: Kind
    width: int | None
    height: int | None
    codecs: str
    bandwidth: int
    average_bandwidth: int
    segments: tuple[Path, ...]
    durations: tuple[float, ...]

    @property
    def fps(self) -> int | None:
        return None if self.kind == "audio" else FPS

    @property
    def quality_label(self) -> str | None:
        return None if self.height is None else f"{self.height}p"


@dataclass(frozen=True)
class YoutubeMedia:
    renditions: tuple[Rendition, ...]

    def rendition(self, itag: int) -> Rendition:
        return next(r for r in self.renditions if r.itag == itag)

    def of_kind(self, *kinds: Kind) -> tuple[Rendition, ...]:
        return tuple(r for r in self.renditions if r.kind in kinds)


# itag, kind, width, height, video bitrate
_SPECS: tuple[tuple[int, Kind, int | None, int | None], ...] = (
    (91, "muxed", 256, 144),
    (92, "muxed", 426, 240),
    (269, "video", 256, 144),
    (229, "video", 426, 240),
    (233, "audio", None, None),
)
_RATES = {144: "60k", 240: "110k"}


def _command(out: Path) -> list[str]:
    seconds = SEGMENT_SECONDS * LOOP_SEGMENTS
    video = f"testsrc2=size=426x240:rate={FPS}:duration={seconds}"
    audio = f"sine=frequency=330:sample_rate=48000:duration={seconds}"
    split = "[0:v]split=4[m240][v240][a][b];[a]scale=256:144[m144];[b]scale=256:144[v144]"
    command = [*_QUIET, "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio]
    command += ["-filter_complex", split]
    for itag, kind, _, height in _SPECS:
        if kind == "audio":
            command += shlex.split("-map 1:a -vn -c:a aac -b:a 32k -ac 2")
        else:
            rate = _RATES[height or 0]
            label = f"{'m' if kind == 'muxed' else 'v'}{height}"
            command += [*shlex.split(f"-map [{label}]"), *_X264, *_GOP]
            command += shlex.split(f"-b:v {rate} -maxrate {rate} -bufsize {rate}")
            command += shlex.split("-map 1:a -c:a aac -b:a 32k -ac 2" if kind == "muxed" else "-an")
        (out / str(itag)).mkdir(parents=True, exist_ok=True)
        command += shlex.split(
            f"-f hls -hls_time {SEGMENT_SECONDS} -hls_list_size 0 -hls_playlist_type vod"
        )
        command += ["-hls_segment_filename", str(out / str(itag) / "%d.ts")]
        command.append(str(out / str(itag) / "index.m3u8"))
    return command


def _describe_segments(directory: Path, count: int) -> tuple[tuple[Path, ...], tuple[float, ...]]:
    playlist = (directory / "index.m3u8").read_text()
    durations = tuple(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", playlist))
    segments = tuple(directory / line for line in playlist.splitlines() if line.endswith(".ts"))
    if len(segments) < count or len(durations) < count:
        raise MediaGenerationError(f"expected {count} segments in {directory}")
    return segments[:count], durations[:count]


def generate_youtube_media(directory: Path) -> YoutubeMedia:
    directory.mkdir(parents=True, exist_ok=True)
    _finish(_start(_command(directory)))
    renditions = []
    for itag, kind, width, height in _SPECS:
        segments, durations = _describe_segments(directory / str(itag), LOOP_SEGMENTS)
        rates = [p.stat().st_size * 8 / d for p, d in zip(segments, durations, strict=True)]
        video = None if kind == "audio" else f"avc1.{_h264_profile_bytes(segments[0].read_bytes())}"
        codecs = {"muxed": f"{video},mp4a.40.2", "video": video, "audio": "mp4a.40.2"}[kind]
        if codecs is None:
            raise MediaGenerationError(f"no codecs for itag {itag}")
        renditions.append(
            Rendition(
                itag=itag,
                kind=kind,
                width=width,
                height=height,
                codecs=codecs,
                bandwidth=int(max(rates)),
                average_bandwidth=int(sum(rates) / len(rates)),
                segments=segments,
                durations=durations,
            )
        )
    return YoutubeMedia(tuple(renditions))


class LazyYoutubeMedia:
    """Encodes on first use (from a test's thread, never the origin's loop), so sessions
    that never start a YouTube-style live pay nothing."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._media: YoutubeMedia | None = None

    def get(self) -> YoutubeMedia:
        with self._lock:
            if self._media is None:
                self._media = generate_youtube_media(self._directory)
            return self._media

    @property
    def ready(self) -> YoutubeMedia | None:
        return self._media
