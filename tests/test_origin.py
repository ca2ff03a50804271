"""Tests of the test origin itself and the redis-server fixture.

They pin down what the rest of the suite relies on: exact Range semantics, signed URLs
that expire and can be revoked, a live window that slides and wraps, counters, fault
switches, and — most important — what real yt-dlp extracts from each entry point.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import pytest
import yt_dlp

from tests.origin import Media, Origin
from tests.origin.manifests import discontinuity_sequence, live_window, newest_sequence
from tests.origin.responses import parse_range
from tests.redis_server import RedisServer


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked_origin(media: Media, clock: FakeClock) -> Iterator[Origin]:
    with Origin(media, clock=clock) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def extract(url: str) -> dict[str, Any]:
    with yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True}) as ydl:
        info: dict[str, Any] = ydl.sanitize_info(ydl.extract_info(url, download=False))
    return info


def playlist_tag(text: str, tag: str) -> int:
    match = re.search(rf"^#{tag}:(\d+)$", text, re.M)
    assert match, f"no {tag} in playlist"
    return int(match.group(1))


def playlist_uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def live_playlist(http: httpx.Client, origin: Origin, name: str, variant: str = "high") -> str:
    response = http.get(origin.signed_url(f"/hls/{name}/{variant}/index.m3u8"))
    assert response.status_code == 200
    return response.text


def test_media_live_variants_are_ninety_two_second_segments(media: Media) -> None:
    assert [v.name for v in media.hls_variants] == ["low", "high"]
    for variant in media.hls_variants:
        assert len(variant.segments) == 90
        assert variant.durations == (2.0,) * 90
        assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", variant.codecs)


def test_media_dash_representations_share_one_duration(media: Media) -> None:
    ids = [rep.id for rep in media.dash]
    assert ids == ["160", "133", "278", *(["394"] if media.has_av1 else []), "140", "251"]
    assert all(abs(rep.duration - 6.0) < 0.05 for rep in media.dash)
    assert media.dash_representation("278").codecs == "vp09.00.20.08"
    assert media.vod.sha256 == hashlib.sha256(media.vod.path.read_bytes()).hexdigest()
    assert media.vod.duration == pytest.approx(8.0, abs=0.1)


def test_vod_without_range_is_the_whole_file(
    origin: Origin, media: Media, http: httpx.Client
) -> None:
    response = http.get(origin.signed_url("/vod/video.mp4"))
    assert response.status_code == 200
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == media.vod.size
    assert hashlib.sha256(response.content).hexdigest() == media.vod.sha256


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, None),
        ("bytes=-50", -50, None),
        ("bytes=10-99999999", 10, None),
        ("bytes=-99999999", 0, None),
        ("bytes=5-5", 5, 6),
    ],
)
def test_vod_range_is_206_with_exact_bytes(
    origin: Origin, media: Media, http: httpx.Client, header: str, start: int, stop: int | None
) -> None:
    data = media.vod.path.read_bytes()
    expected = data[start:stop]
    first = data.index(expected) if start < 0 else start
    response = http.get(origin.signed_url("/vod/video.mp4"), headers={"Range": header})
    assert response.status_code == 206
    assert response.content == expected
    assert (
        response.headers["content-range"]
        == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    )
    assert int(response.headers["content-length"]) == len(expected)


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{size}", "bytes=-0"])
def test_vod_unsatisfiable_range_is_416(
    origin: Origin, media: Media, http: httpx.Client, header: str
) -> None:
    size = media.vod.size
    response = http.get(
        origin.signed_url("/vod/video.mp4"), headers={"Range": header.format(size=size)}
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_parse_range_ignores_what_it_does_not_support() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-1,4-5", 10) is None
    assert parse_range("bytes=5-2", 10) is None
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)


def test_vod_head_has_length_and_no_body(origin: Origin, media: Media, http: httpx.Client) -> None:
    response = http.head(origin.signed_url("/vod/video.mp4"))
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == media.vod.size
    assert response.content == b""


def test_dash_file_serves_ranges_like_the_mp4(
    origin: Origin, media: Media, http: httpx.Client
) -> None:
    rep = media.dash_representation("140")
    response = http.get(origin.signed_url("/dash/file/140"), headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.headers["content-type"] == "audio/mp4"
    assert response.content == rep.path.read_bytes()[100:200]


@pytest.mark.parametrize("query", ["", "?expire=9999999999&sig=forged", "?expire=soon&sig=x"])
def test_unsigned_or_forged_url_is_403(origin: Origin, http: httpx.Client, query: str) -> None:
    response = http.get(origin.url("/vod/video.mp4") + query)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")


def test_signature_is_bound_to_its_path(origin: Origin, http: httpx.Client) -> None:
    query = origin.signed_url("/dash/file/140").split("?", 1)[1]
    assert http.get(origin.url("/dash/file/251?" + query)).status_code == 403


def test_url_is_403_once_expired(
    clocked_origin: Origin, clock: FakeClock, http: httpx.Client
) -> None:
    clocked_origin.set_url_lifetime(60)
    url = clocked_origin.signed_url("/vod/video.mp4")
    expire = int(re.search(r"expire=(\d+)", url).group(1))  # type: ignore[union-attr]
    assert expire == clock.now + 60
    clock.now += 59.5
    assert http.head(url).status_code == 200
    clock.now += 0.5
    assert http.head(url).status_code == 403


def test_url_lifetime_applies_to_urls_issued_afterwards(origin: Origin, http: httpx.Client) -> None:
    before = origin.signed_url("/vod/video.mp4")
    origin.set_url_lifetime(-1)
    assert http.head(origin.signed_url("/vod/video.mp4")).status_code == 403
    assert http.head(before).status_code == 200


def test_expire_all_revokes_issued_urls_and_a_fresh_master_works(
    origin: Origin, http: httpx.Client
) -> None:
    master = http.get(origin.channel_url("revoked"), follow_redirects=True).text
    variant_url = playlist_uris(master)[0]
    assert http.get(variant_url).status_code == 200
    origin.expire_all()
    assert http.get(variant_url).status_code == 403
    fresh_master = http.get(origin.channel_url("revoked"), follow_redirects=True)
    assert fresh_master.status_code == 200
    assert http.get(playlist_uris(fresh_master.text)[0]).status_code == 200


def test_channel_page_redirects_to_an_absolute_signed_master(
    origin: Origin, http: httpx.Client
) -> None:
    response = http.get(origin.channel_url("news"))
    assert response.status_code == 302
    location = response.headers["location"]
    assert re.fullmatch(
        re.escape(origin.base_url) + r"/hls/news/master\.m3u8\?expire=\d+&sig=[0-9a-f]+", location
    )
    master = http.get(location)
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    lines = master.text.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    stream_infs = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
    assert ["RESOLUTION=160x90" in stream_infs[0], "RESOLUTION=320x180" in stream_infs[1]] == [
        True,
        True,
    ]
    assert all('CODECS="avc1.' in line and "FRAME-RATE=15" in line for line in stream_infs)
    assert all(uri.startswith(origin.base_url + "/hls/news/") for uri in playlist_uris(master.text))


def test_offline_channel_is_404_until_back_online(origin: Origin, http: httpx.Client) -> None:
    origin.set_offline("gone")
    assert http.get(origin.channel_url("gone")).status_code == 404
    assert http.get(origin.signed_url("/hls/gone/high/index.m3u8")).status_code == 404
    origin.set_offline("gone", False)
    assert http.get(origin.channel_url("gone")).status_code == 302


def test_live_playlist_is_a_window_of_five_signed_segments(
    origin: Origin, http: httpx.Client
) -> None:
    response = http.get(origin.signed_url("/hls/fresh/low/index.m3u8"))
    text = response.text
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert "#EXT-X-VERSION:3" in text and "#EXT-X-TARGETDURATION:2" in text
    assert "#EXT-X-ENDLIST" not in text
    assert playlist_tag(text, "EXT-X-MEDIA-SEQUENCE") == 0
    uris = playlist_uris(text)
    assert len(uris) == 5
    for seq, uri in enumerate(uris):
        assert uri.startswith(f"{origin.base_url}/hls/fresh/low/seg/{seq}.ts?expire=")


def test_live_window_slides_every_two_seconds(origin: Origin, http: httpx.Client) -> None:
    origin.reset_live("sliding")
    first = playlist_tag(live_playlist(http, origin, "sliding"), "EXT-X-MEDIA-SEQUENCE")
    deadline = time.monotonic() + 3.0
    sequence = first
    while sequence == first and time.monotonic() < deadline:
        time.sleep(0.1)
        sequence = playlist_tag(live_playlist(http, origin, "sliding"), "EXT-X-MEDIA-SEQUENCE")
    assert sequence == first + 1


def test_future_segment_is_404_and_published_one_is_ts(origin: Origin, http: httpx.Client) -> None:
    newest = origin.newest_live_sequence("seg")
    future = http.get(origin.signed_url(f"/hls/seg/high/seg/{newest + 2}.ts"))
    assert future.status_code == 404
    published = http.get(origin.signed_url(f"/hls/seg/high/seg/{newest}.ts"))
    assert published.status_code == 200
    assert published.headers["content-type"] == "video/mp2t"


def test_live_wraps_after_ninety_segments_with_a_discontinuity(
    origin: Origin, media: Media, http: httpx.Client
) -> None:
    origin.reset_live("wrap")
    origin.advance_live("wrap", 172.5)  # newest published segment: (10 + 172.5) // 2 - 1 = 90
    text = live_playlist(http, origin, "wrap")
    assert playlist_tag(text, "EXT-X-MEDIA-SEQUENCE") == 86
    assert playlist_tag(text, "EXT-X-DISCONTINUITY-SEQUENCE") == 0
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert text.index("#EXT-X-DISCONTINUITY\n") < text.index("/seg/90.ts")
    wrapped = http.get(playlist_uris(text)[-1])
    assert wrapped.content == media.hls_variant("high").segments[0].read_bytes()


def test_live_window_logic_with_injected_elapsed_time() -> None:
    durations = [2.0] * 90
    assert newest_sequence(1.9, durations) == -1
    assert [s.sequence for s in live_window(10.0, durations)] == [0, 1, 2, 3, 4]
    assert [s.sequence for s in live_window(11.99, durations)] == [0, 1, 2, 3, 4]
    assert [s.sequence for s in live_window(12.0, durations)] == [1, 2, 3, 4, 5]
    assert [s.sequence for s in live_window(4.0, durations)] == [0, 1]
    window = live_window(184.0, durations)
    assert [(s.sequence, s.media_index, s.discontinuity) for s in window] == [
        (87, 87, False),
        (88, 88, False),
        (89, 89, False),
        (90, 0, True),
        (91, 1, False),
    ]
    assert newest_sequence(360.0, durations) == 179
    assert discontinuity_sequence(90, 90) == 0
    assert discontinuity_sequence(91, 90) == 1
    assert discontinuity_sequence(181, 90) == 2
    uneven = [1.0, 3.0]
    assert [s.sequence for s in live_window(5.0, uneven, size=2)] == [1, 2]


def test_live_segment_is_h264_and_aac(origin: Origin, http: httpx.Client, tmp_path: Path) -> None:
    segment = tmp_path / "segment.ts"
    segment.write_bytes(http.get(playlist_uris(live_playlist(http, origin, "probe"))[-1]).content)
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
            "-of",
            "json",
            str(segment),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    info = json.loads(probe.stdout)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.1)


def test_counters_count_by_path_without_query(origin: Origin, http: httpx.Client) -> None:
    url = origin.signed_url("/vod/video.mp4")
    http.get(url, headers={"Range": "bytes=0-9"})
    http.get(url)
    http.get(origin.url("/vod/video.mp4"))  # refused requests count too
    assert origin.count("/vod/video.mp4") == 3
    assert origin.count("/vod/") == 3
    assert origin.requests == {"/vod/video.mp4": 3}
    assert [record.range for record in origin.request_log] == ["bytes=0-9", None, None]
    origin.reset_counts()
    assert origin.count("/") == 0 and origin.requests == {}


def test_fail_once_fails_only_the_next_matching_request(origin: Origin, http: httpx.Client) -> None:
    origin.fail_once("/hls/flaky/", status=503)
    url = origin.signed_url("/hls/flaky/high/index.m3u8")
    assert http.get(origin.signed_url("/vod/video.mp4")).status_code == 200
    assert http.get(url).status_code == 503
    assert http.get(url).status_code == 200


def test_add_latency_holds_matching_requests_back_until_cleared(
    origin: Origin, http: httpx.Client
) -> None:
    # Order, not time: requests sent after the held one are answered before it.
    origin.add_latency("/watch/", 5)
    parts = urlsplit(origin.vod_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as held:
        held.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        deadline = time.monotonic() + 30  # guards against a hang only
        while origin.count(parts.path) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        other = http.get(origin.signed_url("/vod/video.mp4"), headers={"Range": "bytes=0-9"})
        assert other.status_code == 206
        origin.clear_faults()
        assert http.get(origin.vod_url).status_code == 302
        held.setblocking(False)
        with pytest.raises(BlockingIOError):
            held.recv(1)  # still held back
        held.setblocking(True)
        assert held.recv(65536).startswith(b"HTTP/1.1 302")


def test_drop_after_cuts_the_body_then_recovers(
    origin: Origin, media: Media, http: httpx.Client
) -> None:
    origin.drop_after("/vod/", 1000)
    url = origin.signed_url("/vod/video.mp4")
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), http.stream("GET", url) as response:
        assert int(response.headers["content-length"]) == media.vod.size
        for chunk in response.iter_raw():
            received += chunk
    assert bytes(received) == media.vod.path.read_bytes()[:1000]
    assert http.get(url).content == media.vod.path.read_bytes()


async def test_origin_serves_async_clients_on_the_test_loop(origin: Origin, media: Media) -> None:
    origin.drop_after("/dash/file/133", 5000, times=2)
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(origin.signed_url("/dash/file/133")) as response:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
        async with session.get(origin.signed_url("/dash/file/133")) as response:
            assert await response.read() == media.dash_representation("133").path.read_bytes()


def test_ytdlp_sees_the_channel_as_a_live_hls_master(origin: Origin) -> None:
    info = extract(origin.channel_url("ytdlp"))
    assert info["is_live"] is True and info["live_status"] == "is_live"
    assert info["original_url"] == origin.channel_url("ytdlp")
    formats = info["formats"]
    assert [(f["protocol"], f["height"], f["vcodec"][:5], f["acodec"]) for f in formats] == [
        ("m3u8_native", 90, "avc1.", "mp4a.40.2"),
        ("m3u8_native", 180, "avc1.", "mp4a.40.2"),
    ]
    master = formats[0]["manifest_url"]
    assert master.startswith(origin.base_url + "/hls/ytdlp/master.m3u8?expire=")
    assert info["webpage_url"] == master
    assert formats[1]["url"].startswith(origin.base_url + "/hls/ytdlp/high/index.m3u8?expire=")


def test_ytdlp_sees_the_vod_as_a_direct_mp4(origin: Origin) -> None:
    info = extract(origin.vod_url)
    [fmt] = info["formats"]
    assert (fmt["format_id"], fmt["protocol"], fmt["ext"]) == ("mp4", "http", "mp4")
    assert fmt["url"].startswith(origin.base_url + "/vod/video.mp4?expire=")
    assert info.get("is_live") is None


def test_ytdlp_sees_dash_video_only_and_audio_only_formats(
    origin: Origin, media: Media, http: httpx.Client
) -> None:
    info = extract(origin.dash_url)
    formats = {f["format_id"]: f for f in info["formats"]}
    video = {rep.id: rep for rep in media.dash if rep.kind == "video"}
    audio = {rep.id: rep for rep in media.dash if rep.kind == "audio"}
    assert set(formats) == set(video) | set(audio)
    for rep_id, rep in video.items():
        fmt = formats[rep_id]
        assert (fmt["height"], fmt["vcodec"], fmt["acodec"]) == (rep.height, rep.codecs, "none")
        assert fmt["protocol"] == "http" and fmt["filesize"] == rep.size
    for rep_id, rep in audio.items():
        fmt = formats[rep_id]
        assert (fmt["vcodec"], fmt["acodec"], fmt["language"]) == ("none", rep.codecs, "en")
    signed = formats["251"]["url"]
    assert signed.startswith(origin.base_url + "/dash/file/251?expire=")
    assert http.get(signed, headers={"Range": "bytes=0-3"}).content == b"\x1a\x45\xdf\xa3"


def test_redis_url_starts_with_an_empty_database(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.command("SET", "key", "value") == b"+OK"
    redis_server.flush()
    assert redis_server.command("EXISTS", "key") == b":0"


def test_redis_server_restarts_on_the_same_port(redis_server: RedisServer, redis_url: str) -> None:
    port = redis_server.port
    redis_server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    redis_server.start()
    assert redis_server.port == port
    assert redis_server.command("PING") == b"+PONG"
