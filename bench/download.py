"""Downloads: throughput through the gateway vs direct, memory vs file size, concurrency.

`python -m bench.download` starts, each in its own process (so CPU and RSS are
their own): a synthetic upstream (a small aiohttp server that serves files of any
size from one 1 MiB pattern in memory, with Range — nothing on disk) and the gateway
(`app.py`, default `CHUNK_SIZE` and `DOWNLOAD_PIECE_SIZE`). The video's sources are
found by the gateway's real extraction (yt-dlp's generic extractor sees a direct
MP4 link). It prints:

1. throughput of a 1 GiB file directly from the upstream and through the gateway,
   and their ratio;
2. the gateway's peak RSS while relaying 100 MiB, 1 GiB and 4 GiB (sampled every
   20 ms during each transfer; it should not grow with the size), the 100 MiB
   download checked byte for byte;
3. aggregate throughput of 20 concurrent 256 MiB downloads.

Figures, not verdicts: nothing here asserts. Client, gateway and upstream share the
machine's cores, so absolute numbers are lower than on separate hosts; the ratio
and the RSS trend are the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp

from bench.live_fanout import SECRET, gateway, rss_mib
from ytproxy.download.links import download_path
from ytproxy.signing import Signer

MIB = 1024 * 1024
GIB = 1024 * MIB
_BLOCK = MIB
SIZES = {"100m": 100 * MIB, "1g": GIB, "2g": 2 * GIB, "4g": 4 * GIB, "256m": 256 * MIB}
CONCURRENT = 20


def pattern() -> bytes:
    """1 MiB of incompressible bytes, the same in every process."""
    out = bytearray()
    seed = b"ytproxy-bench"
    while len(out) < _BLOCK:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:_BLOCK])


def _serve_upstream(port: int) -> None:
    from aiohttp import web

    block = memoryview(pattern())

    async def watch(request: web.Request) -> web.StreamResponse:
        # The "video page": a redirect to the file, like googlevideo links.
        raise web.HTTPFound(f"/file/{request.match_info['name']}.mp4")

    async def file(request: web.Request) -> web.StreamResponse:
        size = SIZES[request.match_info["name"]]
        start, end = 0, size - 1
        header = request.headers.get("Range")
        response = web.StreamResponse(status=206 if header else 200)
        if header:
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response.headers["Content-Type"] = "video/mp4"
        response.headers["Accept-Ranges"] = "bytes"
        response.content_length = end - start + 1
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        position = start
        try:
            while position <= end:
                offset = position % _BLOCK
                piece = block[offset : offset + min(_BLOCK - offset, end + 1 - position)]
                await response.write(piece)
                position += len(piece)
        except ConnectionError:
            pass
        return response

    async def feed(request: web.Request) -> web.StreamResponse:
        # A playlist (RSS, as yt-dlp's generic extractor reads it) of the files named
        # in `?files=a,b` (bench/zip.py).
        base = f"http://{request.host}"
        items = "".join(
            f"<item><title>file {name}</title>"
            f'<enclosure url="{base}/file/{name}.mp4" type="video/mp4" length="1"/></item>'
            for name in request.query.get("files", "100m").split(",")
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>bench</title>{items}'
        return web.Response(text=body + "</channel></rss>", content_type="application/rss+xml")

    app = web.Application()
    app.router.add_get("/feed.rss", feed)
    app.router.add_get("/watch/{name}", watch)
    app.router.add_get("/file/{name}.mp4", file)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fetch(session: aiohttp.ClientSession, url: str, *, verify: bool = False) -> int:
    """Download `url` to nowhere; returns the byte count (checked against the pattern)."""
    total = 0
    digest = hashlib.sha256() if verify else None
    async with session.get(url) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(_BLOCK):
            total += len(chunk)
            if digest is not None:
                digest.update(chunk)
    if digest is not None:
        expected = hashlib.sha256()
        whole = pattern()
        for _ in range(total // _BLOCK):
            expected.update(whole)
        expected.update(whole[: total % _BLOCK])
        if digest.digest() != expected.digest():
            raise RuntimeError(f"{url}: the bytes differ from the upstream's")
    return total


class PeakRss:
    """Samples a process's RSS every 20 ms while active."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid)[0])
            time.sleep(0.02)


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MIB / seconds:8.0f} MiB/s"


async def run(upstream: str, base: str, pid: int) -> None:
    signer = Signer(SECRET)

    def link(name: str) -> str:
        path = download_path(
            signer, 3600, source_url=f"{upstream}/watch/{name}", format_ids=["mp4"],
            title=f"bench {name}", ext="mp4",
        )  # fmt: skip
        return base + path

    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for name in ("100m", "1g", "4g", "256m"):  # extract once, outside the timings
            async with session.head(link(name)) as response:
                response.raise_for_status()
        print(f"gateway RSS after start-up and extraction: {rss_mib(pid)[0]:.0f} MiB")

        print("\n1. throughput of a 1 GiB file")
        started = time.monotonic()
        direct = await fetch(session, f"{upstream}/file/1g.mp4")
        direct_s = time.monotonic() - started
        started = time.monotonic()
        relayed = await fetch(session, link("1g"))
        relayed_s = time.monotonic() - started
        print(f"   direct from the upstream  {rate(direct, direct_s)}")
        print(f"   through the gateway       {rate(relayed, relayed_s)}")
        print(f"   ratio gateway/direct      {direct_s / relayed_s:8.2f}")

        print("\n2. gateway peak RSS while relaying one download")
        for name in ("100m", "1g", "4g"):
            with PeakRss(pid) as sampler:
                started = time.monotonic()
                size = await fetch(session, link(name), verify=name == "100m")
                seconds = time.monotonic() - started
            checked = " (bytes verified)" if name == "100m" else ""
            print(
                f"   {size / MIB:6.0f} MiB  peak RSS {sampler.peak:6.1f} MiB"
                f"  at {rate(size, seconds).strip()}{checked}"
            )
        print(f"   process peak (VmHWM) so far: {rss_mib(pid)[1]:.1f} MiB")

        print(f"\n3. {CONCURRENT} concurrent downloads of 256 MiB")
        with PeakRss(pid) as sampler:
            started = time.monotonic()
            sizes = await asyncio.gather(*(fetch(session, link("256m")) for _ in range(CONCURRENT)))
            seconds = time.monotonic() - started
        print(
            f"   aggregate {rate(sum(sizes), seconds).strip()} "
            f"({sum(sizes) / GIB:.1f} GiB in {seconds:.1f} s), peak RSS {sampler.peak:.1f} MiB"
        )


@contextlib.contextmanager
def synthetic_upstream() -> Iterator[str]:
    """The synthetic upstream (`_serve_upstream`) in its own process; yields its base URL."""
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_upstream, args=(port,), daemon=True
    )
    server.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bench upstream did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.join(timeout=10)


def main() -> None:
    env = {
        "MAX_CONCURRENT_DOWNLOADS": str(CONCURRENT * 2),
        # Every bench download comes from 127.0.0.1.
        "MAX_DOWNLOADS_PER_CLIENT": str(CONCURRENT * 2),
        "CACHE_TTL": "3600",
    }
    with synthetic_upstream() as upstream, gateway({}, **env) as (base, pid):
        asyncio.run(run(upstream, base, pid))


if __name__ == "__main__":
    main()
