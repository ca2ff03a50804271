"""The single-format relay: one upstream file to one client, in ranged pieces.

The upstream is read as a sequence of `Range` requests of one *piece* each (the
format's `http_chunk_size` when yt-dlp gives one, else `DOWNLOAD_PIECE_SIZE`),
because googlevideo throttles whole-file requests. Each piece is read in
`CHUNK_SIZE` blocks and each block is sent before the next is read, so a slow client
slows the upstream reads (uvicorn's `send` waits for the socket to drain) and a
transfer holds a few blocks at most (and the session's bounded read buffer), whatever
the file's size.

What the client sees is decided in `open()`, before the first byte: 200 or 206 with
`Content-Range`, `Content-Length` when the size is known (the format's `filesize`, or
the total of the first piece's `Content-Range`), `Accept-Ranges: bytes`, or an error
(416 for a range past the end). After that, failures are invisible to the client:

- the connection drops, a body ends short, or a read waits 30 s for it (the piece
  client's `STALL_TIMEOUT`, or the session's read timeout through `GLOBAL_PROXY`; time
  spent sending to a slow client does not count) → the next piece starts at the byte
  reached (with backoff; see `upstream.Attempts`);
- 403 on a large piece before any piece of that size succeeded → the piece shrinks
  (some datacenter IPs are refused ranges over ~1–2 MB);
- 403/404/410 otherwise → the URL expired: re-extract and carry on from the byte
  reached.

Only when the budget of failures without progress runs out does the stream end early
(the client then sees a short body). This module does not parse manifests (see
`fragments.py`) or register transfers (see `transfers.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from ..errors import RangeNotSatisfiable, UpstreamError
from ..upstream import REFUSED, PieceResponse, retryable
from .headers import ByteRange, Naming, content_range, parse_content_range
from .response import Head
from .upstream import NETWORK_ERRORS, Attempts, Upstream, read_block, release

log = logging.getLogger(__name__)

# A piece never shrinks below this: smaller ranges only multiply requests.
MIN_PIECE = 1024 * 1024


class RangedRelay:
    mode = "single"

    def __init__(
        self,
        upstream: Upstream,
        *,
        chunk_size: int,
        piece_size: int,
        byte_range: ByteRange | None,
        naming: Naming,
        head_only: bool = False,
    ) -> None:
        self._up = upstream
        self._chunk = chunk_size
        fmt = upstream.fmt
        given = (fmt.get("downloader_options") or {}).get("http_chunk_size")
        self._piece = given if isinstance(given, int) and given > 0 else piece_size
        self._range = byte_range
        self._naming = naming
        self._head_only = head_only
        filesize = fmt.get("filesize")
        self.size: int | None = filesize if isinstance(filesize, int) and filesize > 0 else None
        self.position = 0
        self._stop: int | None = None
        self._response: PieceResponse | None = None
        self._piece_stop: int | None = None
        self._proven = False
        self._attempts = Attempts()

    async def open(self) -> Head:
        rng = self._range
        if self.size is None and (self._head_only or (rng is not None and rng.start is None)):
            await self._learn_size()
        start, stop = self._span()
        if not self._head_only:
            self.position, self._stop = start, stop
            if not await self._open_piece():
                if self.size != 0 or rng is not None:
                    raise RangeNotSatisfiable("The range is beyond the end", size=self.size)
                start = stop = 0  # an empty file
            # The first piece's Content-Range has the real size (yt-dlp's `filesize`
            # can be wrong); a suffix range's start depends on it.
            new_start, stop = self._span() if self.size is not None else (start, stop)
            if new_start != start:
                self._drop_response()
                start = self.position = new_start
            self._stop = stop
        headers = self._naming.headers(accept_ranges="bytes")
        if stop is not None:
            headers["Content-Length"] = str(stop - start)
        if rng is None:
            return Head(200, headers)
        if stop is None:
            raise UpstreamError("The upstream does not say how big this file is")
        headers["Content-Range"] = content_range(start, stop, self.size)
        return Head(206, headers)

    def _span(self) -> tuple[int, int | None]:
        """`[start, stop)` of what the client asked for, as far as the size is known."""
        rng = self._range
        if self.size is not None:
            return rng.resolve(self.size) if rng else (0, self.size)
        # Only an open-ended or explicit `bytes=a-b` gets here (a suffix needs a size).
        start = rng.start if rng is not None and rng.start is not None else 0
        stop = rng.end + 1 if rng is not None and rng.end is not None else None
        return start, stop

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's blocks: this relay is its own iterator (`__anext__`), not an async
        generator, which asyncio registers and finalises one by one."""
        return self

    def __aiter__(self) -> RangedRelay:
        return self

    async def __anext__(self) -> bytes:
        while self._stop is None or self.position < self._stop:
            if self._response is None and not await self._open_piece():
                break
            response = self._response
            assert response is not None
            limit = _earliest(self._piece_stop, self._stop)
            want = self._chunk if limit is None else min(self._chunk, limit - self.position)
            data, broken = await read_block(response, want)
            if data:
                self.position += len(data)
                self._attempts.progressed()
                self._up.progressed()
                if limit is not None and self.position >= limit:
                    self._drop_response()  # the piece is read: its connection goes back now
                    self._proven = True
                return data
            if self._piece_stop is None and not isinstance(broken, Exception):
                self._stop = self.position  # a 200 without Content-Length: EOF is the end
                break
            self._drop_response()
            await self._attempts.failed(f"body ended at byte {self.position}: {broken!r}")
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._drop_response()

    async def _learn_size(self) -> None:
        """One-byte probe: the size is the total of its `Content-Range`."""
        self.position = 0
        await self._open_piece(length=1)
        self._drop_response()

    async def _open_piece(self, length: int | None = None) -> bool:
        """Open the upstream at `position`; False if there is nothing there (end of file)."""
        while True:
            first = self.position
            last = first + (length or self._piece) - 1
            if self._stop is not None:
                last = min(last, self._stop - 1)
            try:
                response = await self._up.get_piece((first, last))
            except NETWORK_ERRORS as exc:
                await self._attempts.failed(f"request failed: {exc!r}")
                continue
            status = response.status
            if status == 206:
                got_first, got_last, total = parse_content_range(
                    response.headers.get("Content-Range")
                )
                if got_first != first or got_last is None:
                    release(response)
                    await self._attempts.failed(f"asked for byte {first}, got {got_first}")
                    continue
                self.size = total if total is not None else self.size
                self._accept(response, got_last + 1)
                return True
            if status == 200:
                if first != 0:
                    release(response)
                    raise UpstreamError("The upstream does not support ranges; cannot resume")
                if response.content_length is not None:
                    self.size = response.content_length
                self._accept(response, response.content_length)
                return True
            release(response)
            if status == 416:
                _, _, total = parse_content_range(response.headers.get("Content-Range"))
                self.size = total if total is not None else self.size
                return False
            if status in REFUSED:
                await self._refused(status)
            elif retryable(status):
                await self._attempts.failed(f"upstream answered {status}")
            else:
                raise UpstreamError(f"The upstream answered {status}")

    def _accept(self, response: PieceResponse, piece_stop: int | None) -> None:
        self._response = response
        self._piece_stop = piece_stop

    async def _refused(self, status: int) -> None:
        if (
            status == 403
            and not self._proven
            and self._piece > MIN_PIECE
            and not self._up.looks_expired()
        ):
            self._piece = max(MIN_PIECE, self._piece // 4)
            log.info(
                "format %s: 403 on a large range; pieces of %d bytes from now on",
                self._up.format_id,
                self._piece,
            )
            await self._attempts.failed("403 on a large range")
            return
        await self._up.renew()
        self._proven = False

    def _drop_response(self) -> None:
        release(self._response)
        self._response = None
        self._piece_stop = None


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
