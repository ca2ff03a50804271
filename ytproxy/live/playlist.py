"""HLS playlists: reading just enough of them, and rewriting every URI they hold.

`rewrite(text, base_url, replace)` returns the playlist with each URI replaced by what
`replace(uri)` returns: URI lines (variant streams in a master, segments in a media
playlist) and the `URI="..."` attribute of `EXT-X-KEY`, `EXT-X-MAP`, `EXT-X-MEDIA`,
`EXT-X-I-FRAME-STREAM-INF`, `EXT-X-SESSION-KEY`, `EXT-X-PART` and
`EXT-X-PRELOAD-HINT`. Relative URIs are resolved against `base_url` first, and each
segment comes with its media sequence number (counting the segments that the
`EXT-X-SKIP` of a delta playlist leaves out) so that a segment can be found again in
a later copy of the playlist whose URLs have changed.

The rule is that no upstream URL reaches a client. A link is an attribute named `URI`,
`...-URI` or `X-ASSET-LIST`, or any attribute value holding `://`. The tags a player
needs (those above, `EXT-X-STREAM-INF`, `EXT-X-DATERANGE`) keep their place without
any link other than the relayed `URI`: an interstitial's `X-ASSET-URI` and
`X-ASSET-LIST` are removed and its date range stays, for the ad and chapter markers,
because the gateway relays a channel's own playlists and media, not an ad server's
asset lists (JSON) or playlists. Any other line with a link (`EXT-X-RENDITION-REPORT`,
`EXT-X-SESSION-DATA`, `EXT-X-CONTENT-STEERING`, a plain `#` comment) is dropped: those
are optional hints. A URI that names no server is left alone: an empty `URI=""`, or a
scheme other than http(s) (`data:`, `skd:`). `EXT-X-KEY:METHOD=NONE` is passed on as
just that, the RFC allowing no other attribute with it.

Variables (`EXT-X-DEFINE`) are substituted in URI lines and attribute values before
anything is resolved: `NAME`/`VALUE`, `QUERYPARAM` from `base_url`'s query, and
`IMPORT` from `imported`, a master's variables (`variables()`), when the caller has
them. A reference to a variable whose value is not known refuses the playlist
(`PlaylistError`), as the RFC requires of a client: fetching `https://{$host}/...`
literally is never right. The output holds no references, so its `EXT-X-DEFINE` tags
are dropped; kept, they would only hand the client upstream values (a QUERYPARAM's
signature, say) that it has no use for.

A UTF-8 BOM and blank or comment lines before `#EXTM3U` are tolerated, as players
tolerate them. Parsing is a linear scan of lines and attributes.

The module also builds a master playlist from yt-dlp's formats when there is no
upstream one. It does not fetch, sign or cache anything, and it is not a full
parser: it reads lines and attributes, not the whole HLS grammar.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl, urljoin, urlsplit

from ..errors import UpstreamError

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
# Tags kept without their extra links; any other tag holding a link is dropped.
_NEEDED_TAGS = URI_TAGS | {"EXT-X-STREAM-INF", "EXT-X-DATERANGE"}

# One `NAME=value` from a given position. Anchored (`match`) and with no nested
# repetition, it reads each character a bounded number of times.
_ATTRIBUTE = re.compile(r'([^=,]*)=("[^"]*"?|[^,]*)')
_VARIABLE_NAME = frozenset(string.ascii_letters + string.digits + "-_")


class PlaylistError(UpstreamError, ValueError):
    """The upstream text is not an HLS playlist the gateway can relay (a 502)."""


@dataclasses.dataclass(frozen=True)
class Uri:
    """One URI found in a playlist, resolved to an absolute URL."""

    url: str
    tag: str  # EXT-X-STREAM-INF for a variant line, EXTINF for a segment, else the tag
    index: int  # position among the playlist's URIs, from 0
    sequence: int | None = None  # media sequence of a segment (and of its parts)
    duration: float | None = None  # EXTINF duration of a segment
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Attribute:
    name: str
    value: str  # without its quotes
    quoted: bool
    start: int  # `NAME=value` is line[start:end], `value` with its quotes line[value_start:end]
    value_start: int
    end: int


def check(text: str) -> None:
    """Raise PlaylistError unless `text` is an HLS playlist.

    Without the playlist's URL or its master, a `QUERYPARAM` or `IMPORT` variable
    counts as defined here; `rewrite` and `uris` refuse it if its value is unknown.
    """
    found = _Variables("", None, context_known=False)
    for line in _lines(text):
        if "{$" not in line and not line.startswith("#EXT-X-DEFINE:"):
            continue  # the common case, kept cheap: this runs on every upstream fetch
        if not line.startswith("#"):
            found.substitute(line)
        elif line.startswith("#EXT-X-DEFINE:"):
            found.define(attributes(line))
        elif line.startswith("#EXT") and not line.startswith("#EXTINF:"):
            for attr in _scan(line):
                found.substitute(attr.value)


def is_master(text: str) -> bool:
    return "#EXT-X-STREAM-INF" in text


def attributes(line: str) -> dict[str, str]:
    """The attribute list of a tag line, quotes removed."""
    return {attr.name: attr.value for attr in _scan(line)}


def variables(text: str, base_url: str) -> dict[str, str]:
    """The variables a (master) playlist defines, for a media playlist's `IMPORT`."""
    found = _Variables(base_url, None, context_known=True)
    for line in _lines(text):
        if line.startswith("#EXT-X-DEFINE:"):
            found.define(attributes(line))
    return found.values


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


