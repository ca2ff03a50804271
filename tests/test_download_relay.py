"""The single-format relay against the googlevideo-like origin, over real sockets.

Every test measures what arrived (sha256, exact slices, headers), never an exit
code. Pieces are made small (64 KiB, the smallest allowed) so the 320 KiB test MP4
takes several ranged requests and faults land mid-transfer.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from yt_dlp.utils.networking import std_headers

from tests.apps import AppServer
from tests.origin import Media, Origin
from ytproxy.download.links import download_path
from ytproxy.settings import Settings

PIECE = 64 * 1024
TITLE = "测试 video"


@pytest.fixture
def gateway(app_server: Callable[..., AppServer], settings: Settings) -> AppServer:
    return app_server(settings, download_piece_size=PIECE, chunk_size=16 * 1024)


def link(server: AppServer, url: str, formats: list[str], *, ttl: float = 3600) -> str:
    path = download_path(
        server.core.signer, ttl, source_url=url, format_ids=formats, title=TITLE, ext="mp4"
    )
    return server.url(path)


def faulted_download(
    server: AppServer, origin: Origin, media: Media, fault: Callable[[], None]
) -> list[str | None]:
    """Download the test MP4 with `fault` set on the origin once its sources are cached
    (so the fault hits the body), check it arrived identical, and return the `Range`s
    the origin was asked for it."""
    url = link(server, origin.vod_url, ["mp4"])
    httpx.head(url, timeout=30)
    origin.reset_counts()
    fault()
    assert sha256(httpx.get(url, timeout=30).content) == media.vod.sha256
    return [r.range for r in origin.request_log if r.path == "/vod/video.mp4"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_is_byte_identical_with_length_type_and_chinese_filename(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    response = httpx.get(link(gateway, origin.vod_url, ["mp4"]), timeout=30)
    assert response.status_code == 200
    assert sha256(response.content) == media.vod.sha256
    headers = response.headers
    assert headers["content-length"] == str(media.vod.size)
    assert headers["content-type"] == "video/mp4"
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-disposition"] == (
        "attachment; filename=\"video.mp4\"; filename*=UTF-8''%E6%B5%8B%E8%AF%95%20video.mp4"
    )
    # Fetched in ranged pieces, not as one request.
    pieces = -(-media.vod.size // PIECE)
    ranges = [r.range for r in origin.request_log if r.path == "/vod/video.mp4" and r.range]
    assert len(ranges) == pieces
    assert ranges[0] == f"bytes=0-{PIECE - 1}"


def test_range_from_the_middle_is_206_with_exactly_that_slice(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    data = media.vod.path.read_bytes()
    url = link(gateway, origin.vod_url, ["mp4"])
    response = httpx.get(url, headers={"Range": "bytes=100000-250000"}, timeout=30)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100000-250000/{media.vod.size}"
    assert response.headers["content-length"] == "150001"
    assert response.content == data[100000:250001]
    tail = httpx.get(url, headers={"Range": "bytes=-1000"}, timeout=30)
    assert tail.status_code == 206 and tail.content == data[-1000:]
    open_ended = httpx.get(url, headers={"Range": "bytes=300000-"}, timeout=30)
    assert open_ended.content == data[300000:]


def test_range_past_the_end_is_416_with_the_size(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    url = link(gateway, origin.vod_url, ["mp4"])
    response = httpx.get(url, headers={"Range": f"bytes={media.vod.size}-"}, timeout=30)
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{media.vod.size}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


def test_head_has_the_length_and_no_body(gateway: AppServer, origin: Origin, media: Media) -> None:
    response = httpx.head(link(gateway, origin.vod_url, ["mp4"]), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(media.vod.size)
    assert response.content == b""


def test_curl_resume_after_an_interrupted_download_yields_the_identical_file(
    gateway: AppServer, origin: Origin, media: Media, tmp_path: Path
) -> None:
    url = link(gateway, origin.vod_url, ["mp4"])
    out = tmp_path / "video.mp4"
    httpx.head(url, timeout=30)
    origin.add_latency("/vod/video.mp4", 0.5)  # one 64 KiB piece per half second
    slow = subprocess.Popen(
        ["curl", "-sS", "-o", str(out), url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while (not out.exists() or out.stat().st_size < 60_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    slow.kill()
    slow.wait()
    partial = out.stat().st_size
    assert 0 < partial < media.vod.size
    origin.clear_faults()
    subprocess.run(["curl", "-sS", "-f", "-C", "-", "-o", str(out), url], check=True, timeout=60)
    assert sha256(out.read_bytes()) == media.vod.sha256
    assert any(r.range and r.range.startswith(f"bytes={partial}-") for r in origin.request_log)


def test_origin_dropping_the_connection_mid_body_still_gives_the_identical_file(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    ranges = faulted_download(
        gateway, origin, media, lambda: origin.drop_after("/vod/video.mp4", 20_000, times=3)
    )
    # Each cut piece is followed by one that starts at the byte reached.
    assert ranges[:4] == [
        f"bytes=0-{PIECE - 1}",
        f"bytes=20000-{20000 + PIECE - 1}",
        f"bytes=40000-{40000 + PIECE - 1}",
        f"bytes=60000-{60000 + PIECE - 1}",
    ]
    assert len(ranges) == 3 + -(-(media.vod.size - 60000) // PIECE)


def test_a_piece_that_stops_sending_is_given_up_and_resumed_from_the_byte_reached(
    gateway: AppServer, origin: Origin, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The piece client's watchdog ends the read (without it this download waits for the
    # test client's timeout and fails).
    assert gateway.core.pieces is not None
    monkeypatch.setattr(gateway.core.pieces, "stall_timeout", 0.5)
    ranges = faulted_download(
        gateway, origin, media, lambda: origin.stall_after("/vod/video.mp4", 20_000)
    )
    assert ranges[:2] == [f"bytes=0-{PIECE - 1}", f"bytes=20000-{20000 + PIECE - 1}"]


def test_url_expiring_while_the_client_pauses_is_re_extracted_and_the_file_is_identical(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    url = link(gateway, origin.vod_url, ["mp4"])
    httpx.head(url, timeout=30)
    assert origin.count("/watch/vod") == 1
    # Slow pieces: the relay cannot run ahead of the pause below.
    origin.add_latency("/vod/video.mp4", 0.3)
    received = bytearray()
    with httpx.stream("GET", url, timeout=30) as response:
        chunks = response.iter_raw()
        while len(received) < PIECE:
            received += next(chunks)
        time.sleep(0.5)
        origin.expire_all()
        for chunk in chunks:
            received += chunk
    assert sha256(bytes(received)) == media.vod.sha256
    assert origin.count("/watch/vod") == 2
    ranged = [r for r in origin.request_log if r.path == "/vod/video.mp4" and r.range]
    assert len(ranged) > -(-media.vod.size // PIECE)  # at least one refused request


def test_a_403_on_a_large_piece_shrinks_the_piece_without_re_extracting(
    app_server: Callable[..., AppServer], settings: Settings, origin: Origin, media: Media
) -> None:
    server = app_server(settings, download_piece_size=8 * 1024 * 1024)
    ranges = faulted_download(
        server, origin, media, lambda: origin.fail_once("/vod/video.mp4", 403)
    )
    assert ranges == [f"bytes=0-{8 * 1024 * 1024 - 1}", f"bytes=0-{2 * 1024 * 1024 - 1}"]
    assert origin.count("/watch/vod") == 0


def test_tampered_and_expired_links_are_403(gateway: AppServer, origin: Origin) -> None:
    url = link(gateway, origin.vod_url, ["mp4"])
    token = url.rsplit("/", 1)[1]
    tampered = url[: -len(token)] + token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    response = httpx.get(tampered, timeout=30)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_token"
    expired = httpx.get(link(gateway, origin.vod_url, ["mp4"], ttl=-5), timeout=30)
    assert expired.status_code == 403
    assert expired.json()["error"]["code"] == "token_expired"
    assert origin.count("/") == 0


def test_unknown_format_is_404(gateway: AppServer, origin: Origin) -> None:
    response = httpx.get(link(gateway, origin.vod_url, ["999"]), timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "format_not_found"


def test_one_download_over_the_limit_is_429_with_retry_after_and_transfers_lists_the_first(
    app_server: Callable[..., AppServer], settings: Settings, origin: Origin, media: Media
) -> None:
    server = app_server(settings, download_piece_size=PIECE, max_concurrent_downloads=1)
    url = link(server, origin.vod_url, ["mp4"])
    httpx.head(url, timeout=30)
    origin.add_latency("/vod/video.mp4", 0.2)
    with httpx.stream("GET", url, timeout=30) as first:
        chunks = first.iter_raw()
        received = bytearray(next(chunks))
        second = httpx.get(url, timeout=30)
        assert second.status_code == 429
        assert second.headers["retry-after"] == "10"
        assert second.json()["error"]["code"] == "too_many_downloads"
        listing = httpx.get(server.url("/v1/transfers"), timeout=30).json()
        assert listing["active"] == 1 and listing["limit"] == 1
        [transfer] = listing["transfers"]
        assert transfer["mode"] == "single" and transfer["formats"] == ["mp4"]
        assert transfer["title"] == TITLE and transfer["size"] == media.vod.size
        assert transfer["bytes_sent"] > 0 and transfer["started"].endswith("Z")
        for chunk in chunks:
            received += chunk
    assert sha256(bytes(received)) == media.vod.sha256
    assert wait_for(lambda: httpx.get(server.url("/v1/transfers")).json()["active"] == 0)
    assert httpx.get(url, timeout=30).status_code == 200


def test_metrics_count_relayed_bytes_and_finished_downloads(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    httpx.get(link(gateway, origin.vod_url, ["mp4"]), timeout=30)
    registry = gateway.core.metrics.registry
    assert wait_for(lambda: registry.get_sample_value("active_downloads") == 0)
    text = httpx.get(gateway.url("/metrics"), timeout=30).text
    assert f'relayed_bytes_total{{kind="download"}} {float(media.vod.size)}' in text
    assert 'downloads_total{mode="single",outcome="completed"} 1.0' in text
    assert 'upstream_requests_total{kind="download",status="206"}' in text


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_the_upstream_gets_the_formats_own_headers_and_no_compression(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    # yt-dlp gives each format the headers to fetch it with (its User-Agent among them);
    # googlevideo may refuse a URL fetched with another client's.
    url = link(gateway, origin.vod_url, ["mp4"])
    httpx.head(url, timeout=30)
    origin.reset_counts()
    assert sha256(httpx.get(url, timeout=30).content) == media.vod.sha256
    pieces = [r for r in origin.request_log if r.path == "/vod/video.mp4"]
    assert pieces
    assert {r.user_agent for r in pieces} == {std_headers["User-Agent"]}
    assert {r.accept_encoding for r in pieces} == {"identity"}
