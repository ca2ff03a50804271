"""The registry of active downloads: limits, stalls, visibility and shutdown.

Every download response registers a `Transfer` before it opens the upstream, and
ends it in `finally`. The registry enforces `MAX_CONCURRENT_DOWNLOADS` (one more is
refused with 429 `too_many_downloads` and a `Retry-After`) and, so that one address
cannot take every slot, `MAX_DOWNLOADS_PER_CLIENT` (429 `too_many_downloads_per_client`,
checked first). The client is `request.client.host`, as for the analyse rate limit:
the peer's address, or the `X-Forwarded-For` that uvicorn accepts from a proxy listed
in `FORWARDED_ALLOW_IPS`. The registry lists the transfers for `GET /v1/transfers`
(mode, formats, bytes sent, rate, start time), keeps the `active_downloads` gauge and
the `downloads` and `relayed_bytes` counters, and on shutdown (`close()`) cancels
every transfer and waits for their clean-up.

A client that stops reading would otherwise keep its slot for as long as it likes.
One watchdog task per registry (started with the first download, stopped by
`close()`) ends a transfer whose client has taken nothing for `DOWNLOAD_IDLE_TIMEOUT`
seconds: it cancels the transfer's task, which runs the response's ordinary clean-up
(upstream released, ffmpeg killed, the merge's inputs cancelled), frees the slot and
counts the download with the outcome `stalled`. Progress is a `send` that returned:
uvicorn's `send` waits while the socket's buffer is full, so a slow reader is a `send`
that does not return (an upstream that yields nothing for that long is ended the same
way). The clock starts with the response; opening the upstream has its own timeouts.

A merged download reads its two inputs through internal *part* requests; those
register as children of the merge: they do not count against the limits, in the
metrics or for the watchdog, and they are cancelled when the merge ends, so no
upstream read outlives the client that caused it. HEAD requests are not registered.

The registry is per process: with several instances, each enforces its own limits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from ..errors import TooManyRequests

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER = 10
_RATE_WINDOW = 1.0
_CLOSE_TIMEOUT = 5.0


@dataclasses.dataclass(eq=False, slots=True)
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
    task: asyncio.Task[Any] | None = None
    client: str = ""
    # Why the registry ended the transfer itself (`stalled`), if it did.
    stopped: str | None = None
    _t0: float = dataclasses.field(default_factory=time.monotonic)
    _handed: float = dataclasses.field(default_factory=time.monotonic)
    _mark: tuple[float, int] = (0.0, 0)
    _rate: float = 0.0

    def start(self, size: int | None) -> None:
        """The response has started: from now on the client must keep taking bytes."""
        self.started = True
        self.size = size
        self._handed = time.monotonic()

    def sent(self, n: int) -> None:
        """`n` bytes were handed to the client (its `send` returned)."""
        self.bytes_sent += n
        now = time.monotonic()
        self._handed = now
        mark_time, mark_bytes = self._mark
        if now - mark_time >= _RATE_WINDOW:
            if mark_time:
                self._rate = (self.bytes_sent - mark_bytes) / (now - mark_time)
            self._mark = (now, self.bytes_sent)
        if self.registry is not None and self.parent is None:
            self.registry.count_bytes(n)

    def working(self) -> None:
        """The gateway itself is busy for this transfer (a ZIP analysing its next entry),
        which is not a client that stopped reading."""
        self._handed = time.monotonic()

    @property
    def idle(self) -> float:
        """Seconds since the client last took a chunk (or since the response started)."""
        return time.monotonic() - self._handed

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
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._active: dict[str, Transfer] = {}
        # Running downloads per client (a merge's inputs not included), kept as they
        # come and go: `admit` runs on every request and must not walk every transfer.
        # Plain dicts, not `Counter`s, whose item deletion is a Python method.
        self._running: dict[str, int] = {}
        self._total = 0  # their sum
        # Live children (a merge's inputs) per parent, so ending a transfer without
        # any does not walk every transfer.
        self._children: dict[str, int] = {}
        self._closing = False
        self._watchdog: asyncio.Task[None] | None = None
        # Ids: this registry's random prefix and a serial number. Unique in the process
        # without a system call per download; the prefix keeps a merge's part link made
        # before a restart from naming a transfer begun after it.
        self._prefix = secrets.token_hex(4)
        self._serial = itertools.count(1)
        self._relayed = metrics.relayed_bytes.labels("download")
        # Read when scraped, rather than counted up and down by every download.
        metrics.active_downloads.set_function(self.count)

    @property
    def limit(self) -> int:
        return self._settings.max_concurrent_downloads

    def admit(self, client: str) -> None:
        """Raise 429 if one more download from `client` would go over a limit."""
        if self._closing:
            raise _shutting_down()
        per_client = self._settings.max_downloads_per_client
        if self.count(client) >= per_client:
            raise TooManyRequests(
                f"{per_client} downloads from your address are already running; "
                "wait for one to finish",
                code="too_many_downloads_per_client",
                retry_after=RETRY_AFTER,
            )
        if self.count() >= self.limit:
            raise TooManyRequests(
                f"{self.limit} downloads are already running; try again shortly",
                code="too_many_downloads",
                retry_after=RETRY_AFTER,
            )

    def begin(
        self,
        mode: str,
        formats: list[str],
        title: str,
        *,
        client: str = "",
        parent: str | None = None,
    ) -> Transfer:
        """Register a transfer, or raise 429 when a limit is reached."""
        if parent is None:
            self.admit(client)
        elif self._closing:
            raise _shutting_down()
        transfer = Transfer(
            self._new_id(), mode, formats, title, parent, registry=self, client=client
        )
        self._active[transfer.id] = transfer
        if parent is not None:
            _add(self._children, parent, 1)
        else:
            _add(self._running, client, 1)
            self._total += 1
            if self._watchdog is None:
                self._watchdog = asyncio.create_task(self._watch(), name="transfers-watchdog")
        return transfer

    def probe(self, mode: str, formats: list[str], title: str) -> Transfer:
        """An unregistered transfer, for HEAD requests: not limited, listed or counted."""
        return Transfer(self._new_id(), mode, formats, title)

    def _new_id(self) -> str:
        return f"{self._prefix}{next(self._serial):x}"

    def get(self, transfer_id: str) -> Transfer | None:
        return self._active.get(transfer_id)

    def __len__(self) -> int:
        """Every registered transfer, a merge's inputs included."""
        return len(self._active)

    def count(self, client: str | None = None) -> int:
        """Downloads running (a merge's inputs not included), all or from one client."""
        return self._total if client is None else self._running.get(client, 0)

    def listing(self) -> list[dict[str, Any]]:
        top = [t for t in self._active.values() if t.parent is None]
        return [t.as_dict() for t in sorted(top, key=lambda t: t.started_at)]

    def count_bytes(self, n: int) -> None:
        self._relayed.inc(n)

    def remove(self, transfer: Transfer) -> None:
        if self._active.pop(transfer.id, None) is None:
            return
        if transfer.parent is not None:
            _add(self._children, transfer.parent, -1)
            parent = self._active.get(transfer.parent)
            if parent is not None and transfer.outcome == "failed":
                parent.problems += 1
            return
        _add(self._running, transfer.client, -1)
        self._total -= 1
        metrics = self._metrics
        metrics.downloads.labels(transfer.mode, transfer.outcome).inc()
        # The merge's inputs must not outlive it: ffmpeg is gone, so are its readers.
        if transfer.id not in self._children:
            return
        for child in [t for t in self._active.values() if t.parent == transfer.id]:
            if child.task is not None:
                child.task.cancel()

    async def _watch(self) -> None:
        """End every transfer idle for the timeout; sleep until the next could be."""
        timeout = self._settings.download_idle_timeout
        while True:
            wait = timeout
            for transfer in list(self._active.values()):
                if transfer.parent is not None or not transfer.started or transfer.stopped:
                    continue
                left = timeout - transfer.idle
                if left <= 0:
                    self._end_stalled(transfer)
                else:
                    wait = min(wait, left)
            await asyncio.sleep(wait)

    def _end_stalled(self, transfer: Transfer) -> None:
        if transfer.task is None:
            return
        log.info(
            "download %s: the client took nothing for %.0f s; ending it (%d bytes sent)",
            transfer.id,
            transfer.idle,
            transfer.bytes_sent,
        )
        transfer.stopped = "stalled"
        transfer.task.cancel()

    async def close(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        tasks = [t.task for t in self._active.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            log.info("ending %d active transfers", len(tasks))
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT)


def _add(counts: dict[str, int], key: str, n: int) -> None:
    """Add `n` to `counts[key]`, dropping the key when it reaches zero."""
    total = counts.get(key, 0) + n
    if total > 0:
        counts[key] = total
    else:
        counts.pop(key, None)


def _shutting_down() -> TooManyRequests:
    return TooManyRequests(
        "The server is shutting down", code="shutting_down", retry_after=RETRY_AFTER
    )


def transfers(conn: HTTPConnection) -> Transfers:
    found: Transfers = conn.scope["state"]["transfers"]
    return found