def rewrite(
    text: str,
    base_url: str,
    replace: Callable[[Uri], str],
    *,
    imported: Mapping[str, str] | None = None,
) -> str:
    """The playlist with every URI replaced (see the module docstring)."""
    out: list[str] = []
    for line, uri, span in _walk(text, base_url, imported):
        if uri is None:
            out.append(line)
        elif span is None:
            out.append(replace(uri))
        else:
            out.append(f'{line[: span[0]]}"{replace(uri)}"{line[span[1] :]}')
    return "\n".join(out) + "\n"


def without(text: str, base_url: str, dropped: Callable[[Uri], bool]) -> str:
    """The playlist without the URIs `dropped` says so of, each with its tag line (a
    variant's `#EXT-X-STREAM-INF` goes with the URI line after it)."""
    out: list[str] = []
    for line, uri, _ in _walk(text, base_url, None):
        if uri is not None and dropped(uri):
            if uri.tag == "EXT-X-STREAM-INF" and out and out[-1].startswith("#EXT-X-STREAM-INF"):
                out.pop()
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def uris(text: str, base_url: str, *, imported: Mapping[str, str] | None = None) -> list[Uri]:
    return [uri for _, uri, _ in _walk(text, base_url, imported) if uri is not None]


def _lines(text: str) -> list[str]:
    """The stripped lines from `#EXTM3U` on, or PlaylistError.

    `splitlines` also splits at a bare CR and Unicode line breaks: a player may
    treat those as line ends, so each piece must be judged as a line of its own.
    """
    lines = text.removeprefix("\ufeff").splitlines()
    for number, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith("#EXTM3U"):
            return [raw.strip() for raw in lines[number:]]
        if line and not (line.startswith("#") and not line.startswith("#EXT")):
            break  # neither blank nor a comment, the lines a server may put first
    raise PlaylistError("not an HLS playlist (no #EXTM3U)")


_Line = tuple[str, Uri | None, tuple[int, int] | None]


def _walk(
    text: str,
    base_url: str,
    imported: Mapping[str, str] | None,
) -> Iterator[_Line]:
    """Each kept line, with the URI it carries and that URI's span in the line.

    The span is that of the quoted attribute value; it is None for a URI line.
    """
    found = _Variables(base_url, imported, context_known=True)
    sequence = 0
    index = 0
    pending_tag = SEGMENT
    pending: dict[str, str] = {}
    duration: float | None = None
    for line in _lines(text):
        if not line:
            continue
        if not line.startswith("#"):
            line = found.substitute(line)
            if not line:
                raise PlaylistError("invalid playlist: a URI line is empty once substituted")
            url = urljoin(base_url, line)
            if pending_tag == SEGMENT:
                uri = Uri(url, SEGMENT, index, sequence, duration)
                sequence += 1
            else:
                uri = Uri(url, pending_tag, index, None, None, pending)
            pending_tag, pending, duration = SEGMENT, {}, None
            index += 1
            yield (line, uri, None) if _relayable(url) else (line, None, None)
            continue
        name, _, value = line[1:].partition(":")
        if not name.startswith("EXT"):
            continue  # a comment: nothing a player needs, possibly a URL
        if name == SEGMENT:  # its title is free text, not an attribute list
            length, _, title = value.partition(",")
            duration = _float(length)
            yield (f"#EXTINF:{length}," if "://" in title else line), None, None
            continue
        scanned = _scan(line)
        if name == "EXT-X-DEFINE":
            found.define({attr.name: attr.value for attr in scanned})
            continue  # every reference is substituted, so the definition is not needed
        if any("{$" in attr.value for attr in scanned):
            line = _substituted(line, scanned, found)
            scanned = _scan(line)
        relayed = _relayed(name, scanned)
        links = [attr for attr in scanned if attr is not relayed and _is_link(attr)]
        if links:
            if name not in _NEEDED_TAGS:
                continue  # a link in a tag we do not relay: dropped, never passed on
            line = _without(line, scanned, links)
            scanned = _scan(line)
            relayed = _relayed(name, scanned)
        attrs = {attr.name: attr.value for attr in scanned}
        if name == "EXT-X-MEDIA-SEQUENCE":
            sequence = _int(value, 0)
        elif name == "EXT-X-SKIP":  # a delta playlist: that many segments are left out
            sequence += max(0, _int(attrs.get("SKIPPED-SEGMENTS", ""), 0))
        elif name == "EXT-X-STREAM-INF":
            pending_tag, pending = name, attrs
        elif name in {"EXT-X-KEY", "EXT-X-SESSION-KEY"} and attrs.get("METHOD") == "NONE":
            if name == "EXT-X-KEY":  # a session key cannot be NONE: an invalid hint, dropped
                yield "#EXT-X-KEY:METHOD=NONE", None, None
            continue
        if relayed is None or not relayed.value:
            yield line, None, None
            continue
        url = urljoin(base_url, relayed.value)
        if not _relayable(url):
            yield line, None, None
            continue
        seq = sequence if name in {"EXT-X-PART", "EXT-X-PRELOAD-HINT"} else None
        yield line, Uri(url, name, index, seq, None, attrs), (relayed.value_start, relayed.end)
        index += 1


