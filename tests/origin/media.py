"""Tiny real media for the test origin, made with ffmpeg from lavfi test sources.

`generate_media(directory)` encodes, in a few seconds of wall time (the encoders run
concurrently, at ultrafast/realtime settings and tiny sizes):

- live HLS material: two H.264+AAC MPEG-TS variants (160x90 and 320x180, 15 fps), cut
  into 90 segments of exactly 2 s (a keyframe every 2 s), 180 s in all, which the origin
  loops forever as a live stream;
- a VOD MP4 (8 s, 320x180, H.264+AAC, `+faststart`) with its sha256;
- YouTube-style DASH single-file representations (6 s): H.264 144p and 240p, VP9 240p,
  AV1 240p when this ffmpeg can encode AV1 (`Media.has_av1`), AAC and Opus audio.

It records the facts a test needs to check what arrived (durations, sizes, codec strings
as they appear in manifests, bandwidths). It deliberately does not produce manifests or
playlists (the server renders those from these facts), does not cache between sessions
and is never imported by `ytproxy/`; generated files are never committed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

SEGMENT_SECONDS = 2
LIVE_SEGMENT_COUNT = 90
LIVE_FPS = 15
VOD_SECONDS = 8
DASH_SECONDS = 6
_TIMEOUT = 180

# ffmpeg arguments are written as shell-like fragments (none of them holds a space; paths
# are always separate items), because one flag per line would bury each invocation.
_X264 = shlex.split("-c:v libx264 -preset ultrafast -pix_fmt yuv420p")
_GOP = shlex.split(
    f"-g 30 -keyint_min 30 -sc_threshold 0 -force_key_frames expr:gte(t,n_forced*{SEGMENT_SECONDS})"
)
_QUIET = shlex.split("ffmpeg -hide_banner -nostdin -loglevel error -y")


class MediaGenerationError(RuntimeError):
    """ffmpeg or ffprobe failed, or is missing, while making the test media."""


@dataclass(frozen=True)
class HlsVariant:
    """One live HLS rendition: its segment files in order and their exact durations."""

    name: str
    width: int
    height: int
    fps: int
    codecs: str
    bandwidth: int
    average_bandwidth: int
    segments: tuple[Path, ...]
    durations: tuple[float, ...]


@dataclass(frozen=True)
class VodFile:
    """The progressive MP4 served at `/vod/video.mp4`."""

    path: Path
    sha256: str
    size: int
    duration: float
    width: int
    height: int


@dataclass(frozen=True)
class DashRepresentation:
    """One DASH representation: a single file fetched with Range, like YouTube's."""

    id: str
    kind: str
    path: Path
    mime_type: str
    codecs: str
    bandwidth: int
    size: int
    duration: float
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    sample_rate: int | None = None

    @property
    def codec_name(self) -> str:
        """The ffprobe codec name of the single stream (h264, vp9, av1, aac, opus)."""
        return _CODEC_NAMES[self.codecs.split(".")[0]]


_CODEC_NAMES = {"avc1": "h264", "vp09": "vp9", "av01": "av1", "mp4a": "aac", "opus": "opus"}


@dataclass(frozen=True)
class Media:
    """Everything `generate_media` made, with the facts tests compare against."""

    directory: Path
    hls_variants: tuple[HlsVariant, ...]
    vod: VodFile
    dash: tuple[DashRepresentation, ...]
    has_av1: bool

    @property
    def segment_seconds(self) -> int:
        return SEGMENT_SECONDS

    @property
    def live_segment_count(self) -> int:
        return LIVE_SEGMENT_COUNT

    def hls_variant(self, name: str) -> HlsVariant:
        return next(v for v in self.hls_variants if v.name == name)

    def dash_representation(self, rep_id: str) -> DashRepresentation:
        return next(r for r in self.dash if r.id == rep_id)

    @property
    def dash_duration(self) -> float:
        return max(r.duration for r in self.dash)


