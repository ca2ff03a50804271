"""Merged downloads: a DASH video-only + audio-only pair, muxed by ffmpeg on the fly.

What arrived is checked with ffprobe (streams, codecs, duration from the packets
themselves, since a piped WebM carries no duration header), and the clean-up by
looking for the ffmpeg process and the merge's input transfers after a disconnect.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Media, Origin
from ytproxy.download.links import download_path
from ytproxy.settings import Settings

PIECE = 64 * 1024


@pytest.fixture
def gateway(app_server: Callable[..., AppServer], settings: Settings) -> AppServer:
    return app_server(settings, download_piece_size=PIECE)


def link(server: AppServer, url: str, formats: list[str], ext: str) -> str:
    path = download_path(
        server.core.signer, 3600, source_url=url, format_ids=formats, title="合并 test", ext=ext
    )
    return server.url(path)


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, check=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


def packet_end(path: Path, selector: str) -> float:
    """End time of the last packet of a stream: the duration as the bytes say it."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", selector, "-show_entries",
         "packet=pts_time,duration_time", "-of", "csv=p=0", str(path)],
        capture_output=True, check=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    ends = []
    for line in out.splitlines():
        pts, _, duration = line.strip(",").partition(",")
        if pts not in ("", "N/A"):
            ends.append(float(pts) + (float(duration) if duration not in ("", "N/A") else 0))
    return max(ends)


def download(url: str, path: Path) -> httpx.Response:
    response = httpx.get(url, timeout=60)
    path.write_bytes(response.content)
    return response


def ffmpeg_running(server: AppServer) -> bool:
    marker = f"127.0.0.1:{server.port}/v1/download/part/"
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


def check_pair(path: Path, media: Media, video_codec: str, audio_codec: str) -> None:
    info = probe(path)
    kinds = [(s["codec_type"], s["codec_name"]) for s in info["streams"]]
    assert kinds == [("video", video_codec), ("audio", audio_codec)]
    for selector in ("v:0", "a:0"):
        assert abs(packet_end(path, selector) - media.dash_duration) <= 0.5


def test_merged_h264_and_aac_is_a_fragmented_mp4_with_both_streams_and_the_full_duration(
    gateway: AppServer, origin: Origin, media: Media, tmp_path: Path
) -> None:
    out = tmp_path / "merged.mp4"
    response = download(link(gateway, origin.dash_url, ["133", "140"], "mp4"), out)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert "content-length" not in response.headers
    assert (
        "filename*=UTF-8''%E5%90%88%E5%B9%B6%20test.mp4" in response.headers["content-disposition"]
    )
    check_pair(out, media, "h264", "aac")
    assert abs(float(probe(out)["format"]["duration"]) - media.dash_duration) <= 0.5
    # Fragmented: an empty moov first, then moof/mdat pairs.
    assert out.read_bytes()[4:8] == b"ftyp" and b"moof" in out.read_bytes()
    # Both inputs went through the gateway's ranged relay.
    assert origin.count("/dash/file/133") >= 2 and origin.count("/dash/file/140") >= 1
    assert not ffmpeg_running(gateway)


@pytest.mark.parametrize("video", ["278", "394"])
def test_merged_vp9_or_av1_with_opus_is_webm_with_both_streams_and_the_full_duration(
    gateway: AppServer, origin: Origin, media: Media, tmp_path: Path, video: str
) -> None:
    if video == "394" and not media.has_av1:
        pytest.skip("this ffmpeg cannot encode AV1")
    out = tmp_path / "merged.webm"
    response = download(link(gateway, origin.dash_url, [video, "251"], "webm"), out)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/webm"
    assert out.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    assert probe(out)["format"]["format_name"] == "matroska,webm"
    check_pair(out, media, media.dash_representation(video).codec_name, "opus")


