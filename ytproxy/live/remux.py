"""Per-segment stream copy with ffmpeg: two demuxed segments muxed into one, or the
audio of a muxed segment on its own.

A demuxed live (video-only and audio-only HLS renditions, numbered alike) cannot be
carried in a single media playlist, which is what the program playlist behind the
slate (`program.py`) and audio-only radio entries need. `Remuxer` makes such segments
from the relayed ones: `mux(video, audio)` puts one video and one audio segment of the
same media sequence into one MPEG-TS segment, `audio(segment)` keeps only the audio.
Both copy the streams (`-c copy`, no decoding) and keep the input timestamps
(`-copyts`), so consecutive segments play as one stream.

Everything is in memory and bounded: inputs go to ffmpeg on pipes (the second input on
an extra pipe passed as `/dev/fd/N`), the output comes back on stdout, at most
`max_runs` ffmpeg processes run at once, each has a timeout and is killed and reaped
if it runs out or its caller is cancelled. It caches nothing: callers keep the result
where they keep segments (the relay's shared buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from ..errors import UpstreamError

log = logging.getLogger(__name__)

_KILL_GRACE = 5.0


class Remuxer:
    def __init__(self, *, ffmpeg: str = "ffmpeg", max_runs: int = 2, timeout: float = 20.0):
        self._ffmpeg = ffmpeg
        self._runs = asyncio.Semaphore(max_runs)
        self._timeout = timeout
        self.runs = 0  # ffmpeg runs started, for the tests and diagnostics

    async def mux(self, video: bytes, audio: bytes) -> bytes:
        """One MPEG-TS segment with the video of `video` and the audio of `audio`."""
        return await self._run(
            [video, audio], ["-map", "0:v:0", "-map", "1:a:0"], what="muxing a segment"
        )

    async def audio(self, segment: bytes) -> bytes:
        """The audio of a muxed segment, as an MPEG-TS segment without video."""
        return await self._run([segment], ["-map", "0:a:0"], what="taking a segment's audio")

    async def _run(self, inputs: list[bytes], maps: list[str], *, what: str) -> bytes:
        async with self._runs:
            self.runs += 1
            return await asyncio.wait_for(self._ffmpeg_run(inputs, maps, what), self._timeout)

    async def _ffmpeg_run(self, inputs: list[bytes], maps: list[str], what: str) -> bytes:
        extra = [os.pipe() for _ in inputs[1:]]
        args = [self._ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
        args += ["-f", "mpegts", "-i", "pipe:0"]
        for read_end, _ in extra:
            args += ["-f", "mpegts", "-i", f"/dev/fd/{read_end}"]
        args += [*maps, "-c", "copy", "-copyts", "-muxdelay", "0", "-muxpreload", "0"]
        args += ["-f", "mpegts", "pipe:1"]
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=[read_end for read_end, _ in extra],
            )
        except BaseException:
            for _, write_end in extra:
                os.close(write_end)
            raise
        finally:
            for read_end, _ in extra:
                os.close(read_end)  # ffmpeg has its copy
        loop = asyncio.get_running_loop()
        writers = [
            loop.run_in_executor(None, _write_and_close, write_end, data)
            for (_, write_end), data in zip(extra, inputs[1:], strict=True)
        ]
        try:
            output, errors = await process.communicate(inputs[0])
            await asyncio.gather(*writers, return_exceptions=True)
        except BaseException:
            # Killing ffmpeg ends the writers (their pipes break); they close their ends.
            await _kill(process)
            raise
        if process.returncode != 0 or not output:
            message = errors.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            log.warning("ffmpeg failed %s (exit %s): %s", what, process.returncode, message[0])
            raise UpstreamError(f"The stream's segment could not be remuxed ({what})")
        return output


def _write_and_close(fd: int, data: bytes) -> None:
    """Runs in a thread: ffmpeg may read this input only after the other one."""
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except BrokenPipeError:
        pass  # ffmpeg stopped reading: its exit status tells what happened
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), _KILL_GRACE)
