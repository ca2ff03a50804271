"""Pure rendering of the test origin's manifests: the live HLS window, playlists, the MPD.

Everything here is a function of its arguments (elapsed stream time, media facts, URLs
already signed by the caller), so the sliding-window and wrap-around logic can be
unit-tested without a clock or a server. It deliberately knows nothing about HTTP,
signing or faults; see `server.py` for those.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from tests.origin.media import DashRepresentation, HlsVariant

WINDOW_SEGMENTS = 5


@dataclass(frozen=True)
class LiveSegment:
    """One entry of a live media playlist."""

    sequence: int
    media_index: int
    duration: float
    discontinuity: bool


def newest_sequence(elapsed: float, durations: Sequence[float]) -> int:
    """The last segment (counting from 0, looping over `durations`) that has fully
    elapsed by `elapsed` seconds of stream time, or -1 if none has."""
    ends = list(itertools.accumulate(durations))
    loops, within = divmod(elapsed, ends[-1])
    # A segment is published once its end time is <= elapsed.
    return int(loops) * len(durations) + bisect.bisect_right(ends, within) - 1


def live_window(
    elapsed: float, durations: Sequence[float], size: int = WINDOW_SEGMENTS
) -> list[LiveSegment]:
    """The newest `size` published segments; a segment whose media file wraps back to
    the start of the loop is marked as a discontinuity (its timestamps jump back)."""
    newest = newest_sequence(elapsed, durations)
    count = len(durations)
    return [
        LiveSegment(
            sequence=seq,
            media_index=seq % count,
            duration=durations[seq % count],
            discontinuity=seq > 0 and seq % count == 0,
        )
        for seq in range(max(0, newest - size + 1), newest + 1)
    ]


def discontinuity_sequence(first_sequence: int, count: int) -> int:
    """How many discontinuity tags have slid out of a window starting at
    `first_sequence` (the value of EXT-X-DISCONTINUITY-SEQUENCE)."""
    return max(0, (first_sequence - 1) // count)


def media_playlist(
    window: Sequence[LiveSegment], count: int, segment_url: Callable[[int], str], target: int
) -> str:
    first = window[0].sequence if window else 0
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence(first, count)}",
    ]
    for segment in window:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXTINF:{segment.duration:.6f},")
        lines.append(segment_url(segment.sequence))
    return "\n".join(lines) + "\n"


def master_playlist(variants: Sequence[tuple[HlsVariant, str]]) -> str:
    lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant, url in variants:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={variant.bandwidth},"
            f"AVERAGE-BANDWIDTH={variant.average_bandwidth},"
            f"RESOLUTION={variant.width}x{variant.height},"
            f'CODECS="{variant.codecs}",FRAME-RATE={variant.fps}'
        )
        lines.append(url)
    return "\n".join(lines) + "\n"


def dash_manifest(representations: Sequence[tuple[DashRepresentation, str]]) -> str:
    """A static on-demand MPD with one video AdaptationSet and one audio AdaptationSet
    per audio representation, each representation a single file at an absolute URL."""
    duration = max(rep.duration for rep, _ in representations)
    video = [(rep, url) for rep, url in representations if rep.kind == "video"]
    audio = [(rep, url) for rep, url in representations if rep.kind == "audio"]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:yt="http://youtube.com/yt/2012/10/10"'
        ' profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" type="static"'
        f' minBufferTime="PT1.500S" mediaPresentationDuration="PT{duration:.3f}S">',
        "<Period>",
        '<AdaptationSet id="0" contentType="video" subsegmentAlignment="true">',
    ]
    parts += [_representation(rep, url) for rep, url in video]
    parts.append("</AdaptationSet>")
    for set_id, (rep, url) in enumerate(audio, start=1):
        parts.append(f'<AdaptationSet id="{set_id}" contentType="audio" lang="en">')
        parts.append(_representation(rep, url))
        parts.append("</AdaptationSet>")
    parts += ["</Period>", "</MPD>"]
    return "\n".join(parts) + "\n"


def _representation(rep: DashRepresentation, url: str) -> str:
    attrs = {
        "id": rep.id,
        "mimeType": rep.mime_type,
        "codecs": rep.codecs,
        "bandwidth": str(rep.bandwidth),
    }
    if rep.kind == "video":
        attrs.update(width=str(rep.width), height=str(rep.height), frameRate=str(rep.fps))
    else:
        attrs["audioSamplingRate"] = str(rep.sample_rate)
    rendered = " ".join(f"{name}={quoteattr(value)}" for name, value in attrs.items())
    return (
        f"<Representation {rendered}>"
        f'<BaseURL yt:contentLength="{rep.size}">{escape(url)}</BaseURL>'
        "</Representation>"
    )
