"""The slate: what a player sees on a channel that is not live.

A still picture naming the channel and its status in Chinese and English ("直播将于
20:00 开始 · Starts at 20:00 UTC+8", "直播已结束 · Ended", "暂未直播 · Offline") with
silent audio, as one MPEG-TS segment of `SEGMENT_SECONDS`: H.264 (main, yuv420p,
640x360, 10 fps, a keyframe every second and at the start) and AAC-LC stereo at
44.1 kHz, the codecs of a YouTube live in TS, so a player that continues with the live
segments after an `#EXT-X-DISCONTINUITY` keeps its decoders.

- `Slates.segment(text)` makes the segment with ffmpeg (asyncio subprocess, output on
  a pipe, a timeout; ffmpeg is killed and reaped on timeout or cancellation), once per
  rendered text however many ask at once, and keeps recent segments in a small LRU
  bounded in bytes.
- `slate_media_playlist(...)` writes the looping live media playlist: the same segment
  repeated under increasing media sequence numbers, each repeat after an
  `#EXT-X-DISCONTINUITY` (its timestamps and continuity counters start again);
  `slate_sequence(now)` is the sequence number of the wall clock, so the window moves
  while a player polls.

Times are shown in the server's local time zone (or the one given to `Slates`), with
the UTC offset written out, since viewers may live elsewhere. The text is drawn with a
CJK font found through fontconfig (`fc-list :lang=zh`) or a few known paths; without
one it falls back to English, then to any font, then to no text, with one warning —
a slate never fails for want of a font.

It does not decide when a channel is live or which status it has (the resolver does),
nor serve HTTP or splice the slate into the live playlist (the relay does).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo

from ..errors import ServiceUnavailable
from ..flights import Flights

log = logging.getLogger(__name__)

SEGMENT_SECONDS = 4
WIDTH, HEIGHT, FPS = 640, 360, 10
SAMPLE_RATE = 44100
# 172 AAC frames of 1024 samples (3.994 s): the audio ends within the video instead of
# overlapping the next repeat, which players would have to trim.
_AAC_FRAMES = SEGMENT_SECONDS * SAMPLE_RATE // 1024

_KNOWN_CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
_KNOWN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclasses.dataclass(frozen=True)
class SlateText:
    """What a slate says: the channel's display name and its status.

    `status` is a channel status (`upcoming`, `ended`, `offline`; any other reads as
    offline); `starts_at` (timezone-aware) is shown for `upcoming`.
    """

    channel: str
    status: str
    starts_at: datetime | None = None

    def lines(
        self, *, tz: tzinfo | None = None, now: datetime | None = None, cjk: bool = True
    ) -> tuple[str, str]:
        """The title and the status line, in Chinese and English (English when not `cjk`).

        The start time is shown in `tz` (None: the server's local zone) with its UTC
        offset, and with its date when it is not today there.
        """
        title = "".join(c for c in self.channel if c.isprintable()).strip() or "?"
        if self.status == "upcoming":
            if self.starts_at is None:
                return title, ("即将开始 · Starting soon" if cjk else "Starting soon")
            local = self.starts_at.astimezone(tz)
            today = (now or datetime.now(UTC)).astimezone(local.tzinfo).date()
            zone = _utc_offset(local)
            clock = local.strftime("%H:%M")
            if local.date() == today:
                zh, en = clock, f"{clock} {zone}"
                en_line = f"Starts at {en}"
            else:
                zh = f"{local.month}月{local.day}日 {clock}"
                en_line = f"Starts {_MONTHS[local.month - 1]} {local.day}, {clock} {zone}"
            return title, (f"直播将于 {zh} 开始 · {en_line}" if cjk else en_line)
        if self.status == "ended":
            return title, ("直播已结束 · Ended" if cjk else "Ended")
        return title, ("暂未直播 · Offline" if cjk else "Offline")


@dataclasses.dataclass(frozen=True)
class Font:
    path: str
    cjk: bool


class Slates:
    """Slate segments, made by ffmpeg once per text and kept in a small LRU.

    `close()` cancels the runs under way (their ffmpeg is killed). A failed or
    timed-out ffmpeg raises `ServiceUnavailable` (code `slate_unavailable`) and is
    not cached, so the next request tries again.
    """

    def __init__(
        self,
        *,
        ffmpeg: str = "ffmpeg",
        timeout: float = 20.0,
        max_bytes: int = 4 * 1024**2,
        max_runs: int = 2,
        tz: tzinfo | None = None,
        font: Font | None = None,
    ) -> None:
        self._ffmpeg = ffmpeg
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._tz = tz
        self._font = font
        self._font_known = font is not None
        self._font_lock = asyncio.Lock()
        self._runs = asyncio.Semaphore(max_runs)
        self._flights = Flights()
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cached_bytes = 0

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    async def segment(self, text: SlateText, *, now: datetime | None = None) -> bytes:
        """One MPEG-TS segment of `SEGMENT_SECONDS` showing `text`."""
        font = await self.font()
        lines = text.lines(tz=self._tz, now=now, cjk=font is not None and font.cjk)
        cached = self._cache.get(lines)
        if cached is not None:
            self._cache.move_to_end(lines)
            return cached
        return await self._flights.run(lines, lambda: self._make(lines, font))

    async def font(self) -> Font | None:
        """The font the slates are drawn with, looked up once."""
        async with self._font_lock:
            if not self._font_known:
                self._font = await find_font()
                self._font_known = True
                if self._font is None:
                    log.warning(
                        "No font found: live slates show no text (install fonts-wqy-microhei)"
                    )
                elif not self._font.cjk:
                    log.warning(
                        "No font with Chinese glyphs found: live slates are in English, with %s"
                        " (install fonts-wqy-microhei)",
                        self._font.path,
                    )
            return self._font

    async def close(self) -> None:
        await self._flights.close()

    async def _make(self, lines: tuple[str, str], font: Font | None) -> bytes:
        async with self._runs:
            try:
                async with asyncio.timeout(self._timeout):
                    data = await run_process(ffmpeg_args(lines, font, self._ffmpeg))
            except TimeoutError:
                raise ServiceUnavailable(
                    f"ffmpeg took longer than {self._timeout:g} s to make the slate",
                    code="slate_unavailable",
                ) from None
        self._remember(lines, data)
        return data

    def _remember(self, lines: tuple[str, str], data: bytes) -> None:
        self._cache[lines] = data
        self._cached_bytes += len(data)
        while self._cached_bytes > self._max_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= len(dropped)


def ffmpeg_args(lines: tuple[str, str], font: Font | None, ffmpeg: str = "ffmpeg") -> list[str]:
    """The ffmpeg command line that writes the slate segment of `lines` to stdout."""
    video = "[0:v]"
    if font is not None:
        title, status = lines
        video += ",".join(
            (
                _drawtext(font.path, title, _fit(title, 44, 0.9), "white", "h/2-h/8-text_h"),
                _drawtext(font.path, status, _fit(status, 22, 0.94), "0xc8d0da", "h/2+h/12"),
            )
        )
        video += ","
    video += "format=yuv420p[v]"
    return [
        ffmpeg,
        *("-hide_banner", "-nostdin", "-loglevel", "error"),
        *("-f", "lavfi", "-i", f"color=c=0x1c2430:s={WIDTH}x{HEIGHT}:r={FPS}:d={SEGMENT_SECONDS}"),
        *("-f", "lavfi", "-i", f"anullsrc=channel_layout=stereo:sample_rate={SAMPLE_RATE}"),
        *("-filter_complex", f"{video};[1:a]atrim=end_sample={_AAC_FRAMES * 1024}[a]"),
        *("-map", "[v]", "-map", "[a]"),
        *("-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage"),
        *("-profile:v", "main", "-pix_fmt", "yuv420p", "-bf", "0"),
        *("-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0"),
        *("-x264-params", "aud=1", "-threads", "1"),
        *("-c:a", "aac", "-b:a", "32k", "-ac", "2", "-ar", str(SAMPLE_RATE)),
        *("-f", "mpegts", "pipe:1"),
    ]


async def run_process(args: Sequence[str]) -> bytes:
    """Run ffmpeg (or fc-list) and return its stdout.

    Cancelled (by the caller's `asyncio.timeout`, or a shutdown), it kills the process
    and reaps it before passing the cancellation on.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise ServiceUnavailable(
            f"The slate cannot be made: {exc.strerror}", code="slate_unavailable"
        ) from exc
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            # Shielded, so a second cancellation cannot leave a zombie behind.
            await asyncio.shield(proc.wait())
    if proc.returncode != 0 or not out:
        message = err.decode(errors="replace").strip()[-500:]
        log.warning("%s failed (exit %s): %s", args[0], proc.returncode, message)
        raise ServiceUnavailable(f"{args[0]} failed to make the slate", code="slate_unavailable")
    return out


async def find_font() -> Font | None:
    """A font file with Chinese glyphs, else any sans font, else None."""
    return pick_font(
        (await _fontconfig("fc-list", "-f", "%{file}\n", ":lang=zh")).splitlines(),
        (await _fontconfig("fc-match", "-f", "%{file}", "sans")).strip(),
    )


def pick_font(cjk_files: Sequence[str], sans_file: str) -> Font | None:
    """The font to use, from fontconfig's answers (empty without fontconfig)."""
    candidates = [path for path in cjk_files if os.path.isfile(path)]
    for preferred in _KNOWN_CJK_FONTS:
        if preferred in candidates or os.path.isfile(preferred):
            return Font(preferred, cjk=True)
    if candidates:
        return Font(sorted(candidates)[0], cjk=True)
    for path in (sans_file, *_KNOWN_FONTS):
        if path and os.path.isfile(path):
            return Font(path, cjk=False)
    return None


async def _fontconfig(*args: str) -> str:
    if shutil.which(args[0]) is None:
        return ""
    try:
        async with asyncio.timeout(10):
            out = await run_process(args)
    except (ServiceUnavailable, TimeoutError):
        return ""
    return out.decode(errors="replace")


def slate_sequence(now: float, epoch: float = 0.0) -> int:
    """The media sequence number of the slate segment playing at Unix time `now`."""
    return int((now - epoch) // SEGMENT_SECONDS)


def slate_media_playlist(
    sequence_start: int,
    count: int,
    segment_uri: Callable[[int], str],
    *,
    program_date_time: Callable[[int], datetime] | None = None,
) -> str:
    """A live media playlist of `count` slate segments from `sequence_start` on.

    Every segment after the first follows an `#EXT-X-DISCONTINUITY`, since each repeat
    starts its timestamps again; the discontinuity sequence equals the media sequence,
    so it stays consistent as the window moves. `segment_uri(n)` names segment `n`;
    `program_date_time(n)`, if given, dates it. No `#EXT-X-ENDLIST`: players poll.
    """
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}",
        f"#EXT-X-MEDIA-SEQUENCE:{sequence_start}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{sequence_start}",
    ]
    for n in range(sequence_start, sequence_start + count):
        if n != sequence_start:
            lines.append("#EXT-X-DISCONTINUITY")
        if program_date_time is not None:
            stamp = program_date_time(n).astimezone(UTC)
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{stamp.isoformat(timespec='milliseconds')}")
        lines.append(f"#EXTINF:{SEGMENT_SECONDS:.3f},")
        lines.append(segment_uri(n))
    return "\n".join(lines) + "\n"


def _utc_offset(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def _fit(text: str, size: int, share: float) -> int:
    """A font size at which `text` fits `share` of the width (CJK glyphs are ~1 em wide)."""
    ems = sum(1.0 if ord(c) > 0x2E80 else 0.56 for c in text) or 1.0
    return max(10, min(size, int(WIDTH * share / ems)))


def _drawtext(font: str, text: str, size: int, color: str, y: str) -> str:
    options = {
        "fontfile": font,
        "text": text,
        "expansion": "none",
        "fontsize": str(size),
        "fontcolor": color,
        "x": "(w-text_w)/2",
        "y": y,
    }
    # Two levels of quoting: the option value for the filter's option parser, then the
    # whole argument string for the filtergraph parser (ffmpeg-utils "Quoting and escaping").
    arguments = ":".join(f"{key}={_quote(value)}" for key, value in options.items())
    return f"drawtext={_quote(arguments)}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
