"""The merged download: a video-only and an audio-only format, muxed on the fly.

ffmpeg copies the two streams (`-c copy`, no re-encoding) into a container written to
its stdout, which is streamed to the client; nothing touches the disk. Its inputs are
*part* URLs on this same gateway (`/v1/download/part/<token>`, on the address the
request arrived at), so each input goes through the ordinary single-format relay:
the proxy, ranged pieces, resume after drops and re-extraction on expiry all apply,
and ffmpeg can seek (it sends `Range`) as it would on a local file.

The container: fragmented MP4 (`frag_keyframe+empty_moov+default_base_moof`, which
needs no seeking back, so it can go down a pipe) for H.264/HEVC/AV1/VP9 with
AAC/Opus, WebM for VP8/VP9/AV1 with Opus/Vorbis, Matroska for anything else. The
link's requested extension wins when the codecs allow it.

The size of the result is not known in advance: no `Content-Length`, no ranges. The
status is decided once ffmpeg has written its first bytes (the container header, after
both inputs opened), so a merge that cannot start is a 502, not an empty 200. A merge
whose ffmpeg exits non-zero, or whose input relay failed (ffmpeg exits 0 on a
truncated input), ends the stream early instead of completing it.

On client disconnect `aclose()` kills ffmpeg, drains and reaps it; the part requests
are cancelled with the transfer (see `transfers.py`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator

from ..codecs import audio_family, video_family
from ..errors import UpstreamError
from .headers import Naming
from .response import Head
from .transfers import Transfer

log = logging.getLogger(__name__)

# What ffmpeg can write each container with (by `codecs` family), broader than the
# catalogue's "plays everywhere" MP4: the link's extension is honoured when it fits.
_MP4_VIDEO = frozenset({"H.264", "HEVC", "AV1", "VP9"})
_MP4_AUDIO = frozenset({"AAC", "Opus", "AC-3", "E-AC-3", "MP3", "FLAC"})
_WEBM_VIDEO = frozenset({"VP8", "VP9", "AV1"})
_WEBM_AUDIO = frozenset({"Opus", "Vorbis"})
_MUXERS = {
    "mp4": ["-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof"],
    "webm": ["-f", "webm"],
    "mkv": ["-f", "matroska"],
}
# ffmpeg gives up on an input that sends nothing for this long (microseconds); the
# relay behind it retries far sooner, so this only fires if the gateway itself hangs.
_RW_TIMEOUT = str(120 * 1_000_000)
_KILL_GRACE = 1.0


def choose_container(vcodec: str | None, acodec: str | None, wanted: str | None) -> str:
    """`mp4`, `webm` or `mkv` for these codecs, preferring the requested extension."""
    video, audio = video_family(vcodec), audio_family(acodec)
    mp4_ok = video in _MP4_VIDEO and audio in _MP4_AUDIO
    webm_ok = video in _WEBM_VIDEO and audio in _WEBM_AUDIO
    wanted = (wanted or "").lower()
    if wanted in {"mp4", "m4v"} and mp4_ok:
        return "mp4"
    if wanted == "webm" and webm_ok:
        return "webm"
    if wanted in {"mkv", "matroska"}:
        return "mkv"
    if webm_ok:
        return "webm"
    return "mp4" if mp4_ok else "mkv"


def ffmpeg_command(ffmpeg: str, inputs: list[str], container: str) -> list[str]:
    command = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    for url in inputs:
        # Inputs are the gateway's own signed part URLs on loopback (which the relay
        # fetches under the address policy); ffmpeg may open nothing else.
        command += ["-protocol_whitelist", "http,tcp", "-rw_timeout", _RW_TIMEOUT, "-i", url]
    command += ["-map", "0:v:0", "-map", "1:a:0", "-c", "copy", *_MUXERS[container], "pipe:1"]
    return command


class MergedStream:
    mode = "merge"

    def __init__(
        self,
        *,
        ffmpeg: str,
        inputs: list[str],
        container: str,
        naming: Naming,
        chunk_size: int,
        transfer: Transfer,
        head_only: bool = False,
    ) -> None:
        self._command = ffmpeg_command(ffmpeg, inputs, container)
        self._container = container
        self._naming = naming
        self._chunk = chunk_size
        self._transfer = transfer
        self._head_only = head_only
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=8)
        self._first = b""

    async def open(self) -> Head:
        headers = self._naming.headers(self._container, accept_ranges="none")
        if self._head_only:
            return Head(200, headers)
        self._process = process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=self._chunk,
            start_new_session=True,
        )
        self._stderr = asyncio.create_task(self._collect_stderr())
        assert process.stdout is not None
        self._first = await process.stdout.read(self._chunk)
        if not self._first:
            code = await process.wait()
            await self._stderr
            raise UpstreamError(f"ffmpeg could not merge the formats (exit {code}): {self.error}")
        return Head(200, headers)

    @property
    def error(self) -> str:
        return " | ".join(self._tail) or "no message"

    async def chunks(self) -> AsyncIterator[bytes]:
        process = self._process
        assert process is not None and process.stdout is not None
        yield self._first
        self._first = b""
        while True:
            try:
                yield await process.stdout.readexactly(self._chunk)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    yield exc.partial
                break
        code = await process.wait()
        if self._stderr is not None:
            await self._stderr
        if code != 0:
            raise UpstreamError(f"ffmpeg failed while merging (exit {code}): {self.error}")
        if self._transfer.problems:
            raise UpstreamError("An input of the merge failed; the result would be truncated")

    async def aclose(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            process.kill()
        # Reading to EOF lets the pipe transports close (a paused reader would keep
        # its descriptor open); the process is dead, so EOF comes at once.
        try:
            async with asyncio.timeout(_KILL_GRACE):
                if process.stdout is not None:
                    while await process.stdout.read(self._chunk):
                        pass
                if self._stderr is not None:
                    await self._stderr
        except TimeoutError:
            log.warning("ffmpeg pipes did not close within %.0f s", _KILL_GRACE)
        await process.wait()

    async def _collect_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while block := await self._process.stderr.read(4096):
            for line in block.decode("utf-8", "replace").splitlines():
                if line.strip():
                    self._tail.append(line.strip()[:300])
