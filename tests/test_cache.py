"""The cache contract: the same tests against the embedded backend and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from ytproxy.cache import Cache, RedisCache
from ytproxy.errors import ExtractionError, YtproxyError


@pytest.fixture
async def redis_cache(redis_url: str) -> AsyncIterator[Callable[[], RedisCache]]:
    """Opens RedisCache instances on the test's Redis (another app instance each) and
    closes them after the test."""
    opened: list[RedisCache] = []

    def open_one() -> RedisCache:
        opened.append(RedisCache(redis_url))
        return opened[-1]

    yield open_one
    for cache in opened:
        await cache.close()


async def test_get_of_a_missing_key_is_none(cache: Cache) -> None:
    assert await cache.get("nothing-here") is None


async def test_set_then_get_round_trips_json_values(cache: Cache) -> None:
    value = {"title": "直播 live", "formats": [1, 2.5, None, True], "nested": {"a": "b"}}
    await cache.set("k", value, ttl=60)
    assert await cache.get("k") == value


async def test_values_expire_after_their_ttl(cache: Cache) -> None:
    await cache.set("short", "v", ttl=0.2)
    assert await cache.get("short") == "v"
    await asyncio.sleep(0.35)
    assert await cache.get("short") is None


async def test_delete_removes_a_key(cache: Cache) -> None:
    await cache.set("k", 1, ttl=60)
    await cache.delete("k")
    assert await cache.get("k") is None


async def test_add_sets_only_when_absent(cache: Cache) -> None:
    assert await cache.add("once", "first", ttl=60) is True
    assert await cache.add("once", "second", ttl=60) is False
    assert await cache.get("once") == "first"


async def test_incr_counts_and_expires(cache: Cache) -> None:
    assert [await cache.incr("n", ttl=0.3) for _ in range(3)] == [1, 2, 3]
    await asyncio.sleep(0.45)
    assert await cache.incr("n", ttl=0.3) == 1


async def test_status_reports_backend_and_connection(cache: Cache) -> None:
    status = await cache.status()
    assert status["connected"] is True
    assert status["backend"] == cache.backend


async def test_fifty_concurrent_single_flight_callers_run_the_producer_once(cache: Cache) -> None:
    calls = 0

    async def produce() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return {"answer": 42}

    results = await asyncio.gather(*(cache.single_flight("sf", produce) for _ in range(50)))
    assert calls == 1
    assert results == [{"answer": 42}] * 50


async def test_single_flight_shares_the_producers_error_with_every_caller(cache: Cache) -> None:
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        raise ExtractionError("gone", code="video_unavailable")

    results = await asyncio.gather(
        *(cache.single_flight("bad", fail) for _ in range(20)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, YtproxyError) and r.code == "video_unavailable" for r in results)


async def test_a_later_single_flight_runs_again(cache: Cache) -> None:
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await cache.single_flight("again", produce) == 1
    assert await cache.single_flight("again", produce) == 2


async def test_a_cancelled_caller_does_not_cancel_the_flight_for_others(cache: Cache) -> None:
    async def produce() -> str:
        await asyncio.sleep(0.3)
        return "done"

    first = asyncio.create_task(cache.single_flight("shared", produce))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(cache.single_flight("shared", produce))
    await asyncio.sleep(0.05)
    first.cancel()
    assert await second == "done"


async def test_two_instances_sharing_redis_run_the_producer_once_in_total(redis_cache) -> None:
    a, b = redis_cache(), redis_cache()
    calls = 0

    async def produce() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.5)
        return "resolved"

    results = await asyncio.gather(
        *(a.single_flight("chan", produce) for _ in range(25)),
        *(b.single_flight("chan", produce) for _ in range(25)),
    )
    assert calls == 1
    assert results == ["resolved"] * 50


async def test_an_error_crosses_instances_with_its_code(redis_cache) -> None:
    a, b = redis_cache(), redis_cache()

    async def fail() -> str:
        await asyncio.sleep(0.3)
        raise ExtractionError("not live", code="live_not_started")

    leader = asyncio.create_task(a.single_flight("k", fail))
    await asyncio.sleep(0.1)
    with pytest.raises(YtproxyError) as caught:
        await b.single_flight("k", fail)
    with pytest.raises(YtproxyError):
        await leader
    assert caught.value.code == "live_not_started"


async def test_a_lock_whose_holder_died_expires_and_another_instance_takes_over(
    redis_cache,
) -> None:
    dead, alive = redis_cache(), redis_cache()
    # A holder that took the lock and vanished without releasing it.
    await dead._redis.set("ytproxy:flight:orphan", "someone-gone", px=400)

    async def produce() -> str:
        return "recovered"

    result = await asyncio.wait_for(alive.single_flight("orphan", produce), timeout=5)
    assert result == "recovered"


async def test_redis_cache_serves_locally_while_redis_is_down_and_recovers(
    redis_server, redis_cache
) -> None:
    cache = redis_cache()
    await cache.set("before", 1, ttl=60)
    redis_server.stop()
    assert (await cache.status())["connected"] is False
    await cache.set("during", 2, ttl=60)
    assert await cache.get("during") == 2
    calls = 0

    async def produce() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return "ok"

    assert (
        await asyncio.gather(*(cache.single_flight("x", produce) for _ in range(5))) == ["ok"] * 5
    )
    assert calls == 1
    redis_server.start()
    await asyncio.sleep(cache.retry_interval + 0.1)
    assert (await cache.status())["connected"] is True
    await cache.set("after", 3, ttl=60)
    assert await cache.get("after") == 3
    assert await cache._redis.get("ytproxy:after") == "3"


async def test_a_burst_of_concurrent_calls_waits_for_connections_instead_of_degrading(
    redis_cache,
) -> None:
    cache = redis_cache()
    await asyncio.gather(*(cache.set(f"k{i}", i, ttl=60) for i in range(400)))
    values = await asyncio.gather(*(cache.get(f"k{i}") for i in range(400)))
    assert values == list(range(400))
    assert cache.available, "a burst must not look like Redis being down"
    assert await cache._redis.get("ytproxy:k399") == "399"
