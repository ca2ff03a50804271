"""The registry of active downloads: limits, visibility and shutdown.

Every download response registers a `Transfer` before it opens the upstream, and
ends it in `finally`. The registry enforces `MAX_CONCURRENT_DOWNLOADS` (one more is
refused with 429 `too_many_downloads` and a `Retry-After`), lists the transfers for
`GET /v1/transfers` (mode, formats, bytes sent, rate, start time), keeps the
`active_downloads` gauge and the `downloads` and `relayed_bytes` counters, and on
shutdown (`close()`) cancels every transfer and waits for their clean-up.

A merged download reads its two inputs through internal *part* requests; those
register as children of the merge: they do not count against the limit or in the
metrics, and they are cancelled when the merge ends, so no upstream read outlives
the client that caused it. HEAD requests are not registered at all.

The registry is per process: with several instances, each enforces its own limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from ..errors import TooManyRequests

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)

RETRY_AFTER = 10
_RATE_WINDOW = 1.0
_CLOSE_TIMEOUT = 5.0


@dataclasses.dataclass(eq=False)
class Transfer:
    id: str
    mode: str
    formats: list[str]
    title: str
    parent: str | None = None
    registry: Transfers | None = None
    started_at: float = dataclasses.field(default_factory=time.time)
    bytes_sent: int = 0
    size: int | None = None
    started: bool = False
    outcome: str = "aborted"
    # Children (a merge's inputs) that failed: the merge must not end as if complete.
    problems: int = 0
    task: asyncio.Task[None] | None = None
    _t0: float = dataclasses.field(default_factory=time.monotonic)
    _mark: tuple[float, int] = (0.0, 0)
    _rate: float = 0.0

    def sent(self, n: int) -> None:
        self.bytes_sent += n
        now = time.monotonic()
        mark_time, mark_bytes = self._mark
        if now - mark_time >= _RATE_WINDOW:
            if mark_time:
                self._rate = (self.bytes_sent - mark_bytes) / (now - mark_time)
            self._mark = (now, self.bytes_sent)
        if self.registry is not None and self.parent is None:
            self.registry.count_bytes(n)

    @property
    def rate(self) -> float:
        """Bytes per second over the last second or so (0 once it stalls)."""
        if time.monotonic() - self._mark[0] > 3 * _RATE_WINDOW:
            return 0.0
        return self._rate

    def end(self) -> None:
        if self.registry is not None:
            self.registry.remove(self)

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        return {
            "id": self.id,
            "mode": self.mode,
            "formats": self.formats,
            "title": self.title,
            "bytes_sent": self.bytes_sent,
            "size": self.size,
            "rate": round(self.rate),
            "average_rate": round(self.bytes_sent / elapsed),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "elapsed": round(elapsed, 1),
        }


class Transfers:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._active: dict[str, Transfer] = {}
        self._closing = False

    @property
    def limit(self) -> int:
        return self._services.settings.max_concurrent_downloads

    def begin(
        self, mode: str, formats: list[str], title: str, *, parent: str | None = None
    ) -> Transfer:
        """Register a transfer, or raise 429 when the limit is reached."""
        if self._closing:
            raise TooManyRequests(
                "The server is shutting down", code="shutting_down", retry_after=RETRY_AFTER
            )
        if parent is None and self.count() >= self.limit:
            raise TooManyRequests(
                f"{self.limit} downloads are already running; try again shortly",
                code="too_many_downloads",
                retry_after=RETRY_AFTER,
            )
        transfer = Transfer(secrets.token_hex(6), mode, formats, title, parent, registry=self)
        self._active[transfer.id] = transfer
        if parent is None:
            self._services.metrics.active_downloads.inc()
        return transfer

    def probe(self, mode: str, formats: list[str], title: str) -> Transfer:
        """An unregistered transfer, for HEAD requests: not limited, listed or counted."""
        return Transfer(secrets.token_hex(6), mode, formats, title)

    def get(self, transfer_id: str) -> Transfer | None:
        return self._active.get(transfer_id)

    def __len__(self) -> int:
        """Every registered transfer, a merge's inputs included."""
        return len(self._active)

    def count(self) -> int:
        return sum(1 for t in self._active.values() if t.parent is None)

    def listing(self) -> list[dict[str, Any]]:
        top = [t for t in self._active.values() if t.parent is None]
        return [t.as_dict() for t in sorted(top, key=lambda t: t.started_at)]

    def count_bytes(self, n: int) -> None:
        self._services.metrics.relayed_bytes.labels("download").inc(n)

    def remove(self, transfer: Transfer) -> None:
        if self._active.pop(transfer.id, None) is None:
            return
        if transfer.parent is not None:
            parent = self._active.get(transfer.parent)
            if parent is not None and transfer.outcome == "failed":
                parent.problems += 1
            return
        metrics = self._services.metrics
        metrics.active_downloads.dec()
        metrics.downloads.labels(transfer.mode, transfer.outcome).inc()
        # The merge's inputs must not outlive it: ffmpeg is gone, so are its readers.
        for child in [t for t in self._active.values() if t.parent == transfer.id]:
            if child.task is not None:
                child.task.cancel()

    async def close(self) -> None:
        self._closing = True
        tasks = [t.task for t in self._active.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            log.info("ending %d active transfers", len(tasks))
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT)
