"""Format classification on an info dict shaped like yt-dlp's YouTube output.

The dict is written from yt-dlp's documented format fields (README "FORMAT SELECTION"
and `YoutubeIE._extract_formats_and_subtitles`): itags, codec strings, dynamic_range,
language and language_preference (10 = original track, -1 = another dub),
tbr/vbr/abr in kbit/s, filesize or filesize_approx, storyboards as mhtml.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ytproxy.analyse.formats import (
    audio_family,
    build_result,
    format_group,
    pair_container,
    resolution_label,
    short_description,
    video_family,
)

DURATION = 212.0


def _video(fid: str, ext: str, vcodec: str, w: int, h: int, fps: int, vbr: float, **extra: Any):
    return {
        "format_id": fid,
        "ext": ext,
        "vcodec": vcodec,
        "acodec": "none",
        "width": w,
        "height": h,
        "fps": fps,
        "vbr": vbr,
        "tbr": vbr,
        "abr": 0,
        "protocol": "https",
        "dynamic_range": "SDR",
        "format_note": f"{h}p",
        "url": f"https://rr.example/{fid}",
        "filesize": int(vbr * 1000 / 8 * DURATION),
        **extra,
    }


def _audio(fid: str, ext: str, acodec: str, abr: float, lang: str, pref: int, note: str):
    return {
        "format_id": fid,
        "ext": ext,
        "vcodec": "none",
        "acodec": acodec,
        "abr": abr,
        "tbr": abr,
        "vbr": 0,
        "asr": 48000,
        "audio_channels": 2,
        "protocol": "https",
        "language": lang,
        "language_preference": pref,
        "format_note": note,
        "resolution": "audio only",
        "url": f"https://rr.example/{fid}",
        "filesize_approx": int(abr * 1000 / 8 * DURATION),
    }


def youtube_info() -> dict[str, Any]:
    storyboard = {
        "ext": "mhtml",
        "protocol": "mhtml",
        "vcodec": "none",
        "acodec": "none",
        "format_note": "storyboard",
        "width": 48,
        "height": 27,
        "fps": 0.5,
        "url": "https://i.ytimg.com/sb/x/storyboard3_L0/default.jpg",
    }
    formats = [
        {**storyboard, "format_id": "sb2"},
        {**storyboard, "format_id": "sb0", "width": 320, "height": 180},
        _audio("249", "webm", "opus", 50.1, "en", 10, "English original (default), low"),
        _audio("140", "m4a", "mp4a.40.2", 129.5, "en", 10, "English original (default), medium"),
        _audio("251", "webm", "opus", 131.2, "en", 10, "English original (default), medium"),
        _audio("140-1", "m4a", "mp4a.40.2", 129.4, "de", -1, "German, medium"),
        _audio("251-1", "webm", "opus", 125.0, "de", -1, "German, medium"),
        {
            "format_id": "18",
            "ext": "mp4",
            "vcodec": "avc1.42001E",
            "acodec": "mp4a.40.2",
            "width": 640,
            "height": 360,
            "fps": 30,
            "tbr": 503.4,
            "protocol": "https",
            "dynamic_range": "SDR",
            "format_note": "360p",
            "language": "en",
            "filesize_approx": 13_340_000,
            "url": "https://rr.example/18",
        },
        _video("137", "mp4", "avc1.640028", 1920, 1080, 30, 4395.0),
        _video("248", "webm", "vp09.00.40.08", 1920, 1080, 30, 2650.0),
        _video("315", "webm", "vp09.00.51.08", 3840, 2160, 60, 26_120.0),
        _video(
            "337",
            "webm",
            "vp09.02.51.10.01.09.16.09.00",
            3840,
            2160,
            60,
            30_410.0,
            dynamic_range="HDR10",
            format_note="2160p60 HDR",
        ),
        _video(
            "571",
            "mp4",
            "av01.0.16M.10",
            7680,
            4320,
            30,
            21_300.0,
            filesize=None,
            filesize_approx=564_000_000,
        ),
        {**storyboard, "format_id": "sb1", "width": 160, "height": 90},
    ]
    return {
        "id": "dQw4w9WgXcQ",
        "title": "A video in 8K",
        "uploader": "Example Channel",
        "channel": "Example Channel",
        "channel_url": "https://www.youtube.com/channel/UC0123456789",
        "thumbnail": "https://i.ytimg.com/vi/dQw4w9WgXcQ/maxresdefault.jpg",
        "thumbnails": [
            {"url": "https://i.ytimg.com/vi/dQw4w9WgXcQ/default.jpg", "preference": -10},
            {"url": "https://i.ytimg.com/vi/dQw4w9WgXcQ/maxresdefault.jpg", "preference": 0},
        ],
        "duration": DURATION,
        "upload_date": "20250102",
        "view_count": 1234567,
        "is_live": False,
        "webpage_url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "description": "word " * 200,
        "formats": formats,
    }


def _ids(result: dict[str, Any], group: str) -> list[str]:
    return [f["format_id"] for f in result["formats"][group]]


def test_youtube_catalogue_groups_best_first_and_drops_storyboards() -> None:
    result = build_result(youtube_info())
    assert _ids(result, "muxed") == ["18"]
    assert _ids(result, "video_only") == ["571", "337", "315", "248", "137"]
    # Original language first, then bitrate; the German dub after.
    assert _ids(result, "audio_only") == ["251", "140", "249", "140-1", "251-1"]
    every = [fid for group in result["formats"].values() for fid in (f["format_id"] for f in group)]
    assert not [fid for fid in every if fid.startswith("sb")]


def test_youtube_catalogue_describes_each_format() -> None:
    result = build_result(youtube_info())
    by_id = {f["format_id"]: f for group in result["formats"].values() for f in group}
    keys = ("resolution", "video_codec", "audio_codec", "dynamic_range", "language")
    summary = {fid: tuple(f[k] for k in keys) for fid, f in by_id.items()}
    assert summary == {
        "18": ("360p", "H.264", "AAC", "SDR", "en"),
        "571": ("8K", "AV1", None, "SDR", None),
        "337": ("4K", "VP9", None, "HDR", None),
        "315": ("4K", "VP9", None, "SDR", None),
        "248": ("1080p", "VP9", None, "SDR", None),
        "137": ("1080p", "H.264", None, "SDR", None),
        "251": (None, None, "Opus", None, "en"),
        "140": (None, None, "AAC", None, "en"),
        "249": (None, None, "Opus", None, "en"),
        "140-1": (None, None, "AAC", None, "de"),
        "251-1": (None, None, "Opus", None, "de"),
    }
    hdr = by_id["337"]
    assert (hdr["width"], hdr["height"], hdr["fps"], hdr["hdr_format"]) == (3840, 2160, 60, "HDR10")
    assert hdr["vcodec"] == "vp09.02.51.10.01.09.16.09.00"
    assert hdr["ext"] == "webm" and hdr["protocol"] == "https"
    assert hdr["bitrate"] == 30410
    assert hdr["filesize"] == int(30_410 * 1000 / 8 * DURATION) and hdr["filesize_approx"] is None
    eight_k = by_id["571"]
    assert eight_k["filesize"] is None and eight_k["filesize_approx"] == 564_000_000
    assert by_id["251"]["acodec"] == "opus" and by_id["251"]["bitrate"] == 131
    assert by_id["251"]["audio_channels"] == 2
    assert by_id["140"]["acodec"] == "mp4a.40.2"
    assert by_id["18"]["bitrate"] == 503 and by_id["18"]["filesize_approx"] == 13_340_000
    assert all("_language_preference" not in f for f in by_id.values())


def test_youtube_recommendations_pick_mp4_and_best_quality_pairs() -> None:
    recommended = build_result(youtube_info())["recommended"]
    assert recommended == {
        "best_muxed": {
            "format_ids": ["18"],
            "ext": "mp4",
            "resolution": "360p",
            "video_codec": "H.264",
            "audio_codec": "AAC",
        },
        "best_mp4": {
            "format_ids": ["571", "140"],
            "ext": "mp4",
            "resolution": "8K",
            "video_codec": "AV1",
            "audio_codec": "AAC",
        },
        "best_overall": {
            "format_ids": ["571", "251"],
            "ext": "webm",
            "resolution": "8K",
            "video_codec": "AV1",
            "audio_codec": "Opus",
        },
    }


def test_youtube_metadata_is_kept_and_description_shortened() -> None:
    result = build_result(youtube_info())
    assert result["id"] == "dQw4w9WgXcQ"
    assert result["title"] == "A video in 8K"
    assert (result["uploader"], result["channel"]) == ("Example Channel", "Example Channel")
    assert result["channel_url"] == "https://www.youtube.com/channel/UC0123456789"
    assert result["thumbnail"] == "https://i.ytimg.com/vi/dQw4w9WgXcQ/maxresdefault.jpg"
    assert (result["duration"], result["upload_date"], result["view_count"]) == (
        DURATION,
        "20250102",
        1234567,
    )
    assert result["is_live"] is False
    assert result["webpage_url"] == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert result["description"].endswith("…") and len(result["description"]) <= 501


def test_mp4_pair_falls_back_to_h264_when_only_vp9_is_best() -> None:
    info = youtube_info()
    info["formats"] = [f for f in info["formats"] if f["format_id"] != "571"]
    recommended = build_result(info)["recommended"]
    assert recommended["best_mp4"]["format_ids"] == ["137", "140"]
    assert recommended["best_overall"]["format_ids"] == ["337", "251"]
    assert recommended["best_overall"]["ext"] == "webm"


def test_no_adaptive_formats_means_no_pairs() -> None:
    info = youtube_info()
    info["formats"] = [f for f in info["formats"] if f["format_id"] in {"18", "sb0"}]
    result = build_result(info)
    assert result["recommended"]["best_mp4"] is None
    assert result["recommended"]["best_overall"] is None
    assert result["recommended"]["best_muxed"]["format_ids"] == ["18"]


def test_drm_and_codecless_formats_are_dropped_and_unknown_codecs_count_as_muxed() -> None:
    assert format_group({"vcodec": "none", "acodec": "none", "ext": "jpg"}) is None
    assert format_group({"vcodec": "avc1", "acodec": "none", "has_drm": True}) is None
    assert format_group({"ext": "unknown_video", "vcodec": None, "acodec": None}) is None
    # A plain file link: yt-dlp cannot see its codecs (None = unknown, "none" = absent).
    assert format_group({"ext": "mp4", "vcodec": None, "acodec": None}) == "muxed"


def test_a_hundred_formats_keep_their_order_when_shuffled() -> None:
    info = youtube_info()
    expected = build_result(copy.deepcopy(info))["formats"]
    info["formats"].reverse()
    assert build_result(info)["formats"] == expected


@pytest.mark.parametrize(
    ("width", "height", "label"),
    [
        (7680, 4320, "8K"),
        (3840, 2160, "4K"),
        (4096, 2160, "4K"),
        (2560, 1440, "1440p"),
        (1920, 1080, "1080p"),
        (1920, 800, "1080p"),
        (1080, 1920, "1080p"),
        (1916, 1076, "1080p"),
        (1280, 720, "720p"),
        (854, 480, "480p"),
        (640, 360, "360p"),
        (426, 240, "240p"),
        (256, 144, "144p"),
        (320, 180, "180p"),
        (160, 90, "90p"),
        (None, 720, "720p"),
        (None, None, None),
    ],
)
def test_resolution_labels(width: int | None, height: int | None, label: str | None) -> None:
    assert resolution_label(width, height) == label


@pytest.mark.parametrize(
    ("codec", "family"),
    [
        ("av01.0.16M.10", "AV1"),
        ("vp09.02.51.10.01.09.16.09.00", "VP9"),
        ("vp9", "VP9"),
        ("avc1.640028", "H.264"),
        ("avc1.42001E", "H.264"),
        ("hev1.1.6.L93.B0", "HEVC"),
        ("hvc1.2.4.L153.B0", "HEVC"),
        ("vp8", "VP8"),
        (None, None),
    ],
)
def test_video_codec_families(codec: str | None, family: str | None) -> None:
    assert video_family(codec) == family


@pytest.mark.parametrize(
    ("codec", "family"),
    [
        ("opus", "Opus"),
        ("mp4a.40.2", "AAC"),
        ("mp4a.40.5", "AAC"),
        ("mp4a.40.34", "MP3"),
        ("mp3", "MP3"),
        ("ec-3", "E-AC-3"),
        ("ac-3", "AC-3"),
        ("vorbis", "Vorbis"),
        ("flac", "FLAC"),
        ("alac", "ALAC"),
    ],
)
def test_audio_codec_families(codec: str, family: str) -> None:
    assert audio_family(codec) == family


@pytest.mark.parametrize(
    ("video", "audio", "container"),
    [
        ("H.264", "AAC", "mp4"),
        ("AV1", "AAC", "mp4"),
        ("HEVC", "AAC", "mp4"),
        ("VP9", "Opus", "webm"),
        ("AV1", "Opus", "webm"),
        ("H.264", "Opus", "mkv"),
        ("VP9", "AAC", "mkv"),
    ],
)
def test_pair_containers(video: str, audio: str, container: str) -> None:
    assert pair_container({"video_codec": video}, {"audio_codec": audio}) == container


def test_short_description_cuts_at_a_word() -> None:
    assert short_description("  short  ") == "short"
    assert short_description("") is None
    assert short_description(None) is None
    assert short_description("alpha beta gamma", limit=12) == "alpha beta…"
