"""Who is watching: viewers per channel, and the `MAX_CONCURRENT_STREAMS` limit.

A viewer is a client (IP address and User-Agent) that fetched a channel's playlist
or segments in the last `window` seconds (30 by default): players poll every few
seconds, so one that stops polling has stopped watching. Each (channel, client)
pair is one stream, what the `active_streams` gauge shows. A new stream over the
limit is refused with `503 too_many_viewers`, except for a client that is already
watching something (it is most likely switching channels, and its old stream will
lapse within the window).

The count is per instance: behind a load balancer each instance enforces its own
share. It does not authenticate anyone; `access.py` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import ServiceUnavailable
from ..metrics import Metrics

WINDOW = 30.0
_PRUNE_INTERVAL = 1.0


class Viewers:
    def __init__(
        self,
        limit: int,
        metrics: Metrics,
        *,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._metrics = metrics
        self._clock = clock
        self._seen: dict[str, dict[str, float]] = {}
        self._pruned = 0.0

    def touch(self, channel_id: str, client: str) -> bool:
        """Record that `client` is watching `channel_id`; True for a new stream.

        Raises `ServiceUnavailable(too_many_viewers)` for a new client over the limit.
        """
        now = self._clock()
        self._prune(now)
        watchers = self._seen.setdefault(channel_id, {})
        new = client not in watchers
        if new and self.total >= self.limit and not self._watching_anything(client):
            if not watchers:
                del self._seen[channel_id]
            raise ServiceUnavailable(
                f"Too many viewers: the gateway serves {self.limit} streams at a time",
                code="too_many_viewers",
                retry_after=int(self.window),
            )
        watchers[client] = now
        if new:
            self._publish(channel_id)
        return new

    def _watching_anything(self, client: str) -> bool:
        return any(client in watchers for watchers in self._seen.values())

    @property
    def total(self) -> int:
        return sum(len(w) for w in self._seen.values())

    def count(self, channel_id: str) -> int:
        self._prune(self._clock())
        return len(self._seen.get(channel_id, ()))

    def counts(self) -> dict[str, int]:
        self._prune(self._clock())
        return {channel: len(w) for channel, w in self._seen.items()}

    def _prune(self, now: float, force: bool = False) -> None:
        if not force and now - self._pruned < _PRUNE_INTERVAL:
            return
        self._pruned = now
        horizon = now - self.window
        for channel_id in list(self._seen):
            watchers = self._seen[channel_id]
            stale = [client for client, seen in watchers.items() if seen < horizon]
            for client in stale:
                del watchers[client]
            if stale:
                self._publish(channel_id)
            if not watchers:
                del self._seen[channel_id]

    def _publish(self, channel_id: str) -> None:
        viewers = len(self._seen.get(channel_id, ()))
        self._metrics.labelled(self._metrics.channel_viewers, channel_id).set(viewers)
        self._metrics.active_streams.set(self.total)

    def forget(self) -> None:
        for channel_id in list(self._seen):
            self._seen[channel_id].clear()
            self._publish(channel_id)
        self._seen.clear()
