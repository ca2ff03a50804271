"""Requests built to stall the event loop or eat memory get a quick, ordinary answer.

Each one was a finding of a probe: a `Range` header of 128,000 spaces froze every
stream for 27 s (a backtracking pattern), a 128 MiB header was read whole before any
check, and JSON nested 5,000 deep was a 500. All of them go over a real socket to the
server `python app.py` runs (`ytproxy/server.py`), because the head limit lives in
the HTTP protocol, below the app. Nothing here measures time: the per-test timeout
is what a stall would trip; the figures are in `bench/hostile.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Media, Origin
from ytproxy.download.headers import MAX_RANGE_HEADER, ByteRange, parse_content_range, parse_range
from ytproxy.download.links import download_path
from ytproxy.settings import Settings

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def gateway(app_server: Callable[..., AppServer], settings: Settings) -> AppServer:
    return app_server(settings)


def download_url(server: AppServer, origin: Origin) -> str:
    path = download_path(
        server.core.signer, 3600, source_url=origin.vod_url, format_ids=["mp4"],
        title="video", ext="mp4",
    )  # fmt: skip
    return server.url(path)


def head_bytes(server: AppServer, path: str = "/health") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()


def send_in_pieces(sock: socket.socket, data: bytes, piece: int = 16 * KIB) -> None:
    """Send `data` piece by piece; stop quietly if the server has stopped listening."""
    try:
        for start in range(0, len(data), piece):
            sock.sendall(data[start : start + piece])
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on `sock`, read until it closes."""
    received = bytearray()
    while chunk := sock.recv(64 * KIB):
        received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_parse_range_ignores_a_header_over_the_cap_and_reads_one_at_it() -> None:
    assert parse_range("bytes=" + " " * 1_000_000 + "x") is None
    assert parse_range("bytes=" + "0" * 5_000 + "-") is None  # not int()'s 4,300-digit error
    padded = "bytes=" + " " * (MAX_RANGE_HEADER - len("bytes=0-9")) + "0-9"
    assert len(padded) == MAX_RANGE_HEADER
    assert parse_range(padded) == ByteRange(0, 9)


def test_parse_content_range_ignores_hostile_values() -> None:
    assert parse_content_range("bytes 0-99/" + " " * 1_000_000 + "x") == (None, None, None)
    assert parse_content_range("bytes 0-" + "9" * 5_000 + "/*") == (None, None, None)
    assert parse_content_range("bytes  0-99 / 1000 ") == (0, 99, 1000)


def test_a_range_header_of_spaces_is_ignored_and_the_whole_file_served(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    # Under the head limit, so it reaches the parser that used to backtrack on it.
    hostile = "bytes=" + " " * 30_000 + "x"
    response = httpx.get(download_url(gateway, origin), headers={"Range": hostile}, timeout=60)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == media.vod.sha256
    assert "content-range" not in response.headers


def test_the_probes_128_000_space_range_header_is_refused_with_431(
    gateway: AppServer, origin: Origin
) -> None:
    hostile = "bytes=" + " " * 128_000 + "x"
    response = httpx.get(download_url(gateway, origin), headers={"Range": hostile}, timeout=60)
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "header_too_large"


def test_a_valid_range_still_gets_its_slice_through_the_server(
    gateway: AppServer, origin: Origin, media: Media
) -> None:
    data = media.vod.path.read_bytes()
    response = httpx.get(
        download_url(gateway, origin), headers={"Range": "bytes = 10 - 19"}, timeout=60
    )
    assert response.status_code == 206
    assert response.content == data[10:20]


def test_a_one_mib_header_sent_in_pieces_gets_431_header_too_large(gateway: AppServer) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        send_in_pieces(sock, head_bytes(gateway) + b"X-Big: " + b"a" * MIB + b"\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 431
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert httpx.Response(431, content=body).json()["error"]["code"] == "header_too_large"


def test_many_small_headers_over_the_limit_get_431(gateway: AppServer) -> None:
    many = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 60) for n in range(2_000))  # ~140 KiB
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        send_in_pieces(sock, head_bytes(gateway) + many + b"\r\n")
        status, _, _ = read_response(sock)
    assert status == 431


