"""The pure parts of the download gateway: Range, file names, types, containers."""

from __future__ import annotations

import pytest

from ytproxy.download.headers import (
    ByteRange,
    Naming,
    ascii_filename,
    content_disposition,
    content_type,
    parse_content_range,
    parse_range,
    safe_filename,
)
from ytproxy.download.merge import choose_container, ffmpeg_command
from ytproxy.errors import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, None)),
        ("bytes=-500", ByteRange(None, 500)),
        (" bytes = 5 - 9 ", ByteRange(5, 9)),
        ("bytes=0-1,5-9", None),  # multipart: the whole file, as the RFC allows
        ("bytes=9-5", None),
        ("items=0-5", None),
        ("bytes=-", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_range_reads_single_byte_ranges_and_ignores_the_rest(
    header: str | None, expected: ByteRange | None
) -> None:
    assert parse_range(header) == expected


def test_byte_range_resolves_against_the_size_or_is_416_with_the_size() -> None:
    assert ByteRange(10, 19).resolve(100) == (10, 20)
    assert ByteRange(90, 500).resolve(100) == (90, 100)
    assert ByteRange(None, 30).resolve(100) == (70, 100)
    assert ByteRange(None, 300).resolve(100) == (0, 100)
    for unsatisfiable in (ByteRange(100, None), ByteRange(None, 0)):
        with pytest.raises(RangeNotSatisfiable) as caught:
            unsatisfiable.resolve(100)
        assert caught.value.size == 100


def test_parse_content_range_reads_spans_and_unknown_totals() -> None:
    assert parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    # Not the usual form: read by the general parser, as before.
    assert parse_content_range("bytes 0-99/100x") == (None, None, None)
    assert parse_content_range("Bytes 0-99/1000") == (0, 99, 1000)
    assert parse_content_range("bytes\t0-99/1000") == (0, 99, 1000)
    assert parse_content_range("bytes 0-99/*") == (0, 99, None)
    assert parse_content_range("bytes */1000") == (None, None, 1000)
    assert parse_content_range(None) == (None, None, None)


def test_content_disposition_has_an_ascii_fallback_and_an_rfc5987_utf8_name() -> None:
    header = content_disposition("测试 video", "mp4")
    assert header == (
        "attachment; filename=\"video.mp4\"; filename*=UTF-8''%E6%B5%8B%E8%AF%95%20video.mp4"
    )
    assert content_disposition("中文标题", "webm").startswith('attachment; filename="video.webm";')
    assert ascii_filename("Café déjà vu.mp4") == "Cafe deja vu.mp4"


def test_file_names_lose_path_separators_quotes_and_control_characters() -> None:
    assert safe_filename('a/b\\c "d"\r\n;e', "mp4") == "a_b_c _d_e.mp4"
    assert safe_filename("../..", "mp4") == "video.mp4"
    assert len(safe_filename("x" * 500, "mkv")) == 154
    assert safe_filename("t", "m p/4") == "t.mp4"


def test_naming_headers_are_each_callers_own_copy() -> None:
    naming = Naming("片段", "m4a", audio_only=True)
    first = naming.headers(accept_ranges="bytes")
    assert first["Content-Type"] == "audio/mp4"
    assert first["Content-Disposition"] == content_disposition("片段", "m4a")
    assert first["Accept-Ranges"] == "bytes"
    first["Content-Length"] = "10"  # what a relay adds to its own
    first["Content-Type"] = "changed"
    again = naming.headers(accept_ranges="bytes")
    assert "Content-Length" not in again and again["Content-Type"] == "audio/mp4"
    assert naming.headers("webm", accept_ranges="none")["Content-Type"] == "audio/webm"


def test_content_type_follows_the_container_and_audio_only() -> None:
    assert content_type("mp4") == "video/mp4"
    assert content_type("webm", audio_only=True) == "audio/webm"
    assert content_type("m4a") == "audio/mp4"
    assert content_type("weird") == "application/octet-stream"


@pytest.mark.parametrize(
    ("vcodec", "acodec", "wanted", "container"),
    [
        ("avc1.4d401e", "mp4a.40.2", "mp4", "mp4"),
        ("avc1.4d401e", "mp4a.40.2", None, "mp4"),
        ("vp09.00.20.08", "opus", "webm", "webm"),
        ("vp09.00.20.08", "opus", None, "webm"),
        ("av01.0.05M.08", "opus", "webm", "webm"),
        ("av01.0.05M.08", "mp4a.40.2", "mp4", "mp4"),
        ("vp9", "opus", "mp4", "mp4"),  # allowed: VP9 and Opus are valid in MP4
        ("avc1.4d401e", "opus", "webm", "mp4"),  # H.264 is not WebM
        ("avc1.4d401e", "vorbis", None, "mkv"),
        ("avc1.4d401e", "mp4a.40.2", "mkv", "mkv"),
    ],
)
def test_choose_container_prefers_the_links_extension_when_the_codecs_allow(
    vcodec: str, acodec: str, wanted: str | None, container: str
) -> None:
    assert choose_container(vcodec, acodec, wanted) == container


def test_ffmpeg_command_copies_both_streams_to_a_pipe_in_fragmented_mp4() -> None:
    command = ffmpeg_command("ffmpeg", ["http://v", "http://a"], "mp4")
    assert command[-1] == "pipe:1"
    # No credentials on the command line (visible in ps): part URLs carry signed tokens.
    assert command.count("-headers") == 0 and command.count("-i") == 2
    joined = " ".join(command)
    assert "-map 0:v:0 -map 1:a:0 -c copy -f mp4" in joined
    assert "-movflags frag_keyframe+empty_moov+default_base_moof" in joined