def test_merge_of_a_pair_given_audio_first_is_the_same_merge(
    gateway: AppServer, origin: Origin, media: Media, tmp_path: Path
) -> None:
    out = tmp_path / "merged.mkv"
    response = download(link(gateway, origin.dash_url, ["140", "160"], "mkv"), out)
    assert response.headers["content-type"] == "video/x-matroska"
    check_pair(out, media, "h264", "aac")


def test_merge_survives_an_input_connection_drop_byte_for_byte(
    gateway: AppServer, origin: Origin, tmp_path: Path
) -> None:
    url = link(gateway, origin.dash_url, ["133", "140"], "mp4")
    clean = download(url, tmp_path / "clean.mp4").content
    origin.drop_after("/dash/file/133", 30_000)
    origin.drop_after("/dash/file/140", 20_000)
    disturbed = download(url, tmp_path / "disturbed.mp4").content
    assert hashlib.sha256(disturbed).digest() == hashlib.sha256(clean).digest()
    ranges = [r.range for r in origin.request_log if r.path == "/dash/file/133"]
    assert any(r and r.startswith("bytes=30000-") for r in ranges)


def test_merge_head_answers_headers_without_running_ffmpeg(
    gateway: AppServer, origin: Origin
) -> None:
    response = httpx.head(link(gateway, origin.dash_url, ["278", "251"], "webm"), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/webm"
    assert response.headers["accept-ranges"] == "none"
    assert origin.count("/dash/file/") == 0


def test_merge_with_an_unknown_format_is_404_before_ffmpeg_starts(
    gateway: AppServer, origin: Origin
) -> None:
    response = httpx.get(link(gateway, origin.dash_url, ["133", "999"], "mp4"), timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "format_not_found"


def test_a_part_link_without_its_merge_is_404(gateway: AppServer, origin: Origin) -> None:
    from ytproxy.download.links import part_path

    path = part_path(
        gateway.core.signer, 60, source_url=origin.dash_url, format_id="140", transfer="gone"
    )
    response = httpx.get(gateway.url(path), timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "transfer_not_found"


def test_client_leaving_a_merge_kills_ffmpeg_and_ends_both_inputs(
    gateway: AppServer, origin: Origin
) -> None:
    url = link(gateway, origin.dash_url, ["133", "140"], "mp4")
    httpx.head(url, timeout=30)  # extraction done, so what follows is the merge only
    # Slow inputs: ffmpeg is still reading both of them when the client leaves (it
    # reads a fragmented MP4 input whole before writing its first byte).
    origin.add_latency("/dash/file/", 0.5)
    path = url.removeprefix(gateway.base_url)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert wait_for(lambda: gateway.call(lambda: registered(gateway)) == 3)
        assert ffmpeg_running(gateway)
    # That it happens, not how soon: timing figures belong in bench/.
    assert wait_for(
        lambda: not ffmpeg_running(gateway) and gateway.call(lambda: registered(gateway)) == 0
    )
    assert not ffmpeg_running(gateway)
    assert gateway.call(lambda: registered(gateway)) == 0
    assert gateway.call(lambda: open_upstream(gateway)) == 0


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Polls `predicate`; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


async def open_upstream(server: AppServer) -> int:
    """Upstream connections in use (not idle in the pool) on the app's session."""
    connector = server.core.http.connector
    assert connector is not None
    return len(connector._acquired)  # private, but the one place this is visible


async def registered(server: AppServer) -> int:
    """Transfers registered on the server, a merge's inputs included."""
    return len(server.transfers)


def test_merge_works_behind_an_access_token(
    app_server: Callable[..., AppServer], settings: Settings, origin: Origin, media: Media,
    tmp_path: Path,
) -> None:  # fmt: skip
    server = app_server(settings, download_piece_size=PIECE, access_token="family-secret-1")
    url = link(server, origin.dash_url, ["133", "140"], "mp4")
    assert httpx.get(url, timeout=30).status_code == 401
    out = tmp_path / "merged.mp4"
    response = download(url + "?token=family-secret-1", out)
    assert response.status_code == 200
    check_pair(out, media, "h264", "aac")
