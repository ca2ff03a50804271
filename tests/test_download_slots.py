"""Fair download slots: a per-client cap, and stalled transfers giving their slot back.

The reproduction was 300 connections reading at 1 byte/s holding every slot. Here the
slow readers are raw sockets with a tiny receive buffer that read the status line and
then nothing more, against a file large enough (32 MiB: the VOD MP4 padded, served by
an origin of this module's own) that the gateway's `send` really blocks. The second
client identity is a socket bound to 127.0.0.2 (Linux routes all of 127/8 to
loopback), so the gateway sees another peer without trusting any forwarding header.

Waits poll for the event with a generous deadline; no assertion is about time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Media, Origin
from tests.test_download_cleanup import fd_count, ffmpeg_count, settle, state, task_count
from ytproxy.download.links import download_path
from ytproxy.download.transfers import Transfers
from ytproxy.metrics import Metrics
from ytproxy.settings import Settings

BIG = 32 * 1024 * 1024
PIECE = 1024 * 1024
SLOW_RCVBUF = 4096
OTHER_CLIENT = "127.0.0.2"


@dataclasses.dataclass(frozen=True)
class BigFile:
    origin: Origin
    size: int
    sha256: str


@pytest.fixture(scope="module")
def big(media: Media, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigFile]:
    path = tmp_path_factory.mktemp("big") / "video.mp4"
    with path.open("wb") as f:
        f.write(media.vod.path.read_bytes())
        f.truncate(BIG)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    vod = dataclasses.replace(media.vod, path=path, size=BIG, sha256=digest)
    with Origin(dataclasses.replace(media, vod=vod)) as origin:
        yield BigFile(origin, BIG, digest)


def download_link(server: AppServer, url: str, formats: list[str]) -> str:
    return download_path(
        server.core.signer, 3600, source_url=url, format_ids=formats, title="t", ext="mp4"
    )


def slow_reader(server: AppServer, path: str) -> tuple[socket.socket, int, dict[str, str], bytes]:
    """A client that asks for `path`, reads the response head and then stops reading.

    Returns the socket (still open), the status, the headers and what came after them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(1024)
        assert data, received
        received += data
    head, rest = received.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return sock, int(status_line.split()[1]), headers, rest


def read_to_end(sock: socket.socket, received: bytes = b"") -> bytes:
    while data := sock.recv(1 << 20):
        received += data
    return received


def other_client() -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=OTHER_CLIENT), timeout=30)


def transfers(server: AppServer) -> dict[str, Any]:
    listing: dict[str, Any] = httpx.get(server.url("/v1/transfers"), timeout=30).json()
    return listing


def stalled(server: AppServer, mode: str) -> float:
    labels = {"mode": mode, "outcome": "stalled"}
    value = server.core.metrics.registry.get_sample_value("downloads_total", labels)
    return value or 0.0


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_forty_slow_readers_from_one_address_leave_a_slot_for_another_client(
    app_server: Callable[..., AppServer], settings: Settings, big: BigFile
) -> None:
    server = app_server(
        settings,
        download_piece_size=PIECE,
        max_concurrent_downloads=10,
        max_downloads_per_client=3,
        download_idle_timeout=3600,
    )
    path = download_link(server, big.origin.vod_url, ["mp4"])
    assert httpx.head(server.url(path), timeout=30).status_code == 200
    readers = [slow_reader(server, path) for _ in range(40)]
    try:
        admitted = [r for r in readers if r[1] == 200]
        refused = [r for r in readers if r[1] != 200]
        assert len(admitted) == 3 and len(refused) == 37
        for sock, status, headers, rest in refused:
            assert status == 429 and headers["retry-after"] == "10"
            body = json.loads(read_to_end(sock, rest))
            assert body["error"]["code"] == "too_many_downloads_per_client"
        # The admitted three are stuck: their `send` waits on a client that reads nothing.
        assert wait_for(lambda: transfers(server)["active"] == 3)
        with other_client() as client, client.stream("GET", server.url(path)) as response:
            assert response.status_code == 200
            received = hashlib.sha256()
            chunks = response.iter_raw()
            received.update(next(chunks))
            assert transfers(server)["active"] == 4
            # The gauge reads the registry when scraped.
            assert server.core.metrics.registry.get_sample_value("active_downloads") == 4
            for chunk in chunks:
                received.update(chunk)
        assert received.hexdigest() == big.sha256
        listing = transfers(server)
        assert listing["active"] == 3
        assert all(t["bytes_sent"] < big.size for t in listing["transfers"])
    finally:
        for sock, *_ in readers:
            sock.close()
    settle(server)
    assert state(server) == (0, 0)


