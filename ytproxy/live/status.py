"""A channel's status when it is not live, how long it is believed, and what clients get.

Statuses, everywhere they appear: `live`, `upcoming` (with `starts_at`), `ended`,
`offline`, `blocked` (with a reason) and `error` (`STATUSES`). `STATUS_OF_CODE` maps
yt-dlp failures to them; each is believed for `STATUS_TTL` seconds — for an upcoming
live a schedule that tightens near its start (`upcoming_recheck`) — and
`failure_error(record)` is the 503 a JSON client gets for one, with a stable code
(`channel_upcoming`, `channel_ended`, `channel_offline`, `channel_blocked`,
`channel_unavailable`) and a `Retry-After` until the next check.

It records nothing itself: the resolver keeps the records in the cache.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import ServiceUnavailable

# yt-dlp failures that mean "no live now", as channel statuses; any other is `error`.
STATUS_OF_CODE = {
    "live_not_started": "upcoming",
    "channel_not_live": "offline",
    "video_unavailable": "offline",
    "private_video": "offline",
}
# Seconds a status is believed before the channel is asked again (upcoming: see
# `upcoming_recheck`; blocked: the relay's backoff).
STATUS_TTL = {"offline": 30.0, "ended": 120.0, "error": 10.0}
STATUSES = ("live", "upcoming", "ended", "offline", "blocked", "error")


def upcoming_recheck(starts_at: float | None, now: float) -> float:
    """Seconds until an upcoming channel is asked again: rarely while its start is far,
    every few seconds around it (so a player waiting on the slate gets the live within
    ~10 s of its start), and less often once it is late."""
    if starts_at is None:
        return 60.0
    ahead = starts_at - now
    if ahead > 3600:
        return 600.0
    if ahead > 600:
        return min(300.0, ahead / 4)
    if ahead > 60:
        return 30.0
    if ahead > -300:
        return 8.0
    return 30.0


_STATUS_ERRORS = {
    "upcoming": ("The live stream has not started yet", "channel_upcoming"),
    "ended": ("The live stream has ended", "channel_ended"),
    "offline": ("The channel is not live right now", "channel_offline"),
    "blocked": ("YouTube refuses this channel's stream from the server", "channel_blocked"),
}


NOT_LIVE_CODES = frozenset({code for _, code in _STATUS_ERRORS.values()} | {"channel_unavailable"})


def failure_error(failure: dict[str, Any]) -> ServiceUnavailable:
    """The error a client gets for a channel that failed to resolve; never upstream text."""
    status = str(failure.get("status", "error"))
    retry_after = max(1, int(float(failure.get("recheck_at") or 0) - time.time())) or 10
    if status in _STATUS_ERRORS:
        message, code = _STATUS_ERRORS[status]
        return ServiceUnavailable(message, code=code, retry_after=min(retry_after, 600))
    return ServiceUnavailable(
        f"The channel could not be resolved ({failure.get('code', 'extraction_failed')}); "
        "try again shortly",
        code="channel_unavailable",
        retry_after=min(retry_after, 60),
    )
