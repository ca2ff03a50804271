"""yt-dlp as a library: one `YoutubeDL` per call, in the app's thread pool.

`Extractor.extract(url)` returns yt-dlp's sanitised info dict, or raises an
`ExtractionError` with a stable code. It owns the yt-dlp options that make YouTube
work from a server (proxy, cookies, PO-token provider, JavaScript runtime, socket
timeout) and retries transient failures with exponential backoff and jitter.

Calls come in lanes so that live-channel resolution never waits behind analyses:
the pool has `MAX_CONCURRENT_YTDLP_REQUESTS` threads and the `analyse` lane may use
all but one of them, so a thread is always free for the `live` lane. A lane's slot
is held until its thread ends, even when the caller has stopped waiting for it.

It does not cache or deduplicate (callers use the cache's single-flight), does not
download media, and never starts yt-dlp's command line. A call whose caller gives up
is asked to stop at yt-dlp's next log line; a thread blocked in a socket read ends
when the socket timeout fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import yt_dlp
from yt_dlp.utils import DownloadError, GeoRestrictedError, UnsupportedError, YoutubeDLError

from .backoff import backoff
from .errors import ExtractionError
from .metrics import Metrics
from .netguard import AddressPolicy
from .settings import Settings
from .ytdl_network import guarded_youtubedl

log = logging.getLogger(__name__)

Lane = Literal["live", "analyse"]
EventCallback = Callable[[str], None]

YTDLP_VERSION: str = yt_dlp.version.__version__
# The info dict's key for the warnings yt-dlp gave during its extraction (cleaned
# messages, in order; `analyse/degraded.py` reads them).
WARNINGS_KEY = "_ytproxy_warnings"
_MAX_WARNINGS = 50

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PREFIX = re.compile(r"^(ERROR:\s*)?(\[[\w:.-]+\]\s*)?([\w-]{1,64}:\s)?")

# Ordered: the first pattern that matches a yt-dlp message decides its code.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("forbidden_address", re.compile(r"forbidden_address", re.I)),
    ("private_video", re.compile(r"private video|this video is private", re.I)),
    (
        "login_required",
        re.compile(
            r"sign in to confirm|login required|log in|members[- ]only|cookies|"
            r"confirm you.?re not a bot|age[- ]restricted|inappropriate for some users",
            re.I,
        ),
    ),
    (
        "geo_blocked",
        re.compile(r"not available in your country|geo[- ]?restrict|blocked it in your", re.I),
    ),
    # yt-dlp's UserNotLive: "The channel is not currently live".
    ("channel_not_live", re.compile(r"not currently live|is not live|not live", re.I)),
    (
        "live_not_started",
        re.compile(
            r"live event will begin|premieres? in|stream has not started|scheduled|"
            r"will begin in|begins? in",
            re.I,
        ),
    ),
    (
        "video_unavailable",
        re.compile(
            r"video unavailable|is unavailable|has been removed|does not exist|"
            r"no longer available|http error 404|http error 410|not found",
            re.I,
        ),
    ),
    ("upstream_timeout", re.compile(r"timed out|timeout", re.I)),
    (
        "network_error",
        re.compile(
            r"unable to download|connection|urlopen error|name or service|temporary failure|"
            r"network is unreachable|http error 5\d\d|remote end closed|reset by peer|"
            r"eof occurred|incompleteread",
            re.I,
        ),
    ),
    ("unsupported_url", re.compile(r"unsupported url", re.I)),
)

_HUMAN: dict[str, str] = {
    "unsupported_url": "This URL is not a video that can be analysed",
    "playlist_not_supported": "Playlists and channel pages are not supported: open one video",
    "video_unavailable": "The video is unavailable",
    "private_video": "The video is private",
    "login_required": "YouTube wants a signed-in user for this video (set YTDLP_COOKIES_FILE)",
    "geo_blocked": "The video is not available from the server's country",
    "live_not_started": "The live stream has not started",
    "channel_not_live": "The channel is not live right now",
    "upstream_timeout": "The video site did not answer in time",
    "network_error": "The video site could not be reached",
    "extraction_failed": "yt-dlp could not read this video",
    "forbidden_address": (
        "The video or a page it leads to is on a private or local network, which the "
        "gateway does not fetch from"
    ),
}


class _Cancelled(Exception):
    """Raised inside yt-dlp's thread, from its logger, once the caller has given up."""


