"""Where a video's bytes are: the upstream URLs of its formats, kept private.

An analysis stores two things under the hash of the normalised URL: the public
result (what clients see, `ytproxy.analyse`) and, here, the *sources*: for each
format its upstream URL, headers, protocol and size, and for each subtitle track the
WebVTT URL it is served from (`captions.track_sources`). Sources never leave the server;
the download relay reads them to fetch bytes, and calls `Sources.load(...,
newer_than=...)` when the upstream says the URLs expired, which re-extracts once
(single-flight) for everybody downloading that video.

A download reads the sources on every request (a link, each ranged piece a player asks
for, each merge input), and a YouTube video's record is tens of kilobytes of JSON. So
the record is stored with a *stamp* beside it (`sources:<key>:at`, its `fetched_at`),
and `Sources` keeps the records it decoded last (`_MEMO` of them): a request reads the
few bytes of the stamp, and the record itself (from Redis, and through `json.loads`)
only when the stamp says it changed (another instance or an analysis stored a newer
one) or is missing. A format is found by its id in an index of the record's formats
(`Sources.find`, built once per record: a YouTube video has dozens), not by walking
them. Records and formats handed out are shared: callers read them and never change
them.

`Sources(cache, extractor, metrics, ttl)` is built once in the lifespan and shared by
the analyse job (which stores) and the download job (which loads); `source_store(request)`
is its typed accessor. This module does not classify formats or decide what clients see.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import HTTPConnection

from .cache import Cache
from .captions import track_sources
from .extractor import Extractor
from .metrics import Metrics

# Tracking parameters that do not change which video a URL names.
_DROP_PARAMS = frozenset(
    {"si", "feature", "pp", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"}
)
# Decoded records kept, most recently used last.
_MEMO = 64
_SOURCE_FIELDS = (
    "format_id",
    "url",
    "manifest_url",
    "protocol",
    "ext",
    "vcodec",
    "acodec",
    "width",
    "height",
    "fps",
    "tbr",
    "filesize",
    "filesize_approx",
    "http_headers",
    "downloader_options",
    "fragment_base_url",
    "fragments",
    "container",
    "language",
)


def normalise_url(url: str) -> str:
    """A canonical form: lower-case scheme and host, no fragment, no tracking params."""
    parts = urlsplit(url.strip())
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _DROP_PARAMS
    ]
    netloc = parts.netloc.lower()
    if netloc.startswith("youtube.com") or netloc.startswith("m.youtube.com"):
        netloc = "www.youtube.com"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", urlencode(query), ""))


@functools.lru_cache(maxsize=4096)  # every download request asks for its video's key
def url_key(url: str) -> str:
    """The cache key of a URL: a hash of its normalised form."""
    return hashlib.sha256(normalise_url(url).encode()).hexdigest()[:32]


def strip_info(info: dict[str, Any]) -> dict[str, Any]:
    """The private part of an info dict that the relay needs, and nothing else."""
    formats = []
    for fmt in info.get("formats") or []:
        formats.append({k: fmt[k] for k in _SOURCE_FIELDS if fmt.get(k) is not None})
    return {
        "id": info.get("id"),
        "title": info.get("title") or info.get("id") or "video",
        "duration": info.get("duration"),
        "is_live": bool(info.get("is_live")),
        "formats": formats,
        "subtitles": track_sources(info),
        "fetched_at": time.time(),
    }


class Sources:
    """The private sources of each video, in the cache for `ttl` seconds."""

    def __init__(self, cache: Cache, extractor: Extractor, metrics: Metrics, ttl: float) -> None:
        self._cache = cache
        self._extractor = extractor
        self._metrics = metrics
        self._ttl = ttl
        # key -> (the record's stamp, the decoded record), most recently used last.
        self._decoded: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        # id(record) -> (the record, its formats by id), most recently used last; the
        # record is held, so its id is not reused while its index is here.
        self._indexes: OrderedDict[int, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()

    async def store(self, url: str, info: dict[str, Any]) -> dict[str, Any]:
        sources = strip_info(info)
        key = f"sources:{url_key(url)}"
        await self._cache.set(key, sources, self._ttl)
        # The stamp last: a reader that sees it finds the record it stamps (or a newer).
        await self._cache.set(f"{key}:at", sources["fetched_at"], self._ttl)
        return sources

    async def load(self, url: str, *, newer_than: float | None = None) -> dict[str, Any]:
        """The sources of `url`, from the cache or a fresh extraction (shared by all callers).

        `newer_than` is for a caller whose URLs the upstream refused: a cached copy fetched
        at or before that time holds the same dead URLs and is replaced, while a copy that
        another caller refreshed since is reused.
        """
        key = f"sources:{url_key(url)}"
        cached = await self._cached(key)
        if cached is not None and (newer_than is None or cached.get("fetched_at", 0) > newer_than):
            self._metrics.cache_hits.labels("sources").inc()
            return cached
        self._metrics.labelled(self._metrics.cache_misses, "sources").inc()

        async def produce() -> dict[str, Any]:
            info = await self._extractor.extract(url, lane="analyse")
            return await self.store(url, info)

        result: dict[str, Any] = await self._cache.single_flight(key, produce)
        return result

    async def _cached(self, key: str) -> dict[str, Any] | None:
        """The cached record: the one decoded before while its stamp is unchanged."""
        memo = self._decoded.get(key)
        if memo is not None:
            stamp = await self._cache.get_raw(f"{key}:at")
            if stamp is not None and float(stamp) == memo[0]:
                self._decoded.move_to_end(key)
                return memo[1]
        raw = await self._cache.get_raw(key)
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        self._decoded[key] = (float(record.get("fetched_at") or 0), record)
        self._decoded.move_to_end(key)
        if len(self._decoded) > _MEMO:
            self._decoded.popitem(last=False)
        return record

    def find(self, sources: dict[str, Any], format_id: str) -> dict[str, Any] | None:
        """The format `format_id` of `sources` (a record this store handed out), with the
        `fetched_at` of the copy it came from; from an index of the record's formats
        built at its first use."""
        entry = self._indexes.get(id(sources))
        if entry is None or entry[0] is not sources:
            fetched_at = sources.get("fetched_at", 0)
            index = {
                str(fmt.get("format_id")): {**fmt, "fetched_at": fetched_at}
                for fmt in reversed(sources.get("formats", []))  # the first of an id wins
            }
            entry = self._indexes[id(sources)] = (sources, index)
            if len(self._indexes) > _MEMO:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(id(sources))
        return entry[1].get(format_id)


def source_store(conn: HTTPConnection) -> Sources:
    found: Sources = conn.scope["state"]["sources"]
    return found
