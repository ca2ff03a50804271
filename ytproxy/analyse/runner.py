"""The analyse task runner: accepts URLs, runs analyses in the background, answers polls.

`TaskRunner.submit(url)` returns a task id at once, before any extraction starts:

- a URL whose result is cached (`result:<url hash>`, `RESULT_TTL`) gets a new task
  that is already completed; yt-dlp is not called;
- a URL that is being analysed, here or on another instance sharing Redis, joins that
  task: the first submitter takes the lease `task-by-url:<url hash>` with `cache.add`,
  the others read the holder's task id from it (concurrent submitters in this process
  share one submission before they reach the cache);
- any other URL becomes a new `pending` task, unless `ANALYZE_QUEUE_SIZE` tasks
  already wait for a slot here: then 429 `queue_full` with an estimated `Retry-After`.

Analyses run in this process's asyncio registry, at most `MAX_CONCURRENT_ANALYSES` at
a time (a semaphore), each bounded by `ANALYZE_TIMEOUT` once it holds a slot, on the
extractor's `analyse` lane: that lane leaves a yt-dlp thread free for live channels,
so they never wait behind a queue of analyses. A completed analysis stores the result,
then the private sources (`Sources.store`, for the download relay), then the
task record, and only then releases the lease, so a submitter that finds no lease
also finds the result.

On shutdown every unfinished task is cancelled and recorded as failed (`cancelled`),
so no poller waits on a task that nobody runs. If an instance dies without shutting
down, its records stop receiving heartbeats and are reported as `task_lost`.

This module does not validate URLs (`ytproxy/urlguard.py`), shape results (`formats.py`) or
speak HTTP (`endpoints.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from ..errors import ExtractionError, ServiceUnavailable, TooManyRequests, YtproxyError
from ..extractor import human_message
from ..flights import Flights
from ..sources import url_key
from .formats import build_result, has_media
from .playlists import build_playlist, is_playlist
from .tasks import (
    HEARTBEAT_INTERVAL,
    STALE_AFTER,
    Task,
    is_stale,
    lease_key,
    lost,
    new_task_id,
    result_key,
    task_key,
    valid_task_id,
)

if TYPE_CHECKING:
    from ..cache import Cache
    from ..extractor import Extractor
    from ..metrics import Metrics
    from ..settings import Settings
    from ..sources import Sources

log = logging.getLogger(__name__)

# Live streams change (they end, their manifests rotate): keep their results briefly.
LIVE_RESULT_TTL = 300
# Progress is written to the cache at most this often per task (polls on this
# instance read memory and always see the latest).
_SAVE_INTERVAL = 0.5
_LEASE_TTL = STALE_AFTER


class TaskRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        cache: Cache,
        extractor: Extractor,
        metrics: Metrics,
        sources: Sources,
    ) -> None:
        self._settings = settings
        self._cache = cache
        self._extractor = extractor
        self._metrics = metrics
        self._sources = sources
        self._slots = asyncio.Semaphore(settings.max_concurrent_analyses)
        self._tasks: dict[str, Task] = {}
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._by_url: dict[str, str] = {}
        self._submitting = Flights()
        self._locks: dict[str, asyncio.Lock] = {}
        self._saved_at: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._average_duration = 10.0
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="analyse-heartbeat")

    async def close(self) -> None:
        self._closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self._submitting.wait()
        jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, *self._background, return_exceptions=True)
        for task in list(self._tasks.values()):
            if not task.finished:
                task.fail(
                    {
                        "code": "cancelled",
                        "message": "The server restarted during the analysis; submit the URL again",
                    }
                )
                await self._finish(task)
        if jobs:
            log.info("shutdown: %d unfinished analyses marked failed", len(jobs))

    @property
    def waiting(self) -> int:
        """Tasks accepted here that wait for a slot."""
        return self._waiting

    async def submit(self, url: str) -> str:
        """Register an analysis of `url` (already validated); return its task id."""
        if self._closing:
            raise ServiceUnavailable("The server is shutting down", code="not_ready")
        url_hash = url_key(url)
        running = self._by_url.get(url_hash)
        if running is not None:
            return running
        return await self._submitting.run(url_hash, lambda: self._submit(url, url_hash))

    async def status(self, task_id: str) -> dict[str, Any] | None:
        """The public view of a task (without download links), or None if unknown."""
        if not valid_task_id(task_id):
            return None
        task = self._tasks.get(task_id)
        record = task.record() if task is not None else await self._load(task_id)
        if record is None:
            return None
        if is_stale(record):
            record = lost(record)
        result = None
        if record["state"] == "completed":
            result = await self._cache.get(record["result_key"])
            if result is None:
                record["state"], record["error"] = (
                    "failed",
                    {
                        "code": "result_expired",
                        "message": "This result has expired; analyse the URL again",
                    },
                )
        return {
            "task_id": record["task_id"],
            "url": record["url"],
            "state": record["state"],
            "progress": record["progress"],
            "stage": record["stage"],
            "error": record["error"],
            "result": result,
        }

    async def _submit(self, url: str, url_hash: str) -> str:
        cache, metrics = self._cache, self._metrics
        if await cache.get(result_key(url_hash)) is not None:
            metrics.cache_hits.labels("result").inc()
            return await self._from_cache(url, url_hash)
        metrics.cache_misses.labels("result").inc()
        if self._waiting >= self._settings.analyze_queue_size:
            raise TooManyRequests(
                "Too many analyses are waiting; try again shortly",
                code="queue_full",
                retry_after=self._retry_after(),
            )
        task = Task(task_id=new_task_id(), url=url, url_hash=url_hash)
        # The record exists before the lease names it, so a joiner can always read it.
        await self._save(task, force=True)
        joined = await self._take_lease(task)
        if joined is not None:
            await cache.delete(task_key(task.task_id))
            return joined
        if await cache.get(result_key(url_hash)) is not None:
            # A task elsewhere finished between our first look and the lease. Others
            # may have joined this task already, so it completes rather than vanishes.
            task.complete(result_key(url_hash))
            await self._save(task, force=True)
            await self._release(task)
            self._metrics.tasks.labels("completed").inc()
            return task.task_id
        self._accept(task)
        return task.task_id

    async def _take_lease(self, task: Task) -> str | None:
        """Take the URL's lease for `task`, or return the id of the task holding it."""
        cache, key = self._cache, lease_key(task.url_hash)
        for _ in range(3):
            if await cache.add(key, task.task_id, _LEASE_TTL):
                return None
            holder = await cache.get(key)
            if holder is None:
                continue  # released between the two calls: try again
            record = await self._load(str(holder))
            if record is not None and record["state"] != "failed" and not is_stale(record):
                return str(holder)
            break
        # The holder failed or died: this task takes over.
        await cache.set(key, task.task_id, _LEASE_TTL)
        return None

    async def _from_cache(self, url: str, url_hash: str) -> str:
        task = Task(task_id=new_task_id(), url=url, url_hash=url_hash)
        task.complete(result_key(url_hash))
        await self._save(task, force=True)
        self._metrics.tasks.labels("completed").inc()
        return task.task_id

    def _accept(self, task: Task) -> None:
        if self._closing:
            raise ServiceUnavailable("The server is shutting down", code="not_ready")
        metrics = self._metrics
        self._tasks[task.task_id] = task
        self._by_url[task.url_hash] = task.task_id
        self._waiting += 1
        metrics.tasks.labels("pending").inc()
        metrics.tasks_active.labels("pending").inc()
        self._jobs[task.task_id] = asyncio.create_task(
            self._run(task), name=f"analyse-{task.task_id[:8]}"
        )

    async def _run(self, task: Task) -> None:
        metrics, settings = self._metrics, self._settings
        holding = False
        try:
            async with self._slots:
                self._waiting -= 1
                holding = True
                metrics.tasks_active.labels("pending").dec()
                metrics.tasks_active.labels("running").inc()
                metrics.tasks.labels("running").inc()
                task.start()
                await self._save(task, force=True)
                started = time.monotonic()
                async with asyncio.timeout(settings.analyze_timeout):
                    await self._analyse(task)
                self._average_duration = 0.8 * self._average_duration + 0.2 * (
                    time.monotonic() - started
                )
        except asyncio.CancelledError:
            raise  # close() records the failure
        except TimeoutError:
            task.fail(
                {
                    "code": "upstream_timeout",
                    "message": f"The analysis took longer than {settings.analyze_timeout:g} s",
                }
            )
        except YtproxyError as exc:
            task.fail(exc.to_dict())
        except Exception:
            log.exception("analysis of task %s failed unexpectedly", task.task_id)
            task.fail({"code": "internal_error", "message": "Internal error; it has been logged"})
        finally:
            if not holding:
                self._waiting -= 1
                metrics.tasks_active.labels("pending").dec()
            else:
                metrics.tasks_active.labels("running").dec()
        await self._finish(task)

    async def _analyse(self, task: Task) -> None:
        loop = asyncio.get_running_loop()

        def on_event(message: str) -> None:
            # Called from yt-dlp's thread; the loop may already be closing.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._advance, task, message)

        info = await self._extractor.extract(
            task.url,
            lane="analyse",
            on_event=on_event,
            # A playlist or channel is listed flat (its entries are not each extracted),
            # and no further than PLAYLIST_MAX_ENTRIES (analyse/playlists.py).
            # Asking for subtitles (never downloaded here) makes yt-dlp warn when a
            # missing PO token costs subtitle languages (analyse/degraded.py).
            options={
                "extract_flat": "in_playlist",
                "playlistend": self._settings.playlist_max_entries,
                "writesubtitles": True,
                "writeautomaticsub": True,
            },
            allow_playlist=True,
        )
        task.classifying()
        await self._save(task, force=True)
        key = result_key(task.url_hash)
        if is_playlist(info):
            playlist = build_playlist(info, self._settings.playlist_max_entries)
            await self._cache.set(key, playlist, self._settings.result_ttl)
            task.complete(key)
            return
        result = build_result(info)
        if not has_media(result):
            raise ExtractionError(human_message("unsupported_url"), code="unsupported_url")
        ttl = LIVE_RESULT_TTL if result["is_live"] else self._settings.result_ttl
        await self._cache.set(key, result, min(ttl, self._settings.result_ttl))
        await self._sources.store(task.url, info)
        task.complete(key)

    def _advance(self, task: Task, message: str) -> None:
        if (
            task.advance(message)
            and time.monotonic() - self._saved_at.get(task.task_id, 0.0) >= _SAVE_INTERVAL
        ):
            self._spawn(self._save(task))

    async def _finish(self, task: Task) -> None:
        """Record the final state, release the lease, and forget the task here."""
        metrics = self._metrics
        metrics.tasks.labels(task.state).inc()
        metrics.analysis_duration.observe(time.time() - task.created)
        await self._save(task, force=True)
        await self._release(task)
        self._tasks.pop(task.task_id, None)
        self._jobs.pop(task.task_id, None)
        self._locks.pop(task.task_id, None)
        self._saved_at.pop(task.task_id, None)
        if self._by_url.get(task.url_hash) == task.task_id:
            del self._by_url[task.url_hash]
        if task.state == "failed":
            log.info("analysis %s failed: %s", task.task_id, (task.error or {}).get("code"))

    async def _release(self, task: Task) -> None:
        cache, key = self._cache, lease_key(task.url_hash)
        if await cache.get(key) == task.task_id:
            await cache.delete(key)

    async def _save(self, task: Task, *, force: bool = False) -> None:
        """Write the task's current record. Writes of a task running here are serialised
        and each takes its snapshot when it runs, so the last write holds the latest
        state; a task not (or no longer) registered here has no other writer."""
        if not force and task.finished:
            return  # a late progress write: the final record is (being) written
        if task.task_id not in self._tasks:
            await self._write(task)
            return
        lock = self._locks.setdefault(task.task_id, asyncio.Lock())
        async with lock:
            if not force and task.finished:
                return
            self._saved_at[task.task_id] = time.monotonic()
            await self._write(task)

    async def _write(self, task: Task) -> None:
        ttl = self._settings.result_ttl
        await self._cache.set(task_key(task.task_id), task.record(), ttl)

    async def _load(self, task_id: str) -> dict[str, Any] | None:
        record = await self._cache.get(task_key(task_id))
        return dict(record) if isinstance(record, dict) else None

    async def _beat(self) -> None:
        cache = self._cache
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            for task in list(self._tasks.values()):
                if task.finished:
                    continue
                task.heartbeat = time.time()
                try:
                    await self._save(task)
                    await cache.set(lease_key(task.url_hash), task.task_id, _LEASE_TTL)
                except Exception:
                    log.exception("heartbeat of task %s failed", task.task_id)

    def _spawn(self, coro: Any) -> None:
        job = asyncio.ensure_future(coro)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    def _retry_after(self) -> int:
        """Seconds until a queue slot is likely to be free."""
        slots = self._settings.max_concurrent_analyses
        # The queue moves up one place each time a running analysis ends.
        return max(1, min(300, math.ceil(self._average_duration / slots)))


def task_runner(conn: HTTPConnection) -> TaskRunner:
    found: TaskRunner = conn.scope["state"]["tasks"]
    return found
