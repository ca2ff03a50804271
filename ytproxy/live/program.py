"""A channel's continuous program: the slate while it is not live, then the live itself.

When a channel is upcoming, ended or offline, its stable URL `/live/{id}.m3u8` answers
a master with one variant, `/live/{id}/program.m3u8`, instead of an error, so an IPTV
player never drops the channel. That media playlist lists the slate (`slate.py`: a
still naming the channel and its status) while the channel is not live; once it is
live, the same playlist goes on with the live stream's segments, so a player left open
on an upcoming channel starts playing by itself.

Players follow a live media playlist by its sequence numbers, so `ProgramClock` keeps
them increasing across every switch: the slate counts from the wall clock, the live
segments keep the upstream's numbers shifted by an offset fixed at the switch, and each
switch is one discontinuity (`EXT-X-DISCONTINUITY-SEQUENCE` counts it, as RFC 8216
6.2.2 asks when the segments before a discontinuity leave the playlist).

It follows one variant (the best one offered). A demuxed live (separate audio) goes on
in the same playlist too: its video variant's segments point at segments muxed with
their audio (`demuxed.py`), since one media playlist cannot carry a separate audio
rendition. The clock is per process: behind a load balancer, pin a player to one
instance for the slate.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable

from .slate import HEIGHT, WIDTH, slate_media_playlist, slate_sequence

SLATE_WINDOW = 3
_MEDIA_SEQUENCE = re.compile(r"^#EXT-X-MEDIA-SEQUENCE:\s*(\d+)\s*$", re.M)
_DISCONTINUITY_SEQUENCE = re.compile(r"^#EXT-X-DISCONTINUITY-SEQUENCE:\s*(\d+)\s*$", re.M)


def program_master(program_url: str) -> str:
    """The master a player gets for a channel that is not live: one muxed variant."""
    return (
        "#EXTM3U\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=800000,"
        f'RESOLUTION={WIDTH}x{HEIGHT},CODECS="avc1.4d401e,mp4a.40.2"\n'
        f"{program_url}\n"
    )


@dataclasses.dataclass
class ProgramClock:
    """Sequence numbers of one channel's program, across its slate and live periods.

    Media and discontinuity sequence numbers only ever grow: each period adds a fixed
    shift to its own numbers (the slate's wall-clock count, the upstream's numbers),
    chosen at the switch so that the period starts just after the last one.
    """

    live: bool = False
    live_stream: str = ""
    seq_shift: int = 0
    ds_shift: int = 0
    last_sequence: int = -1
    last_discontinuity: int = -1

    def slate(self, segment_uri: Callable[[int], str], now: float | None = None) -> str:
        """The slate's media playlist for now; `segment_uri(n)` names repeat n."""
        wall = slate_sequence(time.time() if now is None else now)
        switching = self.live or self.last_sequence < 0
        if switching:
            # Back to the slate (or its first time): start right after what was shown.
            self.seq_shift = max(0, self.last_sequence + 1 - (wall - SLATE_WINDOW + 1))
        newest = wall + self.seq_shift
        first = max(0, newest - SLATE_WINDOW + 1)
        if switching:
            # The slate's own discontinuity sequence is its media sequence.
            self.ds_shift = max(0, self.last_discontinuity + 1 - first)
            self.live = False
        text = slate_media_playlist(first, newest - first + 1, segment_uri)
        return self._emit(text, first, first)

    def live_playlist(self, text: str, stream_id: str) -> str:
        """An upstream media playlist (already rewritten) renumbered into the program."""
        upstream_first = _header(text, _MEDIA_SEQUENCE)
        upstream_ds = _header(text, _DISCONTINUITY_SEQUENCE)
        if not self.live or stream_id != self.live_stream:
            self.live, self.live_stream = True, stream_id
            self.seq_shift = self.last_sequence + 1 - upstream_first
            self.ds_shift = self.last_discontinuity + 1 - upstream_ds
        return self._emit(text, upstream_first + self.seq_shift, upstream_ds)

    def _emit(self, text: str, first: int, own_ds: int) -> str:
        discontinuity = own_ds + self.ds_shift
        self.last_sequence = max(self.last_sequence, first + _segments(text) - 1)
        self.last_discontinuity = max(
            self.last_discontinuity, discontinuity + text.count("#EXT-X-DISCONTINUITY\n")
        )
        text = _set_header(text, _MEDIA_SEQUENCE, f"#EXT-X-MEDIA-SEQUENCE:{first}")
        return _set_header(
            text, _DISCONTINUITY_SEQUENCE, f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity}"
        )


def _segments(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("#EXTINF"))


def _set_header(text: str, pattern: re.Pattern[str], line: str) -> str:
    if pattern.search(text):
        return pattern.sub(line, text, count=1)
    head, _, rest = text.partition("\n")
    return f"{head}\n{line}\n{rest}"


def _header(text: str, pattern: re.Pattern[str]) -> int:
    match = pattern.search(text)
    return int(match.group(1)) if match else 0
