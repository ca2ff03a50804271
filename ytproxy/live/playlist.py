"""HLS playlists: reading just enough of them, and rewriting every URI they hold.

`rewrite(text, base_url, replace)` returns the playlist with each URI replaced by what
`replace(uri)` returns: URI lines (variant streams in a master, segments in a media
playlist) and the `URI="..."` attribute of `EXT-X-KEY`, `EXT-X-MAP`, `EXT-X-MEDIA`,
`EXT-X-I-FRAME-STREAM-INF`, `EXT-X-SESSION-KEY`, `EXT-X-PART` and
`EXT-X-PRELOAD-HINT`. Relative URIs are resolved against `base_url` first, and each
segment comes with its media sequence number so that a segment can be found again in
a later copy of the playlist whose URLs have changed.

Any other line that carries a URI (`EXT-X-RENDITION-REPORT`, `EXT-X-SESSION-DATA`, a
plain `#` comment) is dropped rather than passed on: the rule is that no upstream URL
reaches a client, and those lines are optional hints. URIs with a scheme other than
http(s) (`data:`, `skd:`) are left alone; they name no server.

The module also builds a master playlist from yt-dlp's formats when there is no
upstream one. It does not fetch, sign or cache anything, and it is not a full
parser: it reads lines and attributes, not the whole HLS grammar.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from urllib.parse import urljoin, urlsplit

CONTENT_TYPE = "application/vnd.apple.mpegurl"

URI_TAGS = frozenset(
    {
        "EXT-X-KEY",
        "EXT-X-MAP",
        "EXT-X-MEDIA",
        "EXT-X-I-FRAME-STREAM-INF",
        "EXT-X-SESSION-KEY",
        "EXT-X-PART",
        "EXT-X-PRELOAD-HINT",
    }
)
# Tags whose URI is another playlist (in a master), as opposed to media bytes.
PLAYLIST_TAGS = frozenset({"EXT-X-STREAM-INF", "EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF"})
SEGMENT = "EXTINF"

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)')
_URI_ATTRIBUTE = re.compile(r'URI="([^"]*)"')


class PlaylistError(ValueError):
    """The text is not an HLS playlist."""


@dataclasses.dataclass(frozen=True)
class Uri:
    """One URI found in a playlist, resolved to an absolute URL."""

    url: str
    tag: str  # EXT-X-STREAM-INF for a variant line, EXTINF for a segment, else the tag
    index: int  # position among the playlist's URIs, from 0
    sequence: int | None = None  # media sequence of a segment (and of its parts)
    duration: float | None = None  # EXTINF duration of a segment
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


def check(text: str) -> None:
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise PlaylistError("not an HLS playlist (no #EXTM3U)")


def is_master(text: str) -> bool:
    return "#EXT-X-STREAM-INF" in text


def attributes(line: str) -> dict[str, str]:
    """The attribute list of a tag line, quotes removed."""
    _, _, rest = line.partition(":")
    return {key: value.strip('"') for key, value in _ATTRIBUTE.findall(rest)}


def tag_value(text: str, tag: str) -> str | None:
    prefix = f"#{tag}:"
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def target_duration(text: str, default: float = 6.0) -> float:
    value = tag_value(text, "EXT-X-TARGETDURATION")
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def rewrite(text: str, base_url: str, replace: Callable[[Uri], str]) -> str:
    """The playlist with every URI replaced (see the module docstring)."""
    out: list[str] = []
    for line, uri in _walk(text, base_url):
        if uri is None:
            out.append(line)
        elif line.startswith("#"):
            match = _URI_ATTRIBUTE.search(line)
            assert match is not None  # _walk only pairs such lines with a URI
            out.append(f'{line[: match.start()]}URI="{replace(uri)}"{line[match.end() :]}')
        else:
            out.append(replace(uri))
    return "\n".join(out) + "\n"


def uris(text: str, base_url: str) -> list[Uri]:
    return [uri for _, uri in _walk(text, base_url) if uri is not None]


def _walk(text: str, base_url: str) -> Iterable[tuple[str, Uri | None]]:
    """Each kept line, with the URI it carries (None for a line without one)."""
    check(text)
    sequence = 0
    index = 0
    pending_tag = SEGMENT
    pending: dict[str, str] = {}
    duration: float | None = None
    for raw in text.lstrip("\ufeff").splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            name = line[1:].partition(":")[0]
            if not name.startswith("EXT"):
                continue  # a comment: nothing a player needs, possibly a URL
            if name == "EXT-X-MEDIA-SEQUENCE":
                sequence = _int(line.partition(":")[2], 0)
            elif name == "EXT-X-STREAM-INF":
                pending_tag, pending = name, attributes(line)
            elif name == SEGMENT:
                duration = _float(line.partition(":")[2].split(",")[0])
            match = _URI_ATTRIBUTE.search(line)
            if match is None:
                yield line, None
                continue
            if name not in URI_TAGS:
                continue  # a URI in a tag we do not relay: dropped, never passed on
            url = urljoin(base_url, match.group(1))
            if not _relayable(url):
                yield line, None
                continue
            seq = sequence if name in {"EXT-X-PART", "EXT-X-PRELOAD-HINT"} else None
            yield line, Uri(url, name, index, seq, None, attributes(line))
            index += 1
            continue
        url = urljoin(base_url, line)
        if pending_tag == SEGMENT:
            uri = Uri(url, SEGMENT, index, sequence, duration)
            sequence += 1
        else:
            uri = Uri(url, pending_tag, index, None, None, pending)
        pending_tag, pending, duration = SEGMENT, {}, None
        index += 1
        if _relayable(url):
            yield line, uri
        else:
            yield line, None


def _relayable(url: str) -> bool:
    return urlsplit(url).scheme in {"http", "https"}


def _int(value: str, default: int) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return default


def _float(value: str) -> float | None:
    try:
        return float(value.strip())
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class VariantFormat:
    """What a master playlist needs to know about one media playlist."""

    url: str
    bandwidth: int
    width: int | None = None
    height: int | None = None
    codecs: str | None = None
    frame_rate: float | None = None


def build_master(variants: Iterable[VariantFormat]) -> str:
    """A master playlist listing `variants`, lowest bandwidth first."""
    lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in sorted(variants, key=lambda v: v.bandwidth):
        attrs = [f"BANDWIDTH={max(1, variant.bandwidth)}"]
        if variant.width and variant.height:
            attrs.append(f"RESOLUTION={variant.width}x{variant.height}")
        if variant.codecs:
            attrs.append(f'CODECS="{variant.codecs}"')
        if variant.frame_rate:
            attrs.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(variant.url)
    return "\n".join(lines) + "\n"


def single_variant_master(media_url: str) -> str:
    """A master for an upstream that gave a media playlist directly."""
    return build_master([VariantFormat(url=media_url, bandwidth=1)])
