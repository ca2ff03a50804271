"""What a channel's yt-dlp info dict says: live or not, and which HLS formats to relay.

`pick_stream(info)` makes the YouTube-specific choices: a live (`live_status ==
"is_live"`) entry with HLS formats (`protocol` `m3u8_native`); the master is the
formats' common `manifest_url` (YouTube's `hls_variant` manifest), else one is built
from the formats' own media playlist URLs and `tbr`, `width`, `height`, `vcodec`,
`acodec`, `fps` — for a demuxed live (video-only and audio-only formats) with the audio
as an `EXT-X-MEDIA` group (`playlist.build_master`). Anything else raises `NotLive`
with the channel's status: `upcoming` (with `release_timestamp` as `starts_at`),
`ended` (`post_live`, `was_live`) or `offline`. The stream's expiry is read from its
URLs (`upstream.expiry_of`).

Pure functions on dicts: nothing here fetches, caches or knows about channels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..upstream import expiry_of
from .playlist import VariantFormat

DESCRIPTION_LIMIT = 300


class NotLive(Exception):
    """yt-dlp found the channel, but not a live HLS stream: `status` is `upcoming`
    (with `starts_at` when yt-dlp knows it), `ended` or `offline`."""

    def __init__(
        self,
        status: str,
        detail: str = "",
        starts_at: float | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail or status)
        self.status = status
        self.detail = detail or status
        self.starts_at = starts_at
        self.title = title  # the upcoming or ended live's, for the guide


# yt-dlp's `live_status` values that are not a live stream, as channel statuses.
_LIVE_STATUS = {
    "is_upcoming": "upcoming",
    "post_live": "ended",
    "was_live": "ended",
    "not_live": "offline",
}


@dataclasses.dataclass(frozen=True)
class StreamChoice:
    stream_id: str
    master_url: str | None
    formats: list[VariantFormat]
    expires_at: float | None
    available_at: float | None = None
    title: str = ""
    description: str = ""
    started_at: float | None = None


def pick_stream(info: dict[str, Any]) -> StreamChoice:
    status = info.get("live_status")
    if status not in (None, "is_live") or (status is None and info.get("is_live") is False):
        starts_at = _number_or_none(info.get("release_timestamp"))
        title = _title(info) or None
        raise NotLive(_LIVE_STATUS.get(str(status), "offline"), str(status), starts_at, title)
    formats = info.get("formats") or ([info] if info.get("url") else [])
    hls = [
        f
        for f in formats
        if str(f.get("protocol") or "").startswith("m3u8")
        and f.get("url")
        and not (f.get("vcodec") == "none" and f.get("acodec") == "none")
    ]
    if not hls:
        raise NotLive("offline", "no_hls_formats")
    manifests = {f["manifest_url"] for f in hls if f.get("manifest_url")}
    master_url = manifests.pop() if len(manifests) == 1 else None
    variants: dict[str, VariantFormat] = {}
    audio_preference = max((_audio_rank(f) for f in hls if _audio_only(f)), default=None)
    for f in hls:
        audio_only = _audio_only(f)
        variants.setdefault(
            f["url"],
            VariantFormat(
                url=f["url"],
                bandwidth=int(float(f.get("tbr") or f.get("abr") or 0) * 1000),
                width=int_or_none(f.get("width")),
                height=int_or_none(f.get("height")),
                codecs=_codecs(f),
                frame_rate=float(f["fps"]) if f.get("fps") else None,
                audio_only=audio_only,
                name=_audio_name(f) if audio_only else None,
                language=str(f["language"]) if audio_only and f.get("language") else None,
                default=audio_only and _audio_rank(f) == audio_preference,
            ),
        )
    urls = [u for u in (master_url, *variants) if u]
    expiries = [e for e in map(expiry_of, urls) if e is not None]
    available = [a for a in (_number_or_none(f.get("available_at")) for f in hls) if a]
    return StreamChoice(
        stream_id=str(info.get("id") or ""),
        master_url=master_url,
        formats=list(variants.values()),
        expires_at=min(expiries) if expiries else None,
        available_at=max(available) if available else None,
        title=_title(info),
        description=trimmed(str(info.get("description") or ""), DESCRIPTION_LIMIT),
        # A live's `release_timestamp` is when it actually began; `timestamp` otherwise.
        started_at=_number_or_none(info.get("release_timestamp"))
        or _number_or_none(info.get("timestamp")),
    )


def _title(info: dict[str, Any]) -> str:
    """The live's title as its channel gave it: yt-dlp appends the date to a live's
    `title` and keeps the original as `fulltitle`."""
    return " ".join(str(info.get("fulltitle") or info.get("title") or "").split())


def trimmed(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a word when one is near."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit * 0.8 else cut).rstrip() + "\u2026"


def _audio_only(f: dict[str, Any]) -> bool:
    return f.get("vcodec") == "none" and f.get("acodec") not in (None, "none")


def _audio_rank(f: dict[str, Any]) -> tuple[int, float]:
    """The default audio track first: yt-dlp ranks YouTube's original or default track
    with `language_preference` (10 for the original), then by bitrate."""
    return int(f.get("language_preference") or 0), float(f.get("tbr") or f.get("abr") or 0)


def _audio_name(f: dict[str, Any]) -> str:
    """What a player shows for an audio rendition, from yt-dlp's fields."""
    note = str(f.get("format_note") or "").strip()
    language = str(f.get("language") or "").strip()
    return note or language or "Audio"


def _number_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _codecs(f: dict[str, Any]) -> str | None:
    found = [str(f[k]) for k in ("vcodec", "acodec") if f.get(k) and f[k] != "none"]
    return ",".join(found) or None