def generate_media(directory: Path) -> Media:
    """Encode all test media into `directory` (created if needed) and describe it."""
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise MediaGenerationError(f"{tool} not found on PATH; `make test` installs it")
    directory.mkdir(parents=True, exist_ok=True)
    hls_dir, dash_dir = directory / "hls", directory / "dash"
    for sub in (hls_dir / "low", hls_dir / "high", dash_dir):
        sub.mkdir(parents=True, exist_ok=True)
    vod_path = directory / "video.mp4"

    jobs = [
        _start(_hls_command(hls_dir)),
        _start(_vod_command(vod_path)),
        _start(_dash_command(dash_dir)),
    ]
    av1_job = _start(_av1_command(dash_dir / "394.mp4", "libsvtav1"))
    for job in jobs:
        _finish(job)
    has_av1 = _try_finish(av1_job)
    if not has_av1:
        has_av1 = _try_finish(_start(_av1_command(dash_dir / "394.mp4", "libaom-av1")))

    variants = tuple(
        _describe_hls_variant(hls_dir / name, name, width, height)
        for name, width, height in (("low", 160, 90), ("high", 320, 180))
    )
    vod_info = _probe(vod_path)
    vod = VodFile(
        path=vod_path,
        sha256=hashlib.sha256(vod_path.read_bytes()).hexdigest(),
        size=vod_path.stat().st_size,
        duration=float(vod_info["format"]["duration"]),
        width=320,
        height=180,
    )
    dash = tuple(
        _describe_dash(dash_dir / filename, rep_id)
        for rep_id, filename in _DASH_FILES
        if rep_id != "394" or has_av1
    )
    return Media(directory=directory, hls_variants=variants, vod=vod, dash=dash, has_av1=has_av1)


def _lavfi(size: str, seconds: int, sample_rate: int, frequency: int) -> list[str]:
    video = f"testsrc2=size={size}:rate={LIVE_FPS}:duration={seconds}"
    audio = f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={seconds}"
    return ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio]


def _hls_command(out: Path) -> list[str]:
    seconds = SEGMENT_SECONDS * LIVE_SEGMENT_COUNT
    split = "[0:v]split=2[high][v];[v]scale=160:90[low]"
    command = [*_QUIET, *_lavfi("320x180", seconds, 44100, 440), "-filter_complex", split]
    for name, rate in (("low", "110k"), ("high", "240k")):
        command += [
            *shlex.split(f"-map [{name}] -map 1:a"),
            *_X264,
            *_GOP,
            *shlex.split(f"-b:v {rate} -maxrate {rate} -bufsize {rate} -c:a aac -b:a 32k -ac 1"),
            *shlex.split(f"-f hls -hls_time {SEGMENT_SECONDS} -hls_list_size 0"),
            *shlex.split("-hls_playlist_type vod -hls_segment_filename"),
            str(out / name / "%d.ts"),
            str(out / name / "index.m3u8"),
        ]
    return command


def _vod_command(path: Path) -> list[str]:
    return [
        *_QUIET,
        *_lavfi("320x180", VOD_SECONDS, 44100, 550),
        *shlex.split("-map 0:v -map 1:a"),
        *_X264,
        *_GOP,
        *shlex.split("-b:v 250k -c:a aac -b:a 48k -movflags +faststart"),
        str(path),
    ]


_DASH_FILES = (
    ("160", "160.mp4"),
    ("133", "133.mp4"),
    ("278", "278.webm"),
    ("394", "394.mp4"),
    ("140", "140.m4a"),
    ("251", "251.webm"),
)


def _dash_command(out: Path) -> list[str]:
    def h264(label: str, rate: str) -> list[str]:
        return [*shlex.split(f"-map [{label}] -an"), *_X264, *_GOP, "-b:v", rate, *faststart]

    faststart = shlex.split("-movflags +faststart")
    vp9 = "-map [b] -an -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -row-mt 1 -g 30 -b:v 150k"
    return [
        *_QUIET,
        *_lavfi("426x240", DASH_SECONDS, 48000, 660),
        *["-filter_complex", "[0:v]split=3[a][b][c];[c]scale=256:144[lo]"],
        *h264("lo", "80k"),
        str(out / "160.mp4"),
        *h264("a", "150k"),
        str(out / "133.mp4"),
        *shlex.split(vp9),
        str(out / "278.webm"),
        *shlex.split("-map 1:a -vn -c:a aac -b:a 64k -ac 2"),
        *faststart,
        str(out / "140.m4a"),
        *shlex.split(f"-map 1:a -vn -c:a libopus -b:a 48k -ac 2 -t {DASH_SECONDS}"),
        str(out / "251.webm"),
    ]