def _relayed(tag: str, scanned: list[_Attribute]) -> _Attribute | None:
    """The URI attribute the gateway relays for `tag`, if it has one."""
    if tag not in URI_TAGS:
        return None
    return next((attr for attr in scanned if attr.name == "URI"), None)


def _scan(line: str) -> list[_Attribute]:
    """The attributes of a tag line, in order; text that is not `NAME=value` is skipped."""
    out: list[_Attribute] = []
    position = line.find(":") + 1
    if position == 0:
        return out
    while position < len(line):
        match = _ATTRIBUTE.match(line, position)
        if match is None:  # a name without a value
            comma = line.find(",", position)
            position = len(line) if comma < 0 else comma + 1
            continue
        end = match.end()
        if end < len(line) and line[end] != ",":  # text after a quoted string
            comma = line.find(",", end)
            end = len(line) if comma < 0 else comma
        raw = match.group(2)
        quoted = raw.startswith('"')
        value = raw[1 : len(raw) - 1 if len(raw) > 1 and raw.endswith('"') else None]
        out.append(
            _Attribute(
                match.group(1).strip(),
                value if quoted else raw.strip(),
                quoted,
                position,
                match.start(2),
                match.end(2),
            )
        )
        position = end + 1
    return out


def _is_link(attr: _Attribute) -> bool:
    name = attr.name
    return name == "URI" or name.endswith("-URI") or name == "X-ASSET-LIST" or "://" in attr.value


def _without(line: str, scanned: list[_Attribute], dropped: list[_Attribute]) -> str:
    """`line` without the attributes in `dropped`."""
    gone = {id(attr) for attr in dropped}
    kept = [line[a.start : a.end].strip() for a in scanned if id(a) not in gone]
    return line[: line.find(":") + 1] + ",".join(kept)


def _substituted(line: str, scanned: list[_Attribute], found: _Variables) -> str:
    """`line` with the variable references in its attribute values replaced."""
    parts = []
    for attr in scanned:
        value = found.substitute(attr.value)
        if attr.quoted:
            parts.append(f'{attr.name}="{value}"')
        elif "," in value:
            raise PlaylistError("invalid playlist: a variable puts a comma in a plain value")
        else:
            parts.append(f"{attr.name}={value}")
    return line[: line.find(":") + 1] + ",".join(parts)


