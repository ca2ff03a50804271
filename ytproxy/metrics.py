"""Prometheus metrics, in a registry owned by each app instance.

All metric names live here, so the dashboards and alert rules in `monitoring/` have
one list to match. Labels are bounded: a channel id, a kind, a status or an error
code, never a URL or a task id.

`labelled(metric, *values)` is `metric.labels(*values)` remembered: prometheus_client
validates the values and takes a lock on every `labels()` call, which showed in the
profile of a download (six calls per request, one per relayed block).

The counters and the histogram a download or a live segment updates on every request
(`http_requests`, `http_request_duration_seconds`, `upstream_requests`,
`relayed_bytes`, `downloads`, `cache_hits`) are `LoopCounter`s and a `LoopHistogram`:
plain numbers the event loop's thread adds to, read by the registry when scraped.
prometheus_client's own checks its state and takes a lock on every update — about
35 of the ~350 Python calls a small download made. They expose the same samples
without `_created`, and must only be updated from the event loop's thread (nothing
else updates them; the extractor's threads touch only the `ytdlp_*` metrics). Their
`labels(*values)` is a dict lookup already, so they need no `labelled`.

This module only defines and renders metrics; the parts that observe things update
them through the `Metrics` object the app holds.
"""

from __future__ import annotations

import abc
import bisect
import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

M = TypeVar("M", Counter, Gauge, Histogram)

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.info = Gauge(
            "ytproxy_info", "Build information", ["version", "ytdlp_version"], registry=r
        )

        # Extraction (yt-dlp).
        self.ytdlp_requests = Counter(
            "ytdlp_requests", "yt-dlp extractions by outcome", ["status"], registry=r
        )
        self.ytdlp_errors = Counter(
            "ytdlp_request_errors", "yt-dlp extraction errors by code", ["error_type"], registry=r
        )
        self.ytdlp_duration = Histogram(
            "ytdlp_request_duration_seconds",
            "Time one yt-dlp extraction took",
            ["lane"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ytdlp_in_flight = Gauge(
            "ytdlp_requests_in_flight", "Extractions running now", ["lane"], registry=r
        )

        # Cache.
        self.cache_hits = LoopCounter("cache_hits", "Cache hits", ["cache"], registry=r)
        self.cache_misses = Counter("cache_misses", "Cache misses", ["cache"], registry=r)
        self.redis_up = Gauge("redis_up", "1 when Redis answers (1 also when embedded)", registry=r)

        # Live channels.
        self.active_streams = Gauge(
            "active_streams", "Viewers watching a live channel now", registry=r
        )
        self.max_streams = Gauge(
            "max_concurrent_streams", "The configured viewer limit", registry=r
        )
        self.channel_viewers = Gauge(
            "live_channel_viewers", "Viewers per channel", ["channel"], registry=r
        )
        self.channel_up = Gauge(
            "live_channel_up",
            "1 when the channel resolved to a live stream",
            ["channel"],
            registry=r,
        )
        self.channel_status = Gauge(
            "live_channel_status",
            "1 for the channel's current status (live, upcoming, ended, offline, blocked, error)",
            ["channel", "status"],
            registry=r,
        )
        self.upstream_forbidden = Counter(
            "upstream_forbidden",
            "403/401 from the live upstream on URLs far from their expiry (PO token, n, IP)",
            ["channel"],
            registry=r,
        )
        self.live_resolutions = Counter(
            "live_resolutions", "Channel resolutions by reason", ["channel", "reason"], registry=r
        )
        self.segment_buffer_bytes = Gauge(
            "live_segment_buffer_bytes", "Bytes held in the shared segment buffer", registry=r
        )

        # Upstream traffic (live relay and downloads).
        self.upstream_requests = LoopCounter(
            "upstream_requests",
            "Requests sent to the upstream, by kind and HTTP status",
            ["kind", "status"],
            registry=r,
        )
        self.relayed_bytes = LoopCounter(
            "relayed_bytes", "Bytes sent to clients, by kind", ["kind"], registry=r
        )

        # Analyse tasks.
        self.tasks = Counter(
            "analysis_tasks", "Analysis tasks that reached a state", ["state"], registry=r
        )
        self.tasks_active = Gauge(
            "analysis_tasks_active",
            "Analysis tasks pending or running now",
            ["state"],
            registry=r,
        )
        self.analysis_duration = Histogram(
            "analysis_duration_seconds",
            "Time from submission to the end of an analysis",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        # Downloads.
        self.active_downloads = Gauge("active_downloads", "Downloads in progress", registry=r)
        self.downloads = LoopCounter(
            "downloads",
            "Downloads that ended, by mode and outcome",
            ["mode", "outcome"],
            registry=r,
        )

        # HTTP.
        self.http_requests = LoopCounter(
            "http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = LoopHistogram(
            "http_request_duration_seconds",
            "Time to the response start, by route",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def labelled(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, kept for the next call (labels are bounded sets).
        Nothing calls `metric.remove()`; a removed child would stay here, unregistered."""
        key = (id(metric), values)
        found: Any = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[no-any-return]

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


C = TypeVar("C", "_Count", "_Spread")


class _LoopMetric(abc.ABC, Generic[C]):
    """What both loop metrics share: a registered collector of children by label values;
    a kind says how a child is made and how it is written into its metric family."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name, self._documentation = name, documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        registry.register(self)

    def labels(self, *values: str) -> C:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}")
            child = self._children[values] = self._new_child()
        return child

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            self._add(family, values, child)
        yield family

    @abc.abstractmethod
    def _new_child(self) -> C: ...

    @abc.abstractmethod
    def _family(self) -> Any: ...

    @abc.abstractmethod
    def _add(self, family: Any, values: tuple[str, ...], child: C) -> None: ...


class LoopCounter(_LoopMetric[_Count]):
    """A labelled counter in plain numbers, updated from the event loop's thread only
    (see the module docstring); `labels(*values).inc(amount)` as prometheus_client's."""

    def _new_child(self) -> _Count:
        return _Count()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def _add(self, family: CounterMetricFamily, values: tuple[str, ...], child: _Count) -> None:
        family.add_metric(values, child.value)


class _Spread:
    __slots__ = ("buckets", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value


class LoopHistogram(_LoopMetric[_Spread]):
    """A labelled histogram in plain numbers, updated from the event loop's thread only
    (see the module docstring); `labels(*values).observe(value)` as prometheus_client's
    (a value equal to a bucket's bound falls in that bucket)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._buckets = tuple(float(b) for b in buckets)
        self._bounds = [*(_bound(b) for b in self._buckets), "+Inf"]
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> _Spread:
        return _Spread(self._buckets)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def _add(self, family: HistogramMetricFamily, values: tuple[str, ...], child: _Spread) -> None:
        cumulative = list(zip(self._bounds, itertools.accumulate(child.counts), strict=True))
        family.add_metric(values, cumulative, sum_value=child.total)


def _bound(value: float) -> str:
    """A bucket bound as prometheus_client writes it (`0.005`, `1.0`, `10.0`)."""
    return repr(float(value))
