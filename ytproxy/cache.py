"""The shared cache: JSON values with a TTL, and single-flight, on Redis or in process.

`Cache` is the one interface; `open_cache(settings)` picks the backend:

- `MemoryCache`, the embedded default when `REDIS_URL` is unset: a dict in this
  process, bounded in bytes (`CACHE_MAX_BYTES`). Single-flight is an `asyncio.Future`
  per key.
- `RedisCache`, when `REDIS_URL` is set: the state several instances share. Single-
  flight runs in two layers: callers in this process share one future, and the one
  caller that goes on takes a Redis lock (`SET NX PX` with a unique token, refreshed
  while the producer runs, released only by its holder, expiring if the holder dies).
  Callers on other instances wait for the holder's result, which it publishes under
  its token for a short while.

When Redis is unreachable, `RedisCache` keeps serving from a local `MemoryCache`
(work is done without the shared state, and single-flight is per instance), reports
itself degraded, and goes back to Redis by itself once it answers again. Values
written during an outage stay local; nothing is replayed into Redis.

Values must be JSON-serialisable: this module stores JSON, never pickles.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import heapq
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .errors import UpstreamError, YtproxyError
from .flights import Flights

log = logging.getLogger(__name__)

T = TypeVar("T")
Producer = Callable[[], Awaitable[T]]

_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_EXTEND = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)


class Cache(abc.ABC):
    """The cache interface. Keys are strings; values are JSON-serialisable."""

    backend = "abstract"

    def __init__(self) -> None:
        self._flights = Flights()

    async def get(self, key: str) -> Any | None:
        raw = await self.get_raw(key)
        return None if raw is None else json.loads(raw)

    @abc.abstractmethod
    async def get_raw(self, key: str) -> str | bytes | None:
        """The stored JSON text, undecoded (for callers that keep what they decoded)."""

    @abc.abstractmethod
    async def set(self, key: str, value: Any, ttl: float) -> None: ...

    @abc.abstractmethod
    async def add(self, key: str, value: Any, ttl: float) -> bool:
        """Set only if the key is absent; True when this call set it."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    async def incr(self, key: str, ttl: float) -> int:
        """Increment a counter; the TTL starts with the first increment."""

    @abc.abstractmethod
    async def status(self) -> dict[str, Any]:
        """`{"backend": ..., "connected": bool}` for /health."""

    async def close(self) -> None:
        await self._flights.close()

    async def single_flight(self, key: str, producer: Producer[T], *, lock_ttl: float = 60.0) -> T:
        """Run `producer` once for all concurrent callers of `key`; share its result or error.

        Only callers that arrive while a flight is under way share it: a caller that
        comes after it ended starts a new one. (This is not a cache; store the
        result yourself if you want it kept.) The flight runs in its own task, so a
        caller that goes away (a client disconnecting) does not cancel it for the others.
        """
        return await self._flights.run(key, lambda: self._lead_flight(key, producer, lock_ttl))

    async def _lead_flight(self, key: str, producer: Producer[T], lock_ttl: float) -> T:
        return await producer()


