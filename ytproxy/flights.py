"""In-process single-flight: concurrent callers of one key share one run.

The run is a task of its own, so a caller that goes away (a client disconnecting)
does not cancel it for the others; a caller that comes after it ended starts a new
one. Used by the cache (the in-process layer of `Cache.single_flight`), the live relay
(media playlists) and the analyse runner (submissions of one URL); `start()` runs one in
the background without waiting (the guide's warm-up, the listings of multi-live
channels).

It shares nothing across processes; `cache.RedisCache` adds that layer on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Flights:
    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, producer: Callable[[], Awaitable[T]]) -> T:
        flight = self._running.get(key) or self._launch(key, producer)
        result: T = await asyncio.shield(flight)
        return result

    def start(self, key: Hashable, producer: Callable[[], Awaitable[Any]]) -> bool:
        """Start a run of `key` in the background unless one is under way; whether it did.
        Its outcome is dropped: a background producer handles its own errors."""
        if key in self._running:
            return False
        self._launch(key, producer)
        return True

    def __contains__(self, key: Hashable) -> bool:
        return key in self._running

    def __len__(self) -> int:
        return len(self._running)

    def _launch(self, key: Hashable, producer: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        flight = asyncio.ensure_future(producer())
        self._running[key] = flight
        flight.add_done_callback(lambda done: self._forget(key, done))
        return flight

    def _forget(self, key: Hashable, flight: asyncio.Future[Any]) -> None:
        if self._running.get(key) is flight:
            del self._running[key]
        if not flight.cancelled():
            flight.exception()  # retrieved, so an error nobody awaited is not reported

    async def wait(self) -> None:
        """Let the runs under way finish."""
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the runs under way."""
        flights = list(self._running.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)
