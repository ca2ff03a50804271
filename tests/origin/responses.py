"""HTTP bodies for the test origin: Range parsing, file and byte responses, faults.

Everything the origin sends goes through `stream()`, which writes a Content-Length body
in chunks (files are never read whole) and applies a request's `drop_after` fault by
closing the connection mid-body. Range handling covers what players and yt-dlp send:
`bytes=a-b`, `bytes=a-` and `bytes=-n` (206), unsatisfiable (416 with
`Content-Range: bytes */size`), and no Range (200). It deliberately does not do
multipart ranges, If-Range, ETags or compression.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from aiohttp import web

from tests.origin.controls import FaultPlan

PLAN = web.RequestKey("plan", FaultPlan)
_CHUNK = 64 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """The inclusive byte span a single-range `Range` header asks for; None to serve
    the whole file (no header, or one we ignore); False if it cannot be satisfied."""
    if header is None or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes=") :].strip().partition("-")
    if not sep or not (first.isdigit() or last.isdigit()):
        return None
    if not first:
        suffix = int(last)
        return (max(0, size - suffix), size - 1) if suffix > 0 and size > 0 else False
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, (min(int(last), size - 1) if last else size - 1)


async def send_file(request: web.Request, path: Path, content_type: str) -> web.StreamResponse:
    return await _ranged(request, path.stat().st_size, content_type, lambda a, b: _read(path, a, b))


async def send_ranged_bytes(
    request: web.Request, body: bytes, content_type: str
) -> web.StreamResponse:
    """`body` as a file would be served: Range requests get their slice."""
    return await _ranged(request, len(body), content_type, lambda a, b: iter([body[a:b]]))


async def _ranged(
    request: web.Request,
    size: int,
    content_type: str,
    read: Callable[[int, int], Iterator[bytes]],
) -> web.StreamResponse:
    span = parse_range(request.headers.get("Range"), size)
    headers = {"Accept-Ranges": "bytes", "Content-Type": content_type}
    if span is False:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers, text="range not satisfiable\n")
    if span is None:
        return await stream(request, 200, headers, 0, size, read(0, size))
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return await stream(request, 206, headers, start, end + 1, read(start, end + 1))


async def send_bytes(request: web.Request, body: bytes, content_type: str) -> web.StreamResponse:
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    return await stream(request, 200, headers, 0, len(body), iter([body]))


def _read(path: Path, start: int, stop: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


async def stream(
    request: web.Request,
    status: int,
    headers: dict[str, str],
    start: int,
    stop: int,
    chunks: Iterator[bytes],
) -> web.StreamResponse:
    """Send a body with its Content-Length, honouring a `drop_after` fault by closing
    the connection once that many body bytes are out, and a `stall_after` fault by
    sending nothing more (the connection left open) until the client closes it."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = stop - start
    plan: FaultPlan | None = request.get(PLAN)
    drop = plan.drop_after if plan is not None else None
    stall = plan.stall_after if plan is not None else None
    if drop is not None or stall is not None:
        response.force_close()
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    sent = 0
    try:
        for chunk in chunks:
            if stall is not None and sent + len(chunk) >= stall:
                await response.write(chunk[: stall - sent])
                while request.transport is not None and not request.transport.is_closing():
                    await asyncio.sleep(0.05)
                return response
            if drop is not None and sent + len(chunk) >= drop:
                # force_close() above: aiohttp closes the connection once we return,
                # and the client sees EOF before Content-Length bytes arrived.
                await response.write(chunk[: drop - sent])
                return response
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
    except ConnectionError:
        # The client went away mid-body (yt-dlp reads only the headers of a direct
        # media link); nothing to do and nothing worth a traceback.
        pass
    return response
