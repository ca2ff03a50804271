"""Sources: a download request reads a small stamp, not the whole record.

Against the embedded cache and a real Redis; two `Sources` on one Redis stand for two
gateway instances. The extractor is never reached here (every record is stored
first), so `Sources` gets none.
"""

from __future__ import annotations

import time
from typing import Any

from ytproxy.cache import Cache, RedisCache
from ytproxy.metrics import Metrics
from ytproxy.sources import Sources, url_key

URL = "https://www.youtube.com/watch?v=abcdefghijk"


def info(title: str) -> dict[str, Any]:
    formats = [
        {"format_id": str(n), "url": f"https://r.example/videoplayback?itag={n}&x={'y' * 900}"}
        for n in range(40)
    ]
    return {"id": "abcdefghijk", "title": title, "formats": formats}


def reads_of(cache: Cache) -> list[str]:
    """Records the keys `cache.get_raw` is asked for, from now on."""
    keys: list[str] = []
    read = cache.get_raw

    async def counted(key: str) -> str | bytes | None:
        keys.append(key)
        return await read(key)

    cache.get_raw = counted  # type: ignore[method-assign]
    return keys


async def test_repeated_loads_read_the_stamp_and_decode_once(cache: Cache) -> None:
    sources = Sources(cache, None, Metrics(), 3600)  # type: ignore[arg-type]
    stored = await sources.store(URL, info("first"))
    reads = reads_of(cache)
    for _ in range(5):
        loaded = await sources.load(URL)
        assert loaded["title"] == "first" and loaded["fetched_at"] == stored["fetched_at"]
    record = f"sources:{url_key(URL)}"
    assert reads.count(record) == 1  # the first load, into the memo
    assert reads.count(f"{record}:at") == 4  # every later one: a few bytes


async def test_a_record_another_instance_stored_is_read_at_once(redis_url: str) -> None:
    first, second = RedisCache(redis_url), RedisCache(redis_url)
    try:
        here = Sources(first, None, Metrics(), 3600)  # type: ignore[arg-type]
        there = Sources(second, None, Metrics(), 3600)  # type: ignore[arg-type]
        await there.store(URL, info("old"))
        assert (await here.load(URL))["title"] == "old"
        time.sleep(0.001)  # a later fetched_at
        await there.store(URL, info("renewed"))
        assert (await here.load(URL))["title"] == "renewed"
    finally:
        await first.close()
        await second.close()


async def test_a_record_without_its_stamp_is_still_found(cache: Cache) -> None:
    sources = Sources(cache, None, Metrics(), 3600)  # type: ignore[arg-type]
    await sources.store(URL, info("first"))
    assert (await sources.load(URL))["title"] == "first"
    await cache.delete(f"sources:{url_key(URL)}:at")  # evicted, or written before stamps
    assert (await sources.load(URL))["title"] == "first"


async def test_a_format_is_found_by_its_id_in_the_record_it_came_from(cache: Cache) -> None:
    sources = Sources(cache, None, Metrics(), 3600)  # type: ignore[arg-type]
    stored = await sources.store(URL, info("first"))
    record = await sources.load(URL)
    fmt = sources.find(record, "39")
    assert fmt is not None and fmt["url"].startswith("https://r.example/videoplayback?itag=39")
    assert fmt["fetched_at"] == stored["fetched_at"]  # how old the URL is
    assert sources.find(record, "40") is None
    assert sources.find(record, "39") is fmt  # from the record's index, not a new walk
    # A record with a format id twice: the first wins, as a walk would find it.
    doubled = {**record, "formats": [*record["formats"], {"format_id": "3", "url": "later"}]}
    assert sources.find(doubled, "3")["url"] == record["formats"][3]["url"]  # type: ignore[index]
    # A newer copy of the record has an index of its own.
    time.sleep(0.001)
    renewed = await sources.store(URL, info("renewed"))
    newer = sources.find(await sources.load(URL), "39")
    assert newer is not None and newer is not fmt
    assert newer["fetched_at"] == renewed["fetched_at"] > fmt["fetched_at"]