class _Variables:
    """The `EXT-X-DEFINE` variables of one playlist, in the order they are defined."""

    def __init__(
        self, base_url: str, imported: Mapping[str, str] | None, *, context_known: bool
    ) -> None:
        self.values: dict[str, str] = {}
        self._defined: set[str] = set()
        self._imported = imported or {}
        self._query = dict(reversed(parse_qsl(urlsplit(base_url).query, keep_blank_values=True)))
        self._context_known = context_known

    def define(self, attrs: Mapping[str, str]) -> None:
        value: str | None
        if "NAME" in attrs:
            name, value = attrs["NAME"], attrs.get("VALUE")
        elif "IMPORT" in attrs:
            name = attrs["IMPORT"]
            value = self._imported.get(name) if self._context_known else ""
        elif "QUERYPARAM" in attrs:
            name = attrs["QUERYPARAM"]
            value = self._query.get(name) if self._context_known else ""
        else:
            raise PlaylistError("invalid playlist: an EXT-X-DEFINE names no variable")
        if not name or not set(name) <= _VARIABLE_NAME:
            raise PlaylistError("invalid playlist: an EXT-X-DEFINE has an invalid name")
        if name in self._defined:
            raise PlaylistError(f"invalid playlist: variable {name} is defined twice")
        self._defined.add(name)
        if value is None:
            return  # a reference to it is refused, as to an undefined one
        if '"' in value or not value.isprintable():
            raise PlaylistError(f"invalid playlist: variable {name} has an unusable value")
        self.values[name] = value

    def substitute(self, text: str) -> str:
        """`text` with each `{$name}` replaced; PlaylistError for an unknown name."""
        start = text.find("{$")
        if start < 0:
            return text
        out: list[str] = []
        copied = 0
        while start >= 0:
            end = start + 2
            while end < len(text) and text[end] in _VARIABLE_NAME:
                end += 1
            if end < len(text) and text[end] == "}" and end > start + 2:
                name = text[start + 2 : end]
                if name not in self.values:
                    raise PlaylistError(
                        f"invalid playlist: it refers to an undefined variable {{${name}}}"
                    )
                out.append(text[copied:start])
                out.append(self.values[name])
                copied = end + 1
            start = text.find("{$", end)  # names hold no "{", so none is skipped
        out.append(text[copied:])
        return "".join(out)


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
    # An audio-only rendition of a demuxed live (yt-dlp's `vcodec: none`).
    audio_only: bool = False
    name: str | None = None
    language: str | None = None
    default: bool = False


AUDIO_GROUP = "audio"


def has_audio_renditions(master: str, base_url: str) -> bool:
    """Whether a master takes its audio from separate renditions (a demuxed live)."""
    return any(
        uri.tag == "EXT-X-MEDIA" and uri.attributes.get("TYPE") == "AUDIO"
        for uri in uris(master, base_url)
    )


def build_master(variants: Iterable[VariantFormat]) -> str:
    """A master playlist listing `variants`, lowest bandwidth first.

    Audio-only renditions (a demuxed live: separate video-only and audio-only media
    playlists, no master) become one `#EXT-X-MEDIA:TYPE=AUDIO` group, referenced by
    `AUDIO=` on every video variant, whose BANDWIDTH and CODECS then include the
    default audio's, as RFC 8216 asks. Without audio-only renditions it is a plain list.
    """
    listed = list(variants)
    audio = [v for v in listed if v.audio_only]
    video = sorted((v for v in listed if not v.audio_only), key=lambda v: v.bandwidth)
    if not video:  # an audio-only stream: its renditions are the variants
        video, audio = sorted(audio, key=lambda v: v.bandwidth), []
    lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    default_audio = next((a for a in audio if a.default), audio[0] if audio else None)
    names: set[str] = set()
    for rendition in audio:
        name = _unique(rendition.name or rendition.language or "Audio", names)
        attrs = [f"TYPE=AUDIO,GROUP-ID={_quoted(AUDIO_GROUP)},NAME={_quoted(name)}"]
        if rendition.language:
            attrs.append(f"LANGUAGE={_quoted(rendition.language)}")
        is_default = rendition is default_audio
        attrs.append(f"DEFAULT={'YES' if is_default else 'NO'},AUTOSELECT=YES")
        attrs.append(f"URI={_quoted(rendition.url)}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    for variant in video:
        bandwidth = variant.bandwidth + (default_audio.bandwidth if default_audio else 0)
        codecs = [c for c in (variant.codecs, default_audio and default_audio.codecs) if c]
        attrs = [f"BANDWIDTH={max(1, bandwidth)}"]
        if variant.width and variant.height:
            attrs.append(f"RESOLUTION={variant.width}x{variant.height}")
        if codecs:
            attrs.append(f"CODECS={_quoted(','.join(codecs))}")
        if variant.frame_rate:
            attrs.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        if default_audio is not None:
            attrs.append(f"AUDIO={_quoted(AUDIO_GROUP)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(variant.url)
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    """A quoted-string attribute value: no double quote, no line break (RFC 8216 4.2)."""
    return '"' + " ".join(value.replace('"', "'").split()) + '"'


def _unique(name: str, taken: set[str]) -> str:
    """NAME must differ between the renditions of a group."""
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name} ({number})", number + 1
    taken.add(candidate)
    return candidate


def single_variant_master(media_url: str) -> str:
    """A master for an upstream that gave a media playlist directly."""
    return build_master([VariantFormat(url=media_url, bandwidth=1)])