class _Logger:
    """yt-dlp's `logger` param: its messages go to our log and to the caller's callback;
    its warnings (and the non-fatal errors its PO-token framework reports) are kept."""

    def __init__(self, on_event: EventCallback | None, cancelled: threading.Event) -> None:
        self._on_event = on_event
        self._cancelled = cancelled
        self.warnings: list[str] = []

    def _keep(self, message: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)

    def _check(self) -> None:
        if self._cancelled.is_set():
            raise _Cancelled

    def debug(self, message: str) -> None:
        self._check()
        if self._on_event is not None and not message.startswith("[debug]"):
            self._on_event(message)
        log.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        self.debug(message)

    def warning(self, message: str) -> None:
        self._check()
        log.info("yt-dlp warning: %s", _clean(message))
        self._keep(_clean(message))

    def error(self, message: str) -> None:
        log.debug("yt-dlp error: %s", _clean(message))
        self._keep(_clean(message))


class Extractor:
    def __init__(
        self, settings: Settings, metrics: Metrics, *, policy: AddressPolicy | None = None
    ) -> None:
        """`policy` holds yt-dlp's requests (the app's own; built from `settings` when
        none is given, as for a standalone extractor)."""
        self._settings = settings
        self._metrics = metrics
        threads = settings.max_concurrent_ytdlp_requests
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ytdlp")
        self._lanes: dict[str, asyncio.Semaphore] = {
            "analyse": asyncio.Semaphore(max(1, threads - 1)),
            "live": asyncio.Semaphore(threads),
        }
        self.calls = 0
        policy = policy or AddressPolicy.from_settings(settings)
        # Plain yt-dlp when private networks are allowed; otherwise every request it
        # makes is held to the address policy (see ytdl_network).
        self._ydl_class: type[yt_dlp.YoutubeDL] = (
            yt_dlp.YoutubeDL if policy.allow_private else guarded_youtubedl(policy)
        )

    async def start(self) -> None:
        """Load yt-dlp's plugins (the PO-token provider) once, before any call.

        yt-dlp loads plugins on the first `YoutubeDL()`; several threads doing that at
        once register the same provider twice and lose it with an import error.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, _load_plugins)

    def params(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The YoutubeDL options every call starts from."""
        s = self._settings
        params: dict[str, Any] = {
            "quiet": True,
            "no_warnings": False,
            "noprogress": True,
            "skip_download": True,
            "noplaylist": True,
            "socket_timeout": s.ytdlp_timeout,
            "retries": 2,
            "extractor_retries": 1,
            "js_runtimes": {s.js_runtime: {"path": s.js_runtime_path} if s.js_runtime_path else {}},
            "cachedir": False,
        }
        if s.global_proxy:
            params["proxy"] = s.global_proxy
        cookies = s.cookies_file()
        if cookies is not None:
            params["cookiefile"] = str(cookies)
        extractor_args = {name: dict(args) for name, args in s.ytdlp_extractor_args.items()}
        if s.pot_provider_url:
            extractor_args["youtubepot-bgutilhttp"] = {"base_url": [s.pot_provider_url]}
        if extractor_args:
            params["extractor_args"] = extractor_args
        if extra:
            params.update(extra)
        return params

    async def extract(
        self,
        url: str,
        *,
        lane: Lane = "analyse",
        on_event: EventCallback | None = None,
        options: dict[str, Any] | None = None,
        allow_playlist: bool = False,
    ) -> dict[str, Any]:
        """Extract `url` without downloading; retry transient failures with backoff.

        A playlist (a channel's `/streams` tab) is refused with `playlist_not_supported`
        unless `allow_playlist`; callers that allow it pass `extract_flat` in `options`,
        so its entries are listed, not each extracted.
        """
        attempts = self._settings.ytdlp_max_retries + 1
        for attempt in range(attempts):
            try:
                return await self._extract_once(url, lane, on_event, options, allow_playlist)
            except ExtractionError as exc:
                if not exc.transient or attempt == attempts - 1:
                    raise
                delay = backoff(attempt, base=0.5, cap=8.0)
                log.info("extraction failed (%s), retrying in %.1fs", exc.code, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _extract_once(
        self,
        url: str,
        lane: Lane,
        on_event: EventCallback | None,
        options: dict[str, Any] | None,
        allow_playlist: bool = False,
    ) -> dict[str, Any]:
        cancelled = threading.Event()
        params = self.params(options)
        params["logger"] = _Logger(on_event, cancelled)
        thread = await self._start_thread(lane, url, params, allow_playlist)
        try:
            info = await asyncio.wait_for(thread, timeout=self._settings.ytdlp_timeout * 4)
        except TimeoutError:
            cancelled.set()
            self._count_error("upstream_timeout")
            raise ExtractionError(_HUMAN["upstream_timeout"], code="upstream_timeout") from None
        except ExtractionError as exc:
            self._count_error(exc.code)
            raise
        except BaseException:
            cancelled.set()
            raise
        self._metrics.ytdlp_requests.labels("success").inc()
        return info

    async def _start_thread(
        self, lane: Lane, url: str, params: dict[str, Any], allow_playlist: bool = False
    ) -> asyncio.Future[dict[str, Any]]:
        """Take a slot of `lane` and run yt-dlp for `url` in a pool thread.

        The slot is given back when the thread ends, not when the caller stops
        waiting: a caller that times out or is cancelled leaves its thread running
        until yt-dlp notices, and counting that thread as free would let given-up
        analyses take every thread, the live lane's one included.
        """
        slots = self._lanes[lane]
        started = time.monotonic()
        await slots.acquire()
        loop = asyncio.get_running_loop()
        in_flight = self._metrics.ytdlp_in_flight.labels(lane)

        def finished() -> None:
            slots.release()
            in_flight.dec()
            self._metrics.ytdlp_duration.labels(lane).observe(time.monotonic() - started)

        def thread_ended(_: object) -> None:
            # Runs in the pool thread (or wherever the future was cancelled).
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(finished)

        try:
            future = self._pool.submit(_run_ytdlp, self._ydl_class, url, params, allow_playlist)
        except BaseException:
            slots.release()
            raise
        self.calls += 1
        in_flight.inc()
        future.add_done_callback(thread_ended)
        return asyncio.wrap_future(future, loop=loop)

    def _count_error(self, code: str) -> None:
        self._metrics.ytdlp_requests.labels("error").inc()
        self._metrics.ytdlp_errors.labels(code).inc()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _load_plugins() -> None:
    yt_dlp.YoutubeDL({"quiet": True, "logger": _Logger(None, threading.Event())}).close()


def _run_ytdlp(
    ydl_class: type[yt_dlp.YoutubeDL],
    url: str,
    params: dict[str, Any],
    allow_playlist: bool = False,
) -> dict[str, Any]:
    """Runs in a pool thread: one YoutubeDL for this call only."""
    with _private_cookies(params.get("cookiefile")) as cookiefile:
        if cookiefile is not None:
            params = {**params, "cookiefile": cookiefile}
        try:
            with ydl_class(params) as ydl:
                info = ydl.extract_info(url, download=False)
                if info is None:
                    raise ExtractionError(_HUMAN["extraction_failed"])
                if info.get("_type") in {"playlist", "multi_video"} and not allow_playlist:
                    raise ExtractionError(
                        _HUMAN["playlist_not_supported"], code="playlist_not_supported"
                    )
                sanitized: dict[str, Any] = ydl.sanitize_info(info)
                logger = params.get("logger")
                sanitized[WARNINGS_KEY] = (
                    list(logger.warnings) if isinstance(logger, _Logger) else []
                )
                return sanitized
        except _Cancelled:
            raise ExtractionError(_HUMAN["upstream_timeout"], code="upstream_timeout") from None
        except YoutubeDLError as exc:
            raise classify(exc) from None


@contextlib.contextmanager
def _private_cookies(path: str | None) -> Iterator[str | None]:
    """A private copy of the cookies file for one call.

    yt-dlp writes its cookie jar back to `cookiefile` when it closes: with the real
    file, concurrent calls would race on it and a read-only file would fail every call.
    """
    if path is None:
        yield None
        return
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise ExtractionError(
            f"The cookies file cannot be read ({exc.strerror}): check YTDLP_COOKIES_FILE",
            code="extraction_failed",
        ) from None
    handle, copy = tempfile.mkstemp(prefix="ytproxy-cookies-", suffix=".txt")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        yield copy
    finally:
        with contextlib.suppress(OSError):
            os.unlink(copy)


def classify(exc: BaseException) -> ExtractionError:
    """Map a yt-dlp exception to an `ExtractionError` with a stable code."""
    original: BaseException = exc
    if isinstance(exc, DownloadError) and exc.exc_info and exc.exc_info[1] is not None:
        original = exc.exc_info[1]
    if isinstance(original, _Cancelled):
        return ExtractionError(_HUMAN["upstream_timeout"], code="upstream_timeout")
    detail = _clean(str(exc))
    if isinstance(original, GeoRestrictedError):
        code = "geo_blocked"
    elif isinstance(original, UnsupportedError):
        code = "unsupported_url"
    elif isinstance(original, TimeoutError):
        code = "upstream_timeout"
    else:
        code = next((c for c, pattern in _PATTERNS if pattern.search(detail)), "extraction_failed")
    message = _HUMAN[code]
    if detail and code not in {
        "unsupported_url",
        "network_error",
        "upstream_timeout",
        "forbidden_address",
    }:
        message = f"{message}: {detail}"
    return ExtractionError(message[:300], code=code)


def _clean(message: str) -> str:
    text = _ANSI.sub("", message).strip().splitlines()[0] if message.strip() else ""
    return _PREFIX.sub("", text, count=1).strip()


def human_message(code: str) -> str:
    return _HUMAN.get(code, _HUMAN["extraction_failed"])
