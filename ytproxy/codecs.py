"""Codec families: yt-dlp's codec strings (`avc1.640028`, `mp4a.40.2`, ...) named as
people know them (H.264, AAC, ...).

Shared by the format catalogue (labels, ranking, "fits in MP4") and the merge
(which container ffmpeg can write a pair into). It does not rank or choose anything.
"""

from __future__ import annotations

_VIDEO_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("av01", "av1"), "AV1"),
    (("vp09", "vp9"), "VP9"),
    (("vp08", "vp8"), "VP8"),
    (("hev1", "hvc1", "hevc", "h265", "dvh1", "dvhe"), "HEVC"),
    (("avc1", "avc3", "h264", "avc"), "H.264"),
    (("mp4v", "mpeg4"), "MPEG-4"),
    (("theora",), "Theora"),
)
_AUDIO_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("opus",), "Opus"),
    # mp4a.40.34, mp4a.69 and mp4a.6b are MPEG audio layer 3 carried in MP4.
    (("mp4a.40.34", "mp4a.69", "mp4a.6b", "mp3"), "MP3"),
    (("mp4a", "aac"), "AAC"),
    (("vorbis",), "Vorbis"),
    (("ec-3", "eac3"), "E-AC-3"),
    (("ac-3", "ac3"), "AC-3"),
    (("flac",), "FLAC"),
    (("alac",), "ALAC"),
    (("pcm", "lpcm"), "PCM"),
)


def video_family(codec: str | None) -> str | None:
    return _family(codec, _VIDEO_FAMILIES)


def audio_family(codec: str | None) -> str | None:
    return _family(codec, _AUDIO_FAMILIES)


def _family(codec: str | None, table: tuple[tuple[tuple[str, ...], str], ...]) -> str | None:
    if not codec:
        return None
    lowered = codec.lower()
    for prefixes, family in table:
        if lowered.startswith(prefixes):
            return family
    return codec.split(".")[0].upper()
