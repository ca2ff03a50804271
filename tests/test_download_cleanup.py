"""Clients that leave: every download they started must let go of everything at once.

Measured over real sockets against the real app: the transfer registry, upstream
connections in use, open file descriptors of this process (the app, the origin and
the test share it), asyncio tasks on the app's loop, and ffmpeg processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.apps import AppServer, cycles_left_by_the_app
from tests.origin import Origin
from ytproxy.download.links import download_path
from ytproxy.settings import Settings

PIECE = 64 * 1024
ABORTS = 1000
MERGE_EVERY = 100  # one abort in a hundred is a merge: 10 ffmpeg processes in all


@pytest.fixture
def gateway(app_server: Callable[..., AppServer], settings: Settings) -> AppServer:
    return app_server(
        settings,
        download_piece_size=PIECE,
        max_concurrent_downloads=200,
        max_downloads_per_client=200,
    )


def path_of(server: AppServer, url: str, formats: list[str]) -> str:
    return download_path(
        server.core.signer, 3600, source_url=url, format_ids=formats, title="t", ext="mp4"
    )


def abort(server: AppServer, path: str, *, body_bytes: int | None) -> None:
    """Ask for `path`, then hang up: at once (None), or after `body_bytes` of the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        if body_bytes is None:
            return
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < body_bytes:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        assert received.startswith(b"HTTP/1.1 200"), received[:200]


def ffmpeg_count(server: AppServer) -> int:
    marker = f"127.0.0.1:{server.port}/v1/download/part/"
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return len(found.split())


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def task_count() -> int:
    return len(asyncio.all_tasks())


def state(server: AppServer) -> tuple[int, int]:
    async def probe() -> tuple[int, int]:
        connector, pieces = server.core.http.connector, server.core.pieces
        assert connector is not None and pieces is not None
        # `_acquired`: the session's connections handed out and not yet released
        # (private, but the one place aiohttp shows them); a download's pieces go
        # through the piece client.
        return len(server.transfers), len(connector._acquired) + pieces.busy()

    return server.call(probe)


def settle(server: AppServer, timeout: float = 30.0) -> bool:
    """Waits until no transfer, upstream connection or ffmpeg is left; the deadline
    only guards against a hang (how soon is bench.download's figure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(server) == (0, 0) and ffmpeg_count(server) == 0:
            return True
        time.sleep(0.01)
    return False


def test_client_leaving_mid_body_releases_the_upstream(gateway: AppServer, origin: Origin) -> None:
    path = path_of(gateway, origin.vod_url, ["mp4"])
    httpx.head(gateway.url(path), timeout=30)
    origin.add_latency("/vod/video.mp4", 0.3)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.setblocking(False)
        deadline = time.monotonic() + 30
        while state(gateway)[1] == 0 and time.monotonic() < deadline:
            # Take what arrives, so that the relay does not wait on a full socket
            # instead of fetching its next piece (a piece is about what loopback
            # buffers hold for a client that reads nothing).
            with contextlib.suppress(BlockingIOError):
                sock.recv(1 << 20)
            time.sleep(0.01)  # wait until the next piece is being fetched
        assert state(gateway) == (1, 1)
    assert settle(gateway)
    assert state(gateway) == (0, 0)
    # Ended because the client left: unnoticed, the relay would have sent the rest of
    # the file into the closed socket (uvicorn drops it silently) and completed.
    outcomes = {"mode": "single", "outcome": "aborted"}
    assert gateway.core.metrics.registry.get_sample_value("downloads_total", outcomes) == 1


def test_a_client_that_leaves_before_the_answer_is_counted_as_499_by_route(
    gateway: AppServer, origin: Origin
) -> None:
    """Downloads are served outside the stack (`app.DirectRoutes`): the request metrics
    still name their route, and a client gone before the head is 499, not a 500."""
    path = path_of(gateway, origin.vod_url, ["mp4"])
    assert httpx.head(gateway.url(path), timeout=30).status_code == 200  # sources cached
    origin.add_latency("/vod/video.mp4", 0.5)  # the head waits for the upstream
    abort(gateway, path, body_bytes=None)
    assert settle(gateway)
    registry = gateway.core.metrics.registry

    def count(method: str, status: str) -> float | None:
        labels = {"route": "download", "method": method, "status": status}
        return registry.get_sample_value("http_requests_total", labels)

    assert count("HEAD", "200") == 1
    assert count("GET", "499") == 1
    assert count("GET", "500") is None


def test_a_thousand_aborted_downloads_leave_no_descriptors_tasks_or_ffmpeg_behind(
    gateway: AppServer, origin: Origin
) -> None:
    single = path_of(gateway, origin.vod_url, ["mp4"])
    merge = path_of(gateway, origin.dash_url, ["133", "140"])

    def one(i: int) -> None:
        if i % MERGE_EVERY == 0:
            abort(gateway, merge, body_bytes=100)
        else:
            abort(gateway, single, body_bytes=None if i % 3 == 0 else 1000)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(MERGE_EVERY)))  # warm-up: extractions, pools, threads
        settle(gateway)
        fds, tasks = fd_count(), gateway.call(task_count)
        # Everything is closed explicitly, not left to the garbage collector.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            list(pool.map(one, range(ABORTS)))
            settle(gateway)
            gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    assert state(gateway) == (0, 0)
    assert ffmpeg_count(gateway) == 0
    assert gateway.call(task_count) <= tasks
    # Idle keep-alive connections in the pools may differ by a few; a leak per
    # download would show as hundreds.
    assert fd_count() <= fds + 8
    registry = gateway.core.metrics.registry
    aborted = sum(
        registry.get_sample_value("downloads_total", {"mode": mode, "outcome": "aborted"}) or 0
        for mode in ("single", "merge")
    )
    assert aborted >= ABORTS * 0.9


def test_downloads_leave_no_reference_cycles_for_the_garbage_collector(
    gateway: AppServer, origin: Origin
) -> None:
    """Everything a download made is freed when its last reference goes, not left in
    cycles: under load, cycles made every collection of the young generation free tens
    of thousands of objects at once (pauses of tens of ms, a p99 of three times the
    median, in `make bench`). Served whole, in ranges, as HEAD, given up by the client,
    and merged; the objects the collector would have to find are saved and looked at."""
    single = path_of(gateway, origin.vod_url, ["mp4"])
    url = gateway.url(single)
    merged = gateway.url(path_of(gateway, origin.dash_url, ["133", "140"]))

    def downloads() -> None:
        assert httpx.get(merged, timeout=60).status_code == 200  # ffmpeg and its two parts
        for _ in range(5):
            assert httpx.get(url, timeout=30).status_code == 200
            assert httpx.get(url, headers={"Range": "bytes=10-99"}, timeout=30).status_code == 206
            assert httpx.head(url, timeout=30).status_code == 200
            abort(gateway, single, body_bytes=1000)
        settle(gateway)

    downloads()  # warm-up: the extraction, pools, caches made once
    assert cycles_left_by_the_app(downloads) == []
