"""The HTTP vocabulary of a download: client Range, Content-Range, file names, types.

- `parse_range` reads the one kind of `Range` header downloads need (a single
  `bytes=a-b`, `bytes=a-` or `bytes=-n`); anything else is ignored, as RFC 9110
  allows, and the whole file is served; so is a header over `MAX_RANGE_HEADER`
  characters. It and `parse_content_range` run in linear time on any input.
- `ByteRange.resolve(size)` turns it into a span of a file of known size, or raises
  `RangeNotSatisfiable` (416 with `Content-Range: bytes */size`).
- `content_disposition` makes `attachment; filename="ascii"; filename*=UTF-8''...`
  (RFC 6266 / 5987), so a Chinese or emoji title survives in every browser and curl
  `-OJ`, while old clients get a readable ASCII fallback.
- `content_type` maps a container extension to its media type.

Pure functions only: nothing here touches the network or knows about formats.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from typing import NamedTuple
from urllib.parse import quote

from ..errors import RangeNotSatisfiable

# Longest Range or Content-Range value read; a longer one is ignored (RFC 9110 lets a
# server ignore Range). Real ones are under 50 characters.
MAX_RANGE_HEADER = 200
# Characters that break a quoted filename or mean a path on some system.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|;]+')
_SPACES = re.compile(r"\s+")
# The usual `Content-Range` of a piece. No nested or overlapping repeats: linear time.
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")
_MAX_NAME = 150

_TYPES = {
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "m4a": "audio/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "weba": "audio/webm",
    "mkv": "video/x-matroska",
    "mka": "audio/x-matroska",
    "ts": "video/mp2t",
    "3gp": "video/3gpp",
    "flv": "video/x-flv",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "wav": "audio/wav",
    "flac": "audio/flac",
}


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """A client's single byte range: `start` None means the last `end` bytes (suffix)."""

    start: int | None
    end: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """The `[start, stop)` span of a file of `size` bytes; 416 if it has none."""
        if self.start is None:
            assert self.end is not None
            if self.end == 0 or size == 0:
                raise _unsatisfiable(size)
            return max(0, size - self.end), size
        if self.start >= size:
            raise _unsatisfiable(size)
        stop = size if self.end is None else min(self.end + 1, size)
        return self.start, stop


def parse_range(header: str | None) -> ByteRange | None:
    """The single byte range a `Range` header asks for, or None to serve everything.

    Parsed by splitting, not by a regular expression: a backtracking pattern took
    seconds on a header of spaces. A header longer than `MAX_RANGE_HEADER` is ignored.
    """
    if not header or len(header) > MAX_RANGE_HEADER:
        return None
    unit, equals, spec = header.partition("=")
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not equals or not dash or unit.strip().lower() != "bytes":
        return None  # other units: the whole file (RFC 9110 §14.2)
    if not _number_or_empty(first) or not _number_or_empty(last):
        return None  # multipart ranges, junk: the whole file
    if not first and not last:
        return None
    if not first:
        return ByteRange(None, int(last))
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None  # syntactically invalid: ignored, per the RFC
    return ByteRange(start, end)


def parse_content_range(header: str | None) -> tuple[int | None, int | None, int | None]:
    """`(first, last, total)` of an upstream `Content-Range`; None for each unknown part.

    The form every piece's answer has (`bytes a-b/n`) is read by one match; any other
    is taken apart by the general parser below."""
    unknown = None, None, None
    if not header or len(header) > MAX_RANGE_HEADER:
        return unknown
    common = _CONTENT_RANGE.fullmatch(header)
    if common is not None:
        first, last, total = common.groups()
        return int(first), int(last), int(total)
    text = header.lstrip()
    if text[:5].lower() != "bytes" or not text[5:6].isspace():
        return unknown
    span, slash, total = text[5:].partition("/")
    span, total = span.strip(), total.strip()
    if not slash or not (total == "*" or total.isdecimal()):
        return unknown
    size = int(total) if total != "*" else None
    if span == "*":
        return None, None, size
    first, dash, last = span.partition("-")
    if not dash or not first.isdecimal() or not last.isdecimal():
        return unknown
    return int(first), int(last), size


def _number_or_empty(text: str) -> bool:
    # isdecimal() is exactly what `\d` matched in the pattern this replaces.
    return not text or text.isdecimal()


def content_range(start: int, stop: int, size: int | None) -> str:
    return f"bytes {start}-{stop - 1}/{size if size is not None else '*'}"


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The requested range is beyond the end of the file ({size} bytes)", size=size
    )


def safe_filename(title: str, ext: str) -> str:
    """`title.ext` without path separators, control or quoting characters."""
    name = _SPACES.sub(" ", _UNSAFE.sub("_", title)).strip(" ._") or "video"
    if len(name) > _MAX_NAME:
        name = name[:_MAX_NAME].rstrip(" ._")
    clean_ext = re.sub(r"[^A-Za-z0-9]", "", ext)[:8]
    return f"{name}.{clean_ext}" if clean_ext else name


def ascii_filename(name: str) -> str:
    """An ASCII rendering of `name` for clients that ignore `filename*`."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii")
    stem, dot, ext = ascii_only.rpartition(".")
    stem = _SPACES.sub(" ", stem if dot else ascii_only).strip(" ._-") or "video"
    return f"{stem}.{ext}" if dot and ext else stem


@functools.lru_cache(maxsize=1024)  # a download's name is built on every request
def content_disposition(title: str, ext: str) -> str:
    name = safe_filename(title, ext)
    fallback = ascii_filename(name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def content_type(ext: str, *, audio_only: bool = False) -> str:
    ext = ext.lower()
    if audio_only and ext in {"webm", "mp4", "mkv"}:
        return {"webm": "audio/webm", "mp4": "audio/mp4", "mkv": "audio/x-matroska"}[ext]
    return _TYPES.get(ext, "application/octet-stream")


class Naming(NamedTuple):
    """What a download is called: its title and container, as response headers. (A
    named tuple: one is made per download, faster than a frozen dataclass.)"""

    title: str
    ext: str
    audio_only: bool = False

    def headers(self, ext: str | None = None, *, accept_ranges: str) -> dict[str, str]:
        """A response's naming headers and its `Accept-Ranges` (a copy of those made
        for the first download of the file, the caller's to add to)."""
        return _naming_headers(self.title, ext or self.ext, self.audio_only, accept_ranges).copy()


@functools.lru_cache(maxsize=1024)  # made on every request, the same per file
def _naming_headers(title: str, ext: str, audio_only: bool, accept_ranges: str) -> dict[str, str]:
    return {
        "Content-Type": content_type(ext, audio_only=audio_only),
        "Content-Disposition": content_disposition(title, ext),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": accept_ranges,
    }
