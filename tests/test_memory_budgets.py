"""Memory bounds: the embedded cache's byte budget (`CACHE_MAX_BYTES`) and the cap on
one live segment being fetched (`SEGMENT_MAX_BYTES`).

The cache is driven directly, with a clock the test moves. The segment cap is tested
on the shared fetch with producers that feed it by hand, and end to end through the
real app relaying the local origin's live channel with a cap smaller than its segments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Origin
from tests.test_live_relay import uri_lines, write_channels
from ytproxy.cache import MemoryCache
from ytproxy.live.fanout import Fetch, SegmentBuffer
from ytproxy.metrics import Metrics
from ytproxy.settings import Settings
from ytproxy.upstream import BodyTooLarge


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stored_size(key: str, value: object) -> int:
    """What the cache counts for an entry: key and JSON text in UTF-8, plus overhead."""
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(key.encode()) + len(raw.encode()) + MemoryCache.ENTRY_OVERHEAD


async def test_embedded_cache_stays_within_its_byte_budget_under_a_flood_of_keys() -> None:
    budget = 256 * 1024
    cache = MemoryCache(budget, clock=Clock())
    written: dict[str, object] = {}
    for i in range(5000):
        key = f"flood:{i}"
        value = {"n": i, "text": "é" * (i % 700)}  # multi-byte text: bytes, not characters
        written[key] = value
        await cache.set(key, value, ttl=3600 + i)
        assert cache.size <= budget
    kept = {k: v for k, v in written.items() if await cache.get(k) is not None}
    assert 0 < len(kept) == len(cache) < len(written)
    assert sum(stored_size(k, v) for k, v in kept.items()) == cache.size <= budget
    # The entries closest to expiry went first: what is left is the latest written.
    assert f"flood:{len(written) - 1}" in kept
    assert min(int(k.split(":")[1]) for k in kept) > max(
        int(k.split(":")[1]) for k in written if k not in kept
    )
    await cache.close()


async def test_embedded_cache_sweeps_expired_entries_on_writes_without_reads() -> None:
    clock = Clock()
    cache = MemoryCache(1024 * 1024, clock=clock)
    for i in range(1000):
        await cache.set(f"short:{i}", {"i": i}, ttl=10)
    await cache.set("long", "kept", ttl=3600)
    assert len(cache) == 1001
    clock.now += 11
    await cache.set("after", 1, ttl=60)  # a write, and no read of the expired keys
    assert len(cache) == 2
    assert cache.size == stored_size("long", "kept") + stored_size("after", 1)
    assert await cache.get("long") == "kept"


async def test_embedded_cache_overwrites_counters_and_deletes_keep_the_byte_count_exact() -> None:
    clock = Clock()
    cache = MemoryCache(1024 * 1024, clock=clock)
    for _ in range(3):
        await cache.set("k", "x" * 100, ttl=60)
    await cache.set("k", "short", ttl=60)
    for _ in range(12):
        await cache.incr("counter", ttl=60)
    assert await cache.add("flag", True, ttl=60)
    assert not await cache.add("flag", False, ttl=60)
    assert cache.size == stored_size("k", "short") + stored_size("counter", 12) + stored_size(
        "flag", True
    )
    await cache.delete("k")
    clock.now += 61
    assert await cache.get("counter") is None  # an expired read drops it too
    assert cache.size == stored_size("flag", True)


async def test_embedded_cache_does_not_keep_a_value_bigger_than_its_budget() -> None:
    cache = MemoryCache(4096, clock=Clock())
    await cache.set("small", 1, ttl=60)
    await cache.set("big", "x" * 5000, ttl=60)
    await cache.set("small", "y" * 5000, ttl=60)  # replacing with a too-big value unsets it
    assert await cache.get("big") is None
    assert await cache.get("small") is None
    assert cache.size == 0 and len(cache) == 0


async def test_the_expiry_heap_does_not_grow_with_overwrites_of_one_key() -> None:
    cache = MemoryCache(1024 * 1024, clock=Clock())
    for i in range(20000):
        await cache.set("task", {"progress": i % 100}, ttl=3600)
    assert len(cache) == 1
    assert len(cache._expiries) <= 2 * len(cache) + 1024


async def test_a_segment_growing_past_the_cap_is_refused_and_nothing_stays_buffered() -> None:
    metrics = Metrics()
    buffer = SegmentBuffer(limit_bytes=10_000_000, metrics=metrics, max_fetch_bytes=1000)
    fed: list[int] = []

    async def produce(fetch: Fetch) -> None:
        fetch.start("video/mp2t", None)  # chunked: the size is not announced
        for _ in range(100):
            fetch.feed(b"x" * 300)
            fed.append(300)
            await asyncio.sleep(0)  # let the readers have what has arrived

    fetch, _ = buffer.get("big", produce)
    await fetch.ready()
    got: list[bytes] = []
    with pytest.raises(BodyTooLarge) as caught:
        async for chunk in fetch.chunks(256):
            got.append(chunk)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_too_large"
    assert sum(fed) == 900  # the fourth piece, which passed the cap, was never appended
    assert len(b"".join(got)) <= 1000
    assert len(buffer) == 0 and buffer.size == 0 and len(fetch.data) == 0
    assert metrics.registry.get_sample_value("live_segment_buffer_bytes") == 0
    late = [chunk async for chunk in _chunks_or_error(fetch)]
    assert late == ["error"]  # a viewer who comes late gets the error, not a partial body
    await buffer.close()


async def _chunks_or_error(fetch: Fetch):  # type: ignore[no-untyped-def]
    try:
        async for chunk in fetch.chunks(256):
            yield chunk
    except BodyTooLarge:
        yield "error"


async def test_a_segment_announced_too_large_is_refused_before_the_answer() -> None:
    buffer = SegmentBuffer(limit_bytes=10_000_000, metrics=Metrics(), max_fetch_bytes=1000)

    async def produce(fetch: Fetch) -> None:
        fetch.start("video/mp2t", 1001)
        fetch.feed(b"x" * 1001)

    fetch, _ = buffer.get("announced", produce)
    with pytest.raises(BodyTooLarge):
        await fetch.ready()
    assert not fetch.answered
    assert len(buffer) == 0 and buffer.size == 0
    await buffer.close()


async def test_a_segment_exactly_at_the_cap_is_relayed() -> None:
    buffer = SegmentBuffer(limit_bytes=10_000_000, metrics=Metrics(), max_fetch_bytes=1000)

    async def produce(fetch: Fetch) -> None:
        fetch.start("video/mp2t", 1000)
        fetch.feed(b"x" * 600)
        fetch.feed(b"x" * 400)

    fetch, _ = buffer.get("exact", produce)
    await fetch.ready()
    assert b"".join([c async for c in fetch.chunks(256)]) == b"x" * 1000
    await buffer.close()


def test_the_relay_refuses_an_origin_segment_bigger_than_segment_max_bytes(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
) -> None:
    write_channels(channels_file, origin, "news")
    server = app_server(settings, segment_max_bytes=1000)  # the origin's segments are bigger
    with httpx.Client(timeout=20) as client:
        variants = uri_lines(client.get(server.url("/live/news.m3u8")).text)
        segments = uri_lines(client.get(variants[0]).text)
        response = client.get(segments[-1])
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_too_large"

    async def buffered() -> tuple[int, int]:
        relay = server.live.relay
        return len(relay.buffer), relay.buffer.size

    assert server.call(buffered) == (0, 0)
