"""From yt-dlp's info dict to the public result: metadata and a grouped format catalogue.

`build_result(info)` keeps the metadata a person needs to recognise the video and
sorts every media format into one of three groups, best first:

- `muxed`: video and audio in one file (YouTube's 360p format 18, live HLS variants,
  a plain MP4 link whose codecs yt-dlp cannot see: unknown counts as present);
- `video_only` and `audio_only`: DASH-style adaptive formats.

Each format gets a resolution label (4320p is "8K", 2160p "4K", then 1440p, 1080p, …,
taken from the short side, or the long side for letterboxed video, so 1920x800 is
1080p as YouTube labels it), codec families (AV1, VP9, H.264, HEVC; Opus, AAC, MP3,
…), HDR or SDR, language, bitrate and size. Storyboards (mhtml image sprites), other
formats with neither video nor audio, DRM-protected formats and the generic
extractor's guesses (`unknown_video`: any response it could not place) are dropped;
`has_media(result)` tells the runner whether anything is left.

`recommended` names the best muxed format, the best video+audio pair that fits in MP4
(H.264, HEVC or AV1 video with AAC audio: what phones, TVs and QuickTime play), and
the best-quality pair overall (which may need WebM or Matroska, e.g. VP9 + Opus).

`subtitles` and `automatic_captions` list the tracks by language, and `warnings` says
what YouTube withheld (a degraded answer), `[{"code", "message"}]`.

This module is pure: no I/O, no download links (those are made when a result is
served, so they carry their full lifetime) and no upstream URLs (`sources.py` keeps
those private).
"""

from __future__ import annotations

import time
from typing import Any

from ..captions import list_tracks
from ..codecs import audio_family, video_family
from .degraded import warnings_for

DESCRIPTION_LIMIT = 500

# (label height, typical width): a video reaches a rung when its short side reaches
# the height or its long side reaches the width (letterboxed and vertical video).
_RUNGS: tuple[tuple[int, int], ...] = (
    (4320, 7680),
    (2160, 3840),
    (1440, 2560),
    (1080, 1920),
    (720, 1280),
    (480, 854),
    (360, 640),
    (240, 426),
    (144, 256),
)
_NAMED = {4320: "8K", 2160: "4K"}
# A little slack for encoders that crop a few pixels (1916x1076 is still 1080p).
_TOLERANCE = 0.98
_BETWEEN = 1.15

# yt-dlp's own default preference between codecs of equal resolution (best first).
_VIDEO_RANK = {"AV1": 0, "VP9": 1, "HEVC": 2, "H.264": 3, "VP8": 4, "MPEG-4": 5, "Theora": 6}
_AUDIO_RANK = {
    "Opus": 0,
    "FLAC": 1,
    "ALAC": 2,
    "AAC": 3,
    "E-AC-3": 4,
    "AC-3": 5,
    "Vorbis": 6,
    "MP3": 7,
    "PCM": 8,
}
_MP4_VIDEO = frozenset({"H.264", "HEVC", "AV1"})
_MP4_AUDIO = frozenset({"AAC"})
_WEBM_VIDEO = frozenset({"VP9", "VP8", "AV1"})
_WEBM_AUDIO = frozenset({"Opus", "Vorbis"})


