"""Subtitles and captions: listed in the result, downloaded through the gateway.

End to end (real app on a socket, real yt-dlp, the local origin's `/subs/`): a page
whose `<track>` is one WebVTT file, and an HLS VOD with a WebVTT subtitles rendition.
"Identical" for the one file means byte for byte; for the HLS rendition it means the
origin's segments joined (`tests/origin/subtitles.py`, `HLS_JOINED_VTT`): one `WEBVTT`
header, every segment's cue blocks byte for byte, a segment whose `X-TIMESTAMP-MAP`
differs from the first's moved onto the first's timeline. The SRT of each parses (with
webvtt-py's SRT reader) to the same number of cues with the same times and text.

Unit tests cover YouTube-shaped info dicts (vtt/srv3/json3 captions, a live chat that
is not a track) and the segment joining rules.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import webvtt

from tests.origin.subtitles import HLS_CUES, HLS_JOINED_VTT, ONE_FILE_CUES, ONE_FILE_VTT
from tests.test_analyse_origin import analyse
from ytproxy.analyse.formats import build_result
from ytproxy.captions import list_tracks
from ytproxy.download.links import read_subtitle
from ytproxy.download.subtitles import join_segment, to_srt
from ytproxy.sources import strip_info

_TIMEDTEXT = (
    "https://www.youtube.com/api/timedtext?v=dQw4w9WgXcQ&ei=x&caps=asr&lang={lang}&fmt={fmt}"
)


def _youtube_track(lang: str, name: str, formats: tuple[str, ...]) -> list[dict[str, Any]]:
    # yt-dlp's YoutubeIE: one entry per format, `name` on each, the timedtext URL.
    return [
        {"ext": fmt, "url": _TIMEDTEXT.format(lang=lang, fmt=fmt), "name": name} for fmt in formats
    ]


YOUTUBE_INFO: dict[str, Any] = {
    "id": "dQw4w9WgXcQ",
    "title": "A video with captions",
    "extractor_key": "Youtube",
    "webpage_url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "formats": [
        {
            "format_id": "18",
            "url": "https://rr1.googlevideo.com/videoplayback?itag=18",
            "ext": "mp4",
            "vcodec": "avc1.42001E",
            "acodec": "mp4a.40.2",
            "protocol": "https",
        },
        {
            "format_id": "140",
            "url": "https://rr1.googlevideo.com/videoplayback?itag=140",
            "ext": "m4a",
            "vcodec": "none",
            "acodec": "mp4a.40.2",
            "protocol": "https",
        },
    ],
    "subtitles": {
        "en": _youtube_track("en", "English", ("json3", "srv1", "srv2", "srv3", "ttml", "vtt")),
        "de": _youtube_track("de", "German", ("srv3", "json3")),
        "live_chat": [
            {
                "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                "ext": "json",
                "video_id": "dQw4w9WgXcQ",
                "protocol": "youtube_live_chat",
            }
        ],
    },
    "automatic_captions": {
        "en-orig": _youtube_track("en", "English (Original)", ("json3", "srv3", "vtt")),
        "fr": _youtube_track("fr", "French", ("json3", "srv3", "vtt")),
    },
}


def test_youtube_captions_are_listed_by_language_with_their_formats() -> None:
    tracks = list_tracks(YOUTUBE_INFO)
    assert tracks["subtitles"] == [
        {"code": "de", "name": "German", "formats": ["srv3", "json3"], "downloadable": False},
        {
            "code": "en",
            "name": "English",
            "formats": ["json3", "srv1", "srv2", "srv3", "ttml", "vtt"],
            "downloadable": True,
        },
    ]
    assert [(t["code"], t["name"], t["downloadable"]) for t in tracks["automatic_captions"]] == [
        ("en-orig", "English (Original)", True),
        ("fr", "French", True),
    ]


def test_timedtext_urls_stay_in_the_private_sources_never_in_the_result() -> None:
    result = build_result(YOUTUBE_INFO, now=0)
    assert "timedtext" not in json.dumps(result)
    sources = strip_info(YOUTUBE_INFO)["subtitles"]
    assert sources["subtitles"]["en"]["url"].endswith("fmt=vtt")
    assert "de" not in sources["subtitles"]  # srv3/json3 only: no WebVTT to serve
    assert set(sources["automatic_captions"]) == {"en-orig", "fr"}


def test_a_result_without_subtitles_lists_none() -> None:
    result = build_result({"id": "x", "formats": []}, now=0)
    assert (result["subtitles"], result["automatic_captions"]) == ([], [])


def test_joined_hls_segments_drop_repeated_headers_and_follow_the_timestamp_map() -> None:
    first = (
        "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000\n\n"
        "00:00:01.000 --> 00:00:02.000\nA\n"
    )
    second = (
        "WEBVTT\r\nX-TIMESTAMP-MAP=LOCAL:00:00:00.000,MPEGTS:1260000\r\n\r\n"
        "STYLE\r\n::cue { color: red }\r\n\r\n"
        "00:00:00.500 --> 00:00:01.000 line:90%\r\nB\r\n"
    )
    blocks, base, previous = join_segment(first, None, set(), is_first=True)
    assert blocks == ["00:00:01.000 --> 00:00:02.000\nA"]
    blocks, base, _ = join_segment(second, base, previous, is_first=False)
    # 1260000 - 900000 ticks = 4 s later than the first segment's map.
    assert blocks == ["00:00:04.500 --> 00:00:05.000 line:90%\nB"]
    # A cue repeated verbatim from the previous segment (it spans the boundary) goes.
    again, _, _ = join_segment(first, base, previous, is_first=False)
    assert again == []


def test_srt_conversion_keeps_every_cue_of_youtube_shaped_vtt() -> None:
    vtt = (
        "WEBVTT\nKind: captions\nLanguage: en\n\n"
        "00:00:00.160 --> 00:00:02.310 align:start position:0%\n"
        "we're<00:00:00.480><c> no</c><00:00:00.640><c> strangers</c>\n\n"
        "00:00:02.310 --> 00:00:04.000 align:start position:0%\n"
        "to love\n"
    )
    srt = to_srt(vtt)
    assert srt.startswith("1\n00:00:00,160 --> 00:00:02,310\nwe're no strangers\n")
    assert len(webvtt.from_buffer(io.StringIO(srt), format="srt")) == 2


@pytest.fixture
def start_app(app_server, settings):
    return lambda **changes: app_server(settings, **changes)


def _download(client: httpx.Client, path: str) -> httpx.Response:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response


def _srt_cues(text: str) -> list[tuple[str, str, str]]:
    return [(c.start, c.end, c.text) for c in webvtt.from_buffer(io.StringIO(text), format="srt")]


def _vtt_cues(text: str) -> list[tuple[str, str, str]]:
    return [(c.start, c.end, c.text) for c in webvtt.from_string(text)]


def test_a_one_file_track_downloads_byte_identical_as_vtt_and_as_valid_srt(
    start_app, origin
) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.subtitles.page_url)
        assert task["state"] == "completed", task["error"]
        [track] = task["result"]["subtitles"]
        assert (track["code"], track["formats"], track["downloadable"]) == ("en", ["vtt"], True)
        assert "/subs/en.vtt" not in json.dumps(task)
        link = read_subtitle(server.core.signer, track["vtt_url"].rsplit("/", 1)[1])
        assert (link["u"], link["k"], link["l"], link["x"]) == (
            origin.subtitles.page_url, "subtitles", "en", "vtt",
        )  # fmt: skip
        vtt = _download(client, track["vtt_url"])
        srt = _download(client, track["srt_url"])
    assert vtt.content == ONE_FILE_VTT.encode()
    assert vtt.headers["content-type"] == "text/vtt; charset=utf-8"
    assert vtt.headers["content-disposition"].startswith("attachment;")
    assert ".en.vtt" in vtt.headers["content-disposition"]
    assert srt.headers["content-type"] == "application/x-subrip; charset=utf-8"
    cues = _srt_cues(srt.text)
    assert len(cues) == ONE_FILE_CUES
    assert cues == [(s, e, text) for s, e, text in _vtt_cues(ONE_FILE_VTT)]
    assert cues[2][2] == "Zwölf Boxkämpfer — ünïcödé"


def test_an_hls_webvtt_rendition_downloads_joined_as_one_vtt_and_as_srt(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.subtitles.hls_url)
        assert task["state"] == "completed", task["error"]
        [track] = task["result"]["subtitles"]
        assert (track["code"], track["downloadable"]) == ("de", True)
        vtt = _download(client, track["vtt_url"])
        srt = _download(client, track["srt_url"])
    assert vtt.text == HLS_JOINED_VTT
    assert len(_vtt_cues(vtt.text)) == HLS_CUES
    assert _srt_cues(srt.text) == _vtt_cues(HLS_JOINED_VTT)
    assert origin.count("/subs/hls/sub/") == 2 * 3  # each download fetched each segment once


def test_the_result_page_lists_subtitles_under_the_format_tables(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.subtitles.page_url)
        pages = {
            lang: client.get(
                f"/v1/tasks/{task['task_id']}?lang={lang}", headers={"HX-Request": "true"}
            ).text
            for lang in ("en", "zh")
        }
    for lang, heading in (("en", "Subtitles"), ("zh", "字幕")):
        page = pages[lang]
        assert page.index('id="group-audio_only-') < page.index('data-kind="subtitles"')
        assert f">{heading} <small" in page
        assert 'data-lang="en"' in page
        assert page.count("/v1/download/subtitle/") >= 2
        assert "/subs/en.vtt" not in page


def test_a_forged_or_unknown_subtitle_link_is_refused(start_app, origin) -> None:
    from ytproxy.download.links import subtitle_path

    server = start_app()
    signer, ttl = server.core.signer, 60
    with httpx.Client(base_url=server.base_url) as client:
        analyse(client, origin.subtitles.page_url)
        forged = client.get("/v1/download/subtitle/not-a-token")
        missing = client.get(
            subtitle_path(
                signer, ttl, source_url=origin.subtitles.page_url, kind="subtitles",
                code="xx", title="t", ext="vtt",
            )
        )  # fmt: skip
    assert forged.status_code == 403
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "subtitle_not_found")


def test_a_refused_track_is_re_extracted_once_and_still_downloads(start_app, origin) -> None:
    server = start_app()
    page = urlsplit(origin.subtitles.page_url).path
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.subtitles.page_url)
        [track] = task["result"]["subtitles"]
        extractions = origin.count(page)
        origin.fail_once("/subs/en.vtt", 403)  # the track's URL refused, as an expired one
        vtt = _download(client, track["vtt_url"])
    assert vtt.content == ONE_FILE_VTT.encode()
    assert origin.count(page) == extractions + 1