def _av1_command(path: Path, encoder: str) -> list[str]:
    speed = "-preset 12" if encoder == "libsvtav1" else "-cpu-used 8 -row-mt 1"
    video = f"testsrc2=size=426x240:rate={LIVE_FPS}:duration={DASH_SECONDS}"
    return [
        *_QUIET,
        *["-f", "lavfi", "-i", video],
        *shlex.split(f"-an -c:v {encoder} {speed} -g 30 -b:v 120k -movflags +faststart"),
        str(path),
    ]


def _start(command: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(job: subprocess.Popen[bytes]) -> None:
    _, stderr = job.communicate(timeout=_TIMEOUT)
    if job.returncode != 0:
        tail = stderr.decode(errors="replace")[-2000:]
        raise MediaGenerationError(f"{job.args!r} failed:\n{tail}")


def _try_finish(job: subprocess.Popen[bytes]) -> bool:
    try:
        _finish(job)
    except MediaGenerationError:
        return False
    return True


def _probe(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        raise MediaGenerationError(f"ffprobe {path} failed: {stderr}")
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def _describe_hls_variant(directory: Path, name: str, width: int, height: int) -> HlsVariant:
    playlist = (directory / "index.m3u8").read_text()
    durations = tuple(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", playlist))
    segments = tuple(directory / line for line in playlist.splitlines() if line.endswith(".ts"))
    if len(segments) != LIVE_SEGMENT_COUNT or len(durations) != LIVE_SEGMENT_COUNT:
        raise MediaGenerationError(f"expected {LIVE_SEGMENT_COUNT} segments in {directory}")
    rates = [path.stat().st_size * 8 / d for path, d in zip(segments, durations, strict=True)]
    sps = _h264_profile_bytes(segments[0].read_bytes())
    return HlsVariant(
        name=name,
        width=width,
        height=height,
        fps=LIVE_FPS,
        codecs=f"avc1.{sps},mp4a.40.2",
        bandwidth=int(max(rates)),
        average_bandwidth=int(sum(rates) / len(rates)),
        segments=segments,
        durations=durations,
    )


def _describe_dash(path: Path, rep_id: str) -> DashRepresentation:
    info = _probe(path)
    stream = info["streams"][0]
    duration = float(info["format"]["duration"])
    size = path.stat().st_size
    container = "webm" if path.suffix == ".webm" else "mp4"
    rep = DashRepresentation(
        id=rep_id,
        kind=stream["codec_type"],
        path=path,
        mime_type=f"{stream['codec_type']}/{container}",
        codecs=_codec_string(path, stream),
        bandwidth=int(size * 8 / duration),
        size=size,
        duration=duration,
    )
    if rep.kind == "audio":
        return replace(rep, sample_rate=int(stream["sample_rate"]))
    width, height = int(stream["width"]), int(stream["height"])
    return replace(rep, width=width, height=height, fps=LIVE_FPS)


def _codec_string(path: Path, stream: dict[str, Any]) -> str:
    """The RFC 6381 `codecs` value a manifest advertises for this stream."""
    name = stream["codec_name"]
    if name == "h264":
        return f"avc1.{_h264_profile_bytes(path.read_bytes())}"
    if name == "vp9":
        return f"vp09.00.{_vp9_level(int(stream['width']) * int(stream['height']))}.08"
    if name == "av1":
        return f"av01.0.{max(int(stream.get('level', 0)), 0):02d}M.08"
    if name == "aac":
        return "mp4a.40.2"
    if name == "opus":
        return "opus"
    raise MediaGenerationError(f"no codec string for {name} in {path}")


def _h264_profile_bytes(data: bytes) -> str:
    """profile_idc, constraint flags and level_idc as hex, from avcC (MP4) or an SPS (TS)."""
    box = data.find(b"avcC")
    if box >= 0:
        return data[box + 5 : box + 8].hex()
    sps = data.find(b"\x00\x00\x01\x67")
    if sps < 0:
        raise MediaGenerationError("no H.264 SPS found")
    return data[sps + 4 : sps + 7].hex()


def _vp9_level(luma_samples: int) -> str:
    """The VP9 level (as two digits) whose MaxLumaPictureSize fits the picture."""
    for limit, level in (
        (36864, "10"),
        (73728, "11"),
        (122880, "20"),
        (245760, "21"),
        (552960, "30"),
        (983040, "31"),
        (2228224, "40"),
    ):
        if luma_samples <= limit:
            return level
    return "41"