def test_without_a_per_client_cap_the_slow_readers_take_every_slot(
    app_server: Callable[..., AppServer], settings: Settings, big: BigFile
) -> None:
    server = app_server(
        settings,
        download_piece_size=PIECE,
        max_concurrent_downloads=10,
        max_downloads_per_client=10,
        download_idle_timeout=3600,
    )
    path = download_link(server, big.origin.vod_url, ["mp4"])
    readers = [slow_reader(server, path) for _ in range(12)]
    try:
        assert sorted(r[1] for r in readers) == [200] * 10 + [429] * 2
        with other_client() as client:
            refused = client.get(server.url(path))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_downloads"
    finally:
        for sock, *_ in readers:
            sock.close()
    settle(server)


def test_a_stalled_transfer_is_ended_after_the_idle_timeout_and_its_slot_given_back(
    app_server: Callable[..., AppServer], settings: Settings, big: BigFile
) -> None:
    server = app_server(
        settings,
        download_piece_size=PIECE,
        max_concurrent_downloads=1,
        download_idle_timeout=1,
    )
    path = download_link(server, big.origin.vod_url, ["mp4"])
    # Warm-up: the sources are cached and the watchdog runs from the first download on.
    assert len(httpx.get(server.url(path), timeout=30).content) == big.size
    settle(server)
    fds, tasks = fd_count(), server.call(task_count)

    sock, status, headers, rest = slow_reader(server, path)
    with sock:
        assert status == 200 and headers["content-length"] == str(big.size)
        assert wait_for(lambda: stalled(server, "single") == 1)
        assert wait_for(lambda: transfers(server)["active"] == 0)
        # The slot is free again, for anyone: here the same address.
        again = httpx.get(server.url(path), timeout=30)
        assert again.status_code == 200 and len(again.content) == big.size
        # What the stalled client gets when it reads again: a short body, then the end.
        assert len(read_to_end(sock, rest)) < big.size
    settle(server)
    assert state(server) == (0, 0)
    assert server.call(task_count) <= tasks
    assert fd_count() <= fds + 8


def test_a_stalled_merge_is_ended_and_its_ffmpeg_killed(
    app_server: Callable[..., AppServer], settings: Settings, origin: Origin
) -> None:
    server = app_server(settings, download_piece_size=64 * 1024, download_idle_timeout=1)
    # The merged test media is small (~180 KB), less than the kernel would buffer for
    # a non-reading client; a small send buffer on the listening socket, inherited by
    # the connections it accepts, makes the gateway's `send` block all the same.
    server._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SLOW_RCVBUF)
    path = download_link(server, origin.dash_url, ["133", "140"])
    assert httpx.head(server.url(path), timeout=30).status_code == 200
    sock, status, headers, rest = slow_reader(server, path)
    with sock:
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        assert wait_for(lambda: stalled(server, "merge") == 1)
        assert wait_for(lambda: ffmpeg_count(server) == 0)
        # Cut off before the final chunk: the client cannot mistake it for a whole file.
        assert not read_to_end(sock, rest).endswith(b"0\r\n\r\n")
    settle(server)
    assert state(server) == (0, 0)
    assert ffmpeg_count(server) == 0


def test_transfer_ids_are_unique_and_differ_between_registries(settings: Settings) -> None:
    first, second = Transfers(settings, Metrics()), Transfers(settings, Metrics())
    ids = {first.probe("single", ["18"], "t").id for _ in range(1000)}
    assert len(ids) == 1000
    # A fresh registry (a restarted gateway) does not give the ids the last one gave.
    assert Transfers(settings, Metrics()).probe("single", ["18"], "t").id not in ids
    assert second.probe("single", ["18"], "t").id not in ids
