"""A small HTTP forward proxy on loopback, for tests of `GLOBAL_PROXY`.

`ForwardProxy()` listens on 127.0.0.1 and an ephemeral port, on its own thread and
event loop (like the test origin), so yt-dlp's threads, ffmpeg, aiohttp and httpx can
all use it. It forwards absolute-form requests (`GET http://host:port/path HTTP/1.1`,
what clients send to a plain-HTTP proxy for an http:// URL) and tunnels `CONNECT`
(https:// URLs), one request per client connection. It counts what it carried:
`requests[target]` per `host:port` (refused ones too), and `paths` in order.

A test double: no authentication, no keep-alive, no chunked request bodies, and it
refuses targets off loopback (127.0.0.0/8, ::1) (these tests must never reach anything else).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from types import TracebackType
from urllib.parse import urlsplit

from ytproxy.urlguard import is_loopback_host


class ForwardProxy:
    def __init__(self) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        self._thread = threading.Thread(target=self._run, name="forward-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forward proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def count(self, target: str) -> int:
        with self._lock:
            return self.requests[target]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.paths.clear()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _record(self, target: str, path: str) -> None:
        with self._lock:
            self.requests[target] += 1
            self.paths.append(path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers = [line for line in header_lines if line]
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            await self._tunnel(host.strip("[]"), int(port), reader, writer)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            await _reply(writer, 400, "absolute-form http:// URL expected")
            return
        host, port = parts.hostname, parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self._record(f"{host}:{port}", path)
        if not is_loopback_host(host):
            await _reply(writer, 403, "this test proxy only reaches loopback")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            await _reply(writer, 502, "cannot reach the target")
            return
        kept = [
            h for h in headers if not h.lower().startswith(("proxy-", "connection:", "keep-alive:"))
        ]
        upstream_head = f"{method} {path} {version}\r\n" + "".join(
            f"{h}\r\n" for h in [*kept, "Connection: close"]
        )
        up_writer.write(upstream_head.encode("latin-1") + b"\r\n")
        length = next(
            (int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")),
            0,
        )
        if length:
            up_writer.write(await reader.readexactly(length))
        await up_writer.drain()
        await _pipe(up_reader, writer)
        up_writer.close()
        writer.close()

    async def _tunnel(
        self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._record(f"{host}:{port}", "CONNECT")
        if not is_loopback_host(host):
            await _reply(writer, 403, "this test proxy only reaches loopback")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            await _reply(writer, 502, "cannot reach the target")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


async def _reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = text.encode()
    head = f"HTTP/1.1 {status} Proxy\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()