def build_result(info: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The public result of an analysis (JSON-ready, without download links), with its
    subtitle tracks (`captions.py`) and the warnings of a degraded answer (`degraded.py`,
    judged at `now`, default the current time)."""
    duration = _number(info.get("duration"))
    groups: dict[str, list[dict[str, Any]]] = {"muxed": [], "video_only": [], "audio_only": []}
    for raw in info.get("formats") or []:
        group = format_group(raw)
        if group is not None:
            groups[group].append(describe_format(raw, duration))
    groups["muxed"].sort(key=_video_order)
    groups["video_only"].sort(key=_video_order)
    groups["audio_only"].sort(key=_audio_order)
    for entries in groups.values():
        for entry in entries:
            entry.pop("_language_preference", None)
    return {
        "type": "video",
        "id": info.get("id"),
        "title": info.get("title") or info.get("id") or "video",
        "uploader": info.get("uploader"),
        "channel": info.get("channel") or info.get("uploader"),
        "channel_url": info.get("channel_url") or info.get("uploader_url"),
        "thumbnail": best_thumbnail(info),
        "duration": duration,
        "upload_date": info.get("upload_date"),
        "view_count": info.get("view_count"),
        "is_live": bool(info.get("is_live")),
        "webpage_url": _webpage_url(info),
        "description": short_description(info.get("description")),
        "formats": groups,
        "recommended": recommend(groups),
        **list_tracks(info),
        "warnings": warnings_for(info, time.time() if now is None else now),
    }


def has_media(result: dict[str, Any]) -> bool:
    return any(result["formats"].values())


def format_group(fmt: dict[str, Any]) -> str | None:
    """`muxed`, `video_only`, `audio_only`, or None for a format to drop."""
    # yt-dlp's generic extractor calls any response it cannot place "unknown_video"
    # ("could be a direct video link"): a JSON API, an archive... not media we relay.
    if fmt.get("has_drm") or fmt.get("ext") == "unknown_video":
        return None
    if fmt.get("ext") == "mhtml" or fmt.get("protocol") == "mhtml":
        return None
    if "storyboard" in str(fmt.get("format_note") or "").lower():
        return None
    # yt-dlp writes "none" for a stream it knows is absent; None means unknown.
    no_video = fmt.get("vcodec") == "none" or fmt.get("resolution") == "audio only"
    no_audio = fmt.get("acodec") == "none"
    if no_video and no_audio:
        return None
    if no_video:
        return "audio_only"
    if no_audio:
        return "video_only"
    return "muxed"


def describe_format(fmt: dict[str, Any], duration: float | None = None) -> dict[str, Any]:
    group = format_group(fmt)
    has_video = group in {"muxed", "video_only"}
    has_audio = group in {"muxed", "audio_only"}
    width, height = _int(fmt.get("width")), _int(fmt.get("height"))
    vcodec = _codec(fmt.get("vcodec")) if has_video else None
    acodec = _codec(fmt.get("acodec")) if has_audio else None
    bitrate = _bitrate(fmt, has_video, has_audio)
    filesize = _int(fmt.get("filesize"))
    filesize_approx = None if filesize else _int(fmt.get("filesize_approx"))
    if not filesize and not filesize_approx and bitrate and duration:
        filesize_approx = int(bitrate * 1000 / 8 * duration)
    return {
        "format_id": str(fmt.get("format_id")),
        "ext": fmt.get("ext"),
        "resolution": resolution_label(width, height) if has_video else None,
        "width": width if has_video else None,
        "height": height if has_video else None,
        "fps": _number(fmt.get("fps")) if has_video else None,
        "vcodec": vcodec,
        "video_codec": video_family(vcodec) if has_video else None,
        "acodec": acodec,
        "audio_codec": audio_family(acodec) if has_audio else None,
        "bitrate": round(bitrate) if bitrate else None,
        "filesize": filesize,
        "filesize_approx": filesize_approx,
        "dynamic_range": _dynamic_range(fmt.get("dynamic_range")) if has_video else None,
        "hdr_format": _hdr_format(fmt.get("dynamic_range")) if has_video else None,
        "language": fmt.get("language") if has_audio else None,
        "audio_channels": _int(fmt.get("audio_channels")) if has_audio else None,
        "protocol": fmt.get("protocol"),
        "note": fmt.get("format_note"),
        "_language_preference": _number(fmt.get("language_preference")) or 0,
    }


def resolution_label(width: int | None, height: int | None) -> str | None:
    """8K, 4K, 1440p, 1080p, …; the raw short side (e.g. 90p) below 144p."""
    rung = _rung(width, height)
    return None if rung is None else _NAMED.get(rung, f"{rung}p")


def _rung(width: int | None, height: int | None) -> int | None:
    """The label height a video reaches: the highest rung its short side or long side
    reaches; a short side clearly between two rungs (320x180) keeps its own number."""
    sides = [d for d in (width, height) if d]
    if not sides:
        return None
    short, long = min(sides), (max(sides) if len(sides) == 2 else 0)
    for rung_height, rung_width in _RUNGS:
        if long >= rung_width * _TOLERANCE or short >= rung_height * _TOLERANCE:
            return short if short >= rung_height * _BETWEEN else rung_height
    return short


def recommend(groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The three suggestions; each is None when the formats do not allow it."""
    videos, audios = groups["video_only"], groups["audio_only"]
    best_muxed = groups["muxed"][0] if groups["muxed"] else None
    mp4_video = next((v for v in videos if v["video_codec"] in _MP4_VIDEO), None)
    mp4_audio = next((a for a in audios if a["audio_codec"] in _MP4_AUDIO), None)
    return {
        "best_muxed": _single(best_muxed) if best_muxed else None,
        "best_mp4": _pair(mp4_video, mp4_audio),
        "best_overall": _pair(videos[0] if videos else None, audios[0] if audios else None),
    }


def pair_container(video: dict[str, Any], audio: dict[str, Any]) -> str:
    """The container a merged pair is delivered in: mp4, else webm, else mkv."""
    vfam, afam = video.get("video_codec"), audio.get("audio_codec")
    if vfam in _MP4_VIDEO and afam in _MP4_AUDIO:
        return "mp4"
    if vfam in _WEBM_VIDEO and afam in _WEBM_AUDIO:
        return "webm"
    return "mkv"


def best_thumbnail(info: dict[str, Any]) -> str | None:
    # yt-dlp sorts `thumbnails` worst to best and sets `thumbnail` to the best one.
    if info.get("thumbnail"):
        return str(info["thumbnail"])
    thumbnails = [t for t in info.get("thumbnails") or [] if t.get("url")]
    if not thumbnails:
        return None
    best = max(
        enumerate(thumbnails),
        key=lambda it: (
            _number(it[1].get("preference")) or 0,
            (_int(it[1].get("width")) or 0) * (_int(it[1].get("height")) or 0),
            it[0],
        ),
    )
    return str(best[1]["url"])


def short_description(value: Any, limit: int = DESCRIPTION_LIMIT) -> str | None:
    """The description up to `limit` characters, cut at a word, with an ellipsis."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(None, 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(".,;: ") + "…"


def _webpage_url(info: dict[str, Any]) -> str | None:
    # For a direct link the generic extractor reports the URL it ended on, which may
    # be a signed upstream address; the URL the user gave is the page to show.
    if info.get("extractor_key") == "Generic" and info.get("original_url"):
        return str(info["original_url"])
    url = info.get("webpage_url")
    return str(url) if url else None


def _single(fmt: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_ids": [fmt["format_id"]],
        "ext": fmt["ext"],
        "resolution": fmt["resolution"],
        "video_codec": fmt["video_codec"],
        "audio_codec": fmt["audio_codec"],
    }


def _pair(video: dict[str, Any] | None, audio: dict[str, Any] | None) -> dict[str, Any] | None:
    if video is None or audio is None:
        return None
    return {
        "format_ids": [video["format_id"], audio["format_id"]],
        "ext": pair_container(video, audio),
        "resolution": video["resolution"],
        "video_codec": video["video_codec"],
        "audio_codec": audio["audio_codec"],
    }


def _video_order(fmt: dict[str, Any]) -> tuple[Any, ...]:
    # yt-dlp's default order: resolution, frame rate, HDR, codec, then bitrate.
    sides = [d for d in (fmt["width"], fmt["height"]) if d]
    return (
        -(_rung(fmt["width"], fmt["height"]) or 0),
        -(min(sides) if sides else 0),
        -(fmt["fps"] or 0),
        0 if fmt["dynamic_range"] == "HDR" else 1,
        _VIDEO_RANK.get(fmt["video_codec"] or "", 99),
        -(fmt["bitrate"] or 0),
        fmt["format_id"],
    )


def _audio_order(fmt: dict[str, Any]) -> tuple[Any, ...]:
    # The original (or default) language first, then the higher bitrate, then the codec.
    return (
        -fmt["_language_preference"],
        -(fmt["bitrate"] or 0),
        _AUDIO_RANK.get(fmt["audio_codec"] or "", 99),
        fmt["format_id"],
    )


def _codec(value: Any) -> str | None:
    if not isinstance(value, str) or value in {"", "none"}:
        return None
    return value


def _bitrate(fmt: dict[str, Any], has_video: bool, has_audio: bool) -> float | None:
    """kbit/s: the total when known, else the part that this format carries."""
    for key in ("tbr", "vbr" if has_video and not has_audio else "abr"):
        value = _number(fmt.get(key))
        if value:
            return value
    return None


def _dynamic_range(value: Any) -> str:
    # yt-dlp: SDR, HDR10, HDR10+, HDR12, HLG, DV; missing means SDR.
    return "HDR" if isinstance(value, str) and value.upper() != "SDR" else "SDR"


def _hdr_format(value: Any) -> str | None:
    return value if _dynamic_range(value) == "HDR" else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value