def test_a_long_request_line_gets_431(gateway: AppServer) -> None:
    line = b"GET /health?" + b"q" * (256 * KIB) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        send_in_pieces(sock, line)
        status, _, _ = read_response(sock)
    assert status == 431


def test_a_head_just_under_the_limit_is_served(gateway: AppServer, settings: Settings) -> None:
    head = head_bytes(gateway) + b"Connection: close\r\n"
    padding = settings.max_header_bytes - len(head) - len(b"X-Pad: \r\n\r\n") - 1
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        send_in_pieces(sock, head + b"X-Pad: " + b"p" * padding + b"\r\n\r\n", piece=4 * KIB)
        status, _, body = read_response(sock)
    assert status == 200, body


def test_a_head_just_over_the_limit_whose_end_arrives_in_a_small_read_gets_431(
    gateway: AppServer, settings: Settings
) -> None:
    # Counted from its parts when it completes: earlier reads plus a small last one.
    head = head_bytes(gateway) + b"X-Pad: "
    whole = head + b"p" * (settings.max_header_bytes + 10 - len(head) - 4) + b"\r\n\r\n"
    assert len(whole) == settings.max_header_bytes + 10
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(whole[:-110])
        time.sleep(0.3)  # so that the rest is another read (the outcome is not timed)
        sock.sendall(whole[-110:])
        status, _, _ = read_response(sock)
    assert status == 431


def test_a_pipelined_head_over_the_limit_is_not_served(
    gateway: AppServer, settings: Settings
) -> None:
    # The second head begins behind the first request in one read (not counted there)
    # and ends in the next read; measured from its parts, it is over the limit.
    first = head_bytes(gateway) + b"\r\n"
    second = head_bytes(gateway) + b"Connection: close\r\nX-Pad: "
    second += b"p" * (settings.max_header_bytes + 10 - len(second) - 4) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(first + second[:-110])
        time.sleep(0.3)  # so that the rest is another read (the outcome is not timed)
        sock.sendall(second[-110:])
        received = bytearray()
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(64 * KIB):
                received += chunk
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", bytes(received))]
    assert statuses[0] == 200 and statuses[1:] in ([], [431])


def test_the_limit_follows_max_header_bytes(
    app_server: Callable[..., AppServer], settings: Settings
) -> None:
    server = app_server(settings, max_header_bytes=64 * KIB)
    padded = {"X-Pad": "p" * (48 * KIB)}
    assert httpx.get(server.url("/health"), headers=padded, timeout=30).status_code == 200
    padded = {"X-Pad": "p" * (80 * KIB)}
    assert httpx.get(server.url("/health"), headers=padded, timeout=30).status_code == 431


def test_keep_alive_requests_each_get_the_whole_limit(gateway: AppServer) -> None:
    # Three heads of ~20 KiB on one connection: 60 KiB in all, but each under 32 KiB.
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for _ in range(3):
            response = client.get("/health", headers={"X-Pad": "p" * (20 * KIB)})
            assert response.status_code == 200


def test_health_is_served_while_another_connection_is_sending_a_huge_head(
    gateway: AppServer,
) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as slow:
        slow.sendall(head_bytes(gateway) + b"X-Big: " + b"a" * (20 * KIB))  # not finished
        assert httpx.get(gateway.url("/health"), timeout=30).status_code == 200
        send_in_pieces(slow, b"a" * (16 * MIB), piece=64 * KIB)
        status, _, _ = read_response(slow)
        assert status == 431
        assert httpx.get(gateway.url("/health"), timeout=30).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5_000,
        b"[" * 5_000 + b"]" * 5_000,
        b'{"url": ' + b'{"a": ' * 2_000 + b"1" + b"}" * 2_001,  # 2,000: MAX_BODY
    ],
    ids=["open-arrays", "closed-arrays", "objects-under-url"],
)
def test_deeply_nested_json_is_400_invalid_json(gateway: AppServer, body: bytes) -> None:
    response = httpx.post(
        gateway.url("/v1/analyze"),
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_brackets_inside_a_json_string_do_not_count_as_nesting(gateway: AppServer) -> None:
    url = "file:///" + "[{" * 1_000  # parsed, then refused as a URL: no task is made
    response = httpx.post(gateway.url("/v1/analyze"), json={"url": url}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_url"