class MemoryCache(Cache):
    """The embedded backend: JSON strings with expiry times, bounded in bytes.

    An entry's size is its key and its JSON text in UTF-8 plus a fixed allowance for
    the Python objects that hold them (`ENTRY_OVERHEAD`), so a flood of tiny entries
    is bounded too. Expired entries are swept on every write (each one is found once,
    in order of expiry, from a heap), so they do not pile up even when nothing reads
    them. When a write takes the total past `max_bytes`, the live entries closest to
    expiry go first: they are the ones that would be gone soonest anyway, and
    long-lived results (analyses, resolutions) stay. A value bigger than the whole
    budget is not stored (the key is left unset).
    """

    backend = "embedded"
    ENTRY_OVERHEAD = 200

    def __init__(
        self,
        max_bytes: int = 128 * 1024 * 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.size = 0
        self._clock = clock
        self._data: dict[str, tuple[float, str, int]] = {}  # key -> (expires, raw, size)
        # (expires, key) of every stored entry, plus stale pairs of overwritten or
        # deleted ones, which are skipped when they surface and compacted away.
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, raw, _ = item
        if expires <= self._clock():
            self._drop(key)
            return None
        return raw

    def _store(self, key: str, raw: str, ttl: float) -> None:
        self._drop(key)
        size = _entry_size(key, raw)
        if size > self.max_bytes:
            kind = key.split(":", 1)[0]  # keys can name clients; their kind is enough
            log.warning(
                "a %s cache value of %d bytes exceeds CACHE_MAX_BYTES: not kept", kind, size
            )
            return
        expires = self._clock() + ttl
        self._data[key] = (expires, raw, size)
        self.size += size
        heapq.heappush(self._expiries, (expires, key))
        self._shrink()

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self.size -= item[2]

    def _shrink(self) -> None:
        """Sweep what has expired, then evict the soonest to expire until within budget."""
        now = self._clock()
        while self._expiries and (self._expiries[0][0] <= now or self.size > self.max_bytes):
            expires, key = heapq.heappop(self._expiries)
            item = self._data.get(key)
            if item is not None and item[0] == expires:
                self._drop(key)
        if len(self._expiries) > 2 * len(self._data) + 1024:
            self._expiries = [(item[0], key) for key, item in self._data.items()]
            heapq.heapify(self._expiries)

    async def get_raw(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: Any, ttl: float) -> None:
        self._store(key, _dumps(value), ttl)

    async def add(self, key: str, value: Any, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._store(key, _dumps(value), ttl)
        return True

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def incr(self, key: str, ttl: float) -> int:
        raw = self._live(key)
        if raw is None:
            self._store(key, "1", ttl)
            return 1
        expires, _, old_size = self._data[key]
        value = int(json.loads(raw)) + 1
        text = str(value)
        size = _entry_size(key, text)
        self._data[key] = (expires, text, size)
        self.size += size - old_size
        return value

    async def status(self) -> dict[str, Any]:
        return {"backend": "embedded", "connected": True}


class RedisCache(Cache):
    """The shared backend, degrading to a local `MemoryCache` while Redis is away."""

    backend = "redis"
    prefix = "ytproxy:"
    retry_interval = 1.0
    result_ttl_ms = 60_000

    def __init__(self, url: str, local_max_bytes: int = 128 * 1024 * 1024) -> None:
        super().__init__()
        # A blocking pool: under a burst, callers wait for a connection instead of getting
        # "Too many connections", which would look like Redis being down.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=256,
            timeout=5,
            socket_connect_timeout=1.0,
            socket_timeout=5.0,
            health_check_interval=5,
            decode_responses=True,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._local = MemoryCache(local_max_bytes)
        self._down_until = 0.0
        self._was_down = False

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        if not self._was_down:
            log.warning("Redis unreachable, serving from the local cache: %s", exc)
        self._was_down = True
        self._down_until = time.monotonic() + self.retry_interval

    def _recovered(self) -> None:
        if self._was_down:
            log.warning("Redis is reachable again")
        self._was_down = False

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        """Run a Redis command; (False, None) when Redis is unavailable."""
        if not self.available:
            return False, None
        try:
            result = await fn()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False, None
        self._recovered()
        return True, result

    async def get_raw(self, key: str) -> str | bytes | None:
        ok, raw = await self._call(lambda: self._redis.get(self.prefix + key))
        if ok and raw is not None:
            return raw
        # Values written during an outage live on locally until they expire.
        return await self._local.get_raw(key)

    async def set(self, key: str, value: Any, ttl: float) -> None:
        raw = _dumps(value)
        ok, _ = await self._call(lambda: self._redis.set(self.prefix + key, raw, px=_ms(ttl)))
        if not ok:
            await self._local.set(key, value, ttl)

    async def add(self, key: str, value: Any, ttl: float) -> bool:
        raw = _dumps(value)
        ok, done = await self._call(
            lambda: self._redis.set(self.prefix + key, raw, px=_ms(ttl), nx=True)
        )
        if ok:
            return bool(done)
        return await self._local.add(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._local.delete(key)
        await self._call(lambda: self._redis.delete(self.prefix + key))

    async def incr(self, key: str, ttl: float) -> int:
        async def command() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self.prefix + key)
                pipe.pexpire(self.prefix + key, _ms(ttl), nx=True)
                value, _ = await pipe.execute()
            return int(value)

        ok, value = await self._call(command)
        if ok and value is not None:
            return value
        return await self._local.incr(key, ttl)

    async def status(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self._redis.ping(), timeout=2.0)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return {"backend": "redis", "connected": False, "error": type(exc).__name__}
        self._down_until = 0.0
        self._recovered()
        return {"backend": "redis", "connected": True}

    async def close(self) -> None:
        await super().close()
        await self._redis.aclose()

    async def _lead_flight(self, key: str, producer: Producer[T], lock_ttl: float) -> T:
        lock_key = f"{self.prefix}flight:{key}"
        token = secrets.token_hex(16)
        deadline = time.monotonic() + max(lock_ttl * 5, 300.0)
        delay = 0.02
        while True:
            ok, acquired = await self._call(
                lambda: self._redis.set(lock_key, token, px=_ms(lock_ttl), nx=True)
            )
            if not ok:
                return await producer()  # Redis away: this instance decides alone.
            if acquired:
                return await self._run_holding(lock_key, token, producer, lock_ttl)
            ok, holder = await self._call(lambda: self._redis.get(lock_key))
            if not ok:
                return await producer()
            if holder is None:
                continue  # released between our two calls: try to take it
            outcome = await self._wait_for(lock_key, str(holder), deadline)
            if outcome is not None:
                if "error" in outcome:
                    raise YtproxyError.from_dict(outcome["error"], outcome.get("status"))
                return outcome["value"]  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise UpstreamError(
                    "Timed out waiting for another instance", code="upstream_timeout", status=504
                )
            await asyncio.sleep(delay)

    async def _run_holding(
        self, lock_key: str, token: str, producer: Producer[T], lock_ttl: float
    ) -> T:
        result_key = f"{self.prefix}flight-result:{token}"
        keeper = asyncio.create_task(self._keep_lock(lock_key, token, lock_ttl))
        try:
            value = await producer()
        except YtproxyError as exc:
            outcome: dict[str, Any] = {"error": exc.to_dict(), "status": exc.status_code}
            await self._publish(result_key, outcome)
            raise
        except Exception:
            generic = YtproxyError("Internal error while producing a shared result")
            await self._publish(result_key, {"error": generic.to_dict(), "status": 500})
            raise
        else:
            await self._publish(result_key, {"value": value})
            return value
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self._call(lambda: self._redis.eval(_RELEASE, 1, lock_key, token))

    async def _publish(self, result_key: str, outcome: dict[str, Any]) -> None:
        raw = _dumps(outcome)
        await self._call(lambda: self._redis.set(result_key, raw, px=self.result_ttl_ms))

    async def _keep_lock(self, lock_key: str, token: str, lock_ttl: float) -> None:
        while True:
            await asyncio.sleep(lock_ttl / 3)
            await self._call(lambda: self._redis.eval(_EXTEND, 1, lock_key, token, _ms(lock_ttl)))

    async def _wait_for(self, lock_key: str, holder: str, deadline: float) -> dict[str, Any] | None:
        """Wait for the holder's published outcome; None if the lock changed hands without one."""
        result_key = f"{self.prefix}flight-result:{holder}"
        delay = 0.01
        while time.monotonic() < deadline:
            ok, raw = await self._call(lambda: self._redis.get(result_key))
            if not ok:
                return None
            if raw is not None:
                return json.loads(raw)  # type: ignore[no-any-return]
            ok, current = await self._call(lambda: self._redis.get(lock_key))
            if not ok or current != holder:
                # Released (check the result once more: it is published first) or expired.
                ok, raw = await self._call(lambda: self._redis.get(result_key))
                return json.loads(raw) if ok and raw is not None else None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return None


def open_cache(redis_url: str | None, max_bytes: int = 128 * 1024 * 1024) -> Cache:
    """Redis when `redis_url` is set, else the embedded cache; `max_bytes` bounds the
    in-process memory either way (the embedded cache, or Redis's local fallback)."""
    return RedisCache(redis_url, max_bytes) if redis_url else MemoryCache(max_bytes)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _entry_size(key: str, raw: str) -> int:
    return len(key.encode()) + len(raw.encode()) + MemoryCache.ENTRY_OVERHEAD


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
