"""Shared pytest fixtures.

Offline upstream and Redis (this first section):

- `media` (session): the ffmpeg-made test media (`tests.origin.media.Media`), generated
  once per session into a temporary directory.
- `_origin_server` (session): the one `tests.origin.Origin` serving that media from a
  background thread; started once, stopped at the end of the session.
- `origin` (function): the same server, `reset()` before and after each test, so every
  test starts with no faults, zeroed counters, no offline streams, fresh live clocks and
  the default URL lifetime. Use this one; `_origin_server` is for session-scoped fixtures.
- `redis_server` (session): one real `redis-server` (`tests.redis_server.RedisServer`).
- `redis_url` (function): its URL, with every database flushed (and the server started
  again if an earlier test stopped it) before the test.
- `cache` (function, parametrised): each cache backend in turn, the embedded one and a
  `RedisCache` on that server (`test_cache`, `test_sources`).

Async tests need no marker: the project runs pytest-asyncio with `asyncio_mode = "auto"`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.origin import Media, Origin, generate_media
from tests.redis_server import RedisServer
from ytproxy.cache import Cache, MemoryCache, RedisCache


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return generate_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def _origin_server(media: Media) -> Iterator[Origin]:
    with Origin(media) as server:
        yield server


@pytest.fixture
def origin(_origin_server: Origin) -> Iterator[Origin]:
    _origin_server.reset()
    yield _origin_server
    _origin_server.reset()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["embedded", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    """Each cache backend in turn: the embedded one and a real Redis."""
    if request.param == "embedded":
        backend: Cache = MemoryCache()
    else:
        backend = RedisCache(request.getfixturevalue("redis_url"))
    yield backend
    await backend.close()
