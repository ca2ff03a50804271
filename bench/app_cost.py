"""The gateway's own work per small download, in process (`python -m bench.app_cost`).

`bench.compare` measures whole relays over loopback, where the machine's other load
moves a run by ±15%: a change of a few µs in the app's own Python cannot be told from
that noise. This bench takes the sockets out. The whole app (`create_app`, started
through its lifespan) serves `GET /v1/download/<token>` for a 100 KiB file — the hot
route, the signed link, the sources record, the transfer registry, the response, the
ranged relay, the metrics — with the piece client's answer made in memory (no
connection, no server: `pieces.get` is swapped for `_answer`), and `send` discards
what it is given. The baseline, in the same run, is a bare ASGI app that gets the same
answer and sends the same three messages.

Figures: µs per request, the best of `ROUNDS` rounds (the least disturbed by the
machine's other load), and calls per request (Python and C, counted with
`sys.setprofile`: exact, whatever the machine does). The ratio is the app's cost over
the bare app's: what ytproxy adds to uvicorn and the piece client for one download.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.types import Message, Scope

from ytproxy.app import create_app
from ytproxy.download.links import download_path
from ytproxy.http1 import Headers
from ytproxy.settings import Settings
from ytproxy.upstream import DISCONNECT_EXTENSION

ROUNDS = int(os.environ.get("BENCH_APP_ROUNDS", "15"))
PER_ROUND = 3000
SIZE = 100 * 1024
_BODY = bytes(SIZE)
_SOURCE = "https://video.bench/watch?v=small"
_FORMAT = {
    "format_id": "18", "url": "https://media.bench/videoplayback?itag=18", "protocol": "https",
    "ext": "mp4", "vcodec": "avc1.42001E", "acodec": "mp4a.40.2",
    "http_headers": {"User-Agent": "Mozilla/5.0", "Accept": "*/*"},
}  # fmt: skip


class _Answer:
    """What the piece client would give for the first piece of the file: 206, its
    Content-Range and Content-Length, and the body in one block (`upstream.PieceResponse`)."""

    def __init__(self) -> None:
        self.status = 206
        self.headers = Headers(
            {
                "content-range": f"bytes 0-{SIZE - 1}/{SIZE}",
                "content-length": str(SIZE),
                "content-type": "video/mp4",
            }
        )
        self.content_length = SIZE
        self._blocks = [_BODY]

    @property
    def content(self) -> _Answer:
        return self

    async def read(self, n: int = -1) -> bytes:
        return self._blocks.pop() if self._blocks else b""

    def at_eof(self) -> bool:
        return not self._blocks

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _answer(url: str, headers: object, byte_range: object) -> _Answer:
    return _Answer()


async def _bare(scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
    """The least an ASGI relay does with the same answer."""
    answer = await _answer("", None, None)
    headers = [(b"content-length", str(answer.content_length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    while block := await answer.read(256 * 1024):
        await send({"type": "http.response.body", "body": block, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    answer.release()


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    pass


def _lost_never(callback: Callable[[], None]) -> Callable[[], None]:
    """The server's `ytproxy.disconnect` extension, for a client that stays."""
    return _nothing


def _nothing() -> None:
    pass


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ytproxy-app-cost-") as tmp:
        channels = Path(tmp) / "channels.toml"
        channels.write_text("", encoding="utf-8")
        environment = {
            "SECRET_KEY": "bench-secret-0123456789abcdef",
            "CHANNELS_FILE": str(channels),
            "MAX_CONCURRENT_DOWNLOADS": "1000",
            "LOG_LEVEL": "WARNING",
        }
        asyncio.run(_measure(Settings.from_env(environment)))


async def _measure(settings: Settings) -> None:
    app = create_app(settings)
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    await to_app.put({"type": "lifespan.startup"})
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    running = asyncio.create_task(app(lifespan, to_app.get, from_app.put))
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    try:
        core = state["core"]
        core.pieces.get = _answer  # the one swap: no connection, the answer in memory
        info = {"id": "small", "title": "small", "formats": [_FORMAT]}
        await state["sources"].store(_SOURCE, info)
        path = download_path(core.signer, 3600, source_url=_SOURCE, format_ids=["18"],
                             title="small", ext="mp4")  # fmt: skip

        def scope() -> Scope:
            return {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000),
                "server": ("127.0.0.1", 8000), "state": dict(state),
                "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")],
                "extensions": {DISCONNECT_EXTENSION: _lost_never},
            }  # fmt: skip

        statuses: list[int] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope(), _receive, keep)
        if statuses != [200]:
            raise RuntimeError(f"the download was answered {statuses}")
        rows = [("bare ASGI app, the same answer and sends", _bare), ("ytproxy app", app)]
        best = {name: float("inf") for name, _ in rows}
        for _ in range(ROUNDS):
            for name, target in rows:
                began = time.perf_counter()
                for _ in range(PER_ROUND):
                    await target(scope(), _receive, _discard)
                best[name] = min(best[name], (time.perf_counter() - began) / PER_ROUND * 1e6)
        calls = {name: await _calls(target, scope) for name, target in rows}
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await running
    print(f"\nin process: a 100 KiB download with the piece answer in memory; best of {ROUNDS} "
          f"rounds of {PER_ROUND}\n")  # fmt: skip
    print("| app | µs per request | calls per request |")
    print("|---|---:|---:|")
    for name, _ in rows:
        print(f"| {name} | {best[name]:.1f} | {calls[name]:.0f} |")
    bare, full = (name for name, _ in rows)
    print(f"| **ytproxy / bare** | **{best[full] / best[bare]:.1f}×** | "
          f"{calls[full] / calls[bare]:.1f}× |")  # fmt: skip


async def _calls(target: Any, scope: Callable[[], Scope], n: int = 200) -> float:
    """Calls (Python and C) per request, counted with `sys.setprofile`."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        for _ in range(n):
            await target(scope(), _receive, _discard)
    finally:
        sys.setprofile(None)
    return count / n


if __name__ == "__main__":
    main()
