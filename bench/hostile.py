"""Hostile requests: parse time of a hostile Range, and /health under a huge header.

`python -m bench.hostile` prints:

1. `parse_range` (and `parse_content_range`) on 1 MB of hostile input — the probe's
   `bytes=` + spaces + `x` — against a normal header, and, for scale, the regular
   expression it replaced on only 20,000 characters (it was quadratic: 128,000
   spaces took 27 s);
2. `/health` latency p50/p99 at rest, then while another connection keeps sending a
   16 MiB request header in 64 KiB pieces (reconnecting each time it is refused), in
   the same gateway process (`app.py` in a subprocess, default `MAX_HEADER_BYTES`);
   with the number of 431s the sender got and the gateway's RSS before and after.

Figures, not verdicts: nothing here asserts. The sender, the measuring client and the
gateway share the machine's cores.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx

from bench.live_fanout import gateway, percentile, rss_mib
from ytproxy.download import headers
from ytproxy.download.headers import parse_content_range, parse_range

MIB = 1024 * 1024
HUGE_HEADER = 16 * MIB
PIECE = 64 * 1024
PIECE_GAP = 0.002  # seconds between pieces: a slow sender, not a flood
HEALTH_REQUESTS = 400

_OLD_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def main() -> None:
    _parsing()
    with gateway({}, LOG_LEVEL="ERROR") as (base, pid):
        _health_under_a_huge_header(base, pid)


def _per_call(fn: object, arg: str, repeat: int) -> float:
    assert callable(fn)
    started = time.perf_counter()
    for _ in range(repeat):
        fn(arg)
    return (time.perf_counter() - started) / repeat


def _parsing() -> None:
    hostile = "bytes=" + " " * 1_000_000 + "x"
    normal = "bytes=100000-250000"
    at_cap = "bytes=" + " " * (headers.MAX_RANGE_HEADER - 7) + "x"
    rows = [
        (f"normal header, {len(normal)} chars", _per_call(parse_range, normal, 100_000)),
        (
            f"hostile, {len(at_cap)} chars (the longest read)",
            _per_call(parse_range, at_cap, 100_000),
        ),
        (f"hostile, {len(hostile):,} chars", _per_call(parse_range, hostile, 1_000)),
    ]
    cap = headers.MAX_RANGE_HEADER
    headers.MAX_RANGE_HEADER = len(hostile)  # the parser itself, without the length cap
    try:
        rows.append(
            (f"hostile, {len(hostile):,} chars, cap lifted", _per_call(parse_range, hostile, 20))
        )
    finally:
        headers.MAX_RANGE_HEADER = cap
    content = "bytes 0-99/" + " " * 1_000_000 + "x"
    rows.append(
        (
            f"parse_content_range, hostile {len(content):,} chars",
            _per_call(parse_content_range, content, 1_000),
        )
    )
    old = "bytes=" + " " * 20_000 + "x"
    rows.append(
        (f"the replaced regex, hostile {len(old):,} chars", _per_call(_OLD_RANGE.match, old, 1))
    )
    print("parse_range, time per call:")
    for label, seconds in rows:
        print(f"  {label:48s} {seconds * 1e6:12.2f} µs")


def _health_latencies(client: httpx.Client, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        client.get("/health").raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


class _HugeHeaderSender(threading.Thread):
    """Sends a 16 MiB header slowly, over and over, until stopped; counts the answers."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(name="huge-header", daemon=True)
        self.address = (host, port)
        self.stop = threading.Event()
        self.attempts = 0
        self.sent = 0
        self.statuses: dict[str, int] = {}

    def run(self) -> None:
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: "
        piece = b"a" * PIECE
        while not self.stop.is_set():
            self.attempts += 1
            with socket.create_connection(self.address, timeout=30) as sock:
                try:
                    sock.sendall(head)
                    for _ in range(HUGE_HEADER // PIECE):
                        if self.stop.is_set():
                            return
                        sock.sendall(piece)
                        self.sent += PIECE
                        time.sleep(PIECE_GAP)
                    sock.sendall(b"\r\n\r\n")
                except OSError:
                    pass  # refused and closed before the header ended
                status = self._status(sock)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    @staticmethod
    def _status(sock: socket.socket) -> str:
        try:
            answer = sock.recv(64)
        except OSError as exc:
            return type(exc).__name__
        return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"


def _health_under_a_huge_header(base: str, pid: int) -> None:
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    with httpx.Client(base_url=base, timeout=30) as client:
        _health_latencies(client, 50)  # warm up
        rest = _health_latencies(client, HEALTH_REQUESTS)
        rss_before, _ = rss_mib(pid)
        sender = _HugeHeaderSender(parts.hostname, parts.port)
        sender.start()
        time.sleep(0.5)
        busy = _health_latencies(client, HEALTH_REQUESTS)
        rss_during, peak = rss_mib(pid)
        sender.stop.set()
        sender.join(timeout=30)
    print(f"/health latency, {HEALTH_REQUESTS} sequential requests each:")
    for label, values in (("at rest", rest), ("during a 16 MiB header", busy)):
        print(
            f"  {label:24s} p50 {percentile(values, 0.5) * 1e3:6.2f} ms   "
            f"p99 {percentile(values, 0.99) * 1e3:6.2f} ms"
        )
    print(
        f"huge-header sender: {sender.attempts} connections, {sender.sent / MIB:.0f} MiB sent, "
        f"answers {sender.statuses}"
    )
    print(
        f"gateway RSS before / during / peak: {rss_before:.0f} / {rss_during:.0f} / {peak:.0f} MiB"
    )
