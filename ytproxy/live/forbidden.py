"""Telling a refused stream from an expired one, and when to stop asking YouTube.

googlevideo answers 403 both when a URL has expired and when it refuses the
playback itself: a missing or rejected PO token, an unsolved `n`, a fetch before
`available_at`, or a URL used from another IP than the one that resolved it. The
second kind shows as "plays 30–40 s, then 403" on a URL whose `expire` is hours
away, and a new resolution rarely cures it. `is_forbidden(status, url)` tells the
two apart by the URL's own expiry.

`ForbiddenLog` keeps, per channel, what the relay did about such refusals, and
`verdict(channel, fetched_at)` says what to do next: `None` to re-resolve (once, for
a fresh PO token), or a block TTL when a re-resolution made for the same reason
less than `REPEAT_WINDOW` ago did not help. The TTL starts at `BLOCK_BASE` and
doubles with each consecutive block up to `BLOCK_CAP`; a resolution that played
for `PLAYED_FOR` seconds before it was refused starts the count again.

It keeps no state across processes (each instance learns on its own) and does not
block anything itself: the relay asks the resolver to (`Resolver.block`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from ..upstream import expiry_of

FORBIDDEN = frozenset({401, 403})
# A 403 on a URL with more than this left before its `expire` is a refusal, not expiry.
FAR_FROM_EXPIRY = 60.0
REPEAT_WINDOW = 60.0
BLOCK_BASE = 30.0
BLOCK_CAP = 600.0
PLAYED_FOR = 120.0
REASON = "upstream_forbidden"


def is_forbidden(status: int, url: str, now: float | None = None) -> bool:
    """A 401/403 on a URL whose `expire` is still far off (a URL without one is
    treated as expired: that is the safe, old behaviour)."""
    if status not in FORBIDDEN:
        return False
    expires = expiry_of(url)
    return expires is not None and expires - (time.time() if now is None else now) > (
        FAR_FROM_EXPIRY
    )


@dataclasses.dataclass
class _Channel:
    refreshed_at: float = float("-inf")  # when the last forbidden-triggered re-resolution began
    handled: float = float("-inf")  # `fetched_at` of the newest resolution acted on
    strikes: int = 0  # consecutive blocks


class ForbiddenLog:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._channels: dict[str, _Channel] = {}

    def verdict(self, channel_id: str, fetched_at: float) -> float | None:
        """A refusal of a URL of the resolution fetched at `fetched_at` (Unix time):
        `None` to re-resolve, else the seconds to hold the channel `blocked`."""
        state = self._channels.setdefault(channel_id, _Channel())
        now = self._clock()
        if fetched_at <= state.handled:
            # Another fetch of a resolution already acted on: it joins that
            # re-resolution (single-flight) or meets the block; it is not a new try.
            return None
        state.handled = fetched_at
        if now - fetched_at >= PLAYED_FOR:
            state.strikes = 0
        if state.strikes == 0 and now - state.refreshed_at > REPEAT_WINDOW:
            state.refreshed_at = now
            return None
        ttl = min(BLOCK_BASE * (1 << min(state.strikes, 10)), BLOCK_CAP)
        state.strikes += 1
        return ttl

    def forget(self, channel_id: str) -> None:
        self._channels.pop(channel_id, None)
