"""A googlevideo-like HTTP origin for tests, run in a background thread.

`Origin(media)` serves the files made by `media.generate_media` on 127.0.0.1 and an
ephemeral port, from its own thread and event loop, so async tests on any loop and sync
tests (yt-dlp, ffmpeg, httpx) can all use it. Every URL it hands out is absolute.

Routes (`S` = signed: `?expire=<unix s>&sig=<hmac>`; expired, forged or revoked → 403):

- `GET /channel/{name}/live`: the stable "channel page" for yt-dlp: 302 to a freshly
  signed master playlist; 404 while `set_offline(name, True)`.
- `GET /hls/{name}/master.m3u8` S: two variants (`low` 160x90, `high` 320x180).
- `GET /hls/{name}/{variant}/index.m3u8` S: live playlist, a sliding window of 5
  segments of 2 s, no ENDLIST. 404 while the stream is offline.
- `GET /hls/{name}/{variant}/seg/{seq}.ts` S: media file `seq % 90`, 404 for a segment
  not published yet. Segment `seq` starts a DISCONTINUITY when `seq % 90 == 0`.
- `GET /watch/vod`: 302 to `GET|HEAD /vod/video.mp4` S (Range: 206/416/200).
- `GET /watch/dash`: 302 to `GET /dash/manifest.mpd` S, a static MPD whose every
  Representation is one file at an absolute signed `BaseURL`
  `/dash/file/{itag}?expire&sig` (`GET|HEAD`, Range like the MP4).
- YouTube-style lives (`origin.youtube`, `googlevideo.py`): a player API, `/watch?v=`,
  `/@{handle}/live|streams` and path-signed googlevideo manifests and segments.
- Subtitled videos (`origin.subtitles`, `subtitles.py`): a page with a WebVTT `<track>`
  and an HLS VOD with a WebVTT subtitles rendition, under `/subs/`.
- A video behind a sign-in (`origin.signin`, `signin.py`): `/signin/page` is 403 "Sign
  in to confirm you're not a bot" without its session cookie, a `<video>` page with it.
- A playlist (`origin.feeds`, `feeds.py`): an RSS feed with MP4 enclosures, one of
  which answers 404, under `/feeds/`.

The DASH signature lives in the BaseURL's query string: yt-dlp uses an absolute BaseURL
verbatim as the format URL for single-file representations, query included (only
SegmentTemplate URLs lose the MPD's query), so no path parameters are needed.

A live stream's clock starts at its first request (or `reset_live`); it starts with 10 s
of history (a full window, media sequence 0..4) so players never see an empty playlist.
`advance_live` jumps a stream's clock forward. After 180 s the 90 files loop: timestamps
jump back at the DISCONTINUITY, and ffmpeg (which ignores the tag) logs "Packet corrupt"
and "Non-monotonous DTS" there but carries on; tests near the wrap should expect that.

This is a test double, not a CDN: no multipart ranges (a multi-range header gets the
whole file, as the RFC allows), no HTTPS, no chunked live-edge waits, and files are read
with blocking calls on the origin's own loop (they are tiny and local).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from tests.origin import manifests
from tests.origin.controls import (
    DEFAULT_URL_LIFETIME,
    Faults,
    RequestLog,
    RequestRecord,
    Signer,
)
from tests.origin.feeds import FeedVideos
from tests.origin.googlevideo import YouTube
from tests.origin.media import HlsVariant, Media
from tests.origin.responses import PLAN, send_bytes, send_file
from tests.origin.signin import SignInVideo
from tests.origin.subtitles import SubtitledVideos

_PREROLL = manifests.WINDOW_SEGMENTS * 2.0
_M3U8 = "application/vnd.apple.mpegurl"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Origin:
    """Start/stop the origin and steer it from any thread."""

    def __init__(self, media: Media, *, clock: Callable[[], float] = time.time) -> None:
        self.media = media
        self._clock = clock
        self._signer = Signer(clock)
        self._faults = Faults()
        self._log = RequestLog()
        self._lock = threading.Lock()
        self._starts: dict[str, float] = {}
        self._offline: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.youtube = YouTube(media, lambda: self.base_url, clock)
        self.subtitles = SubtitledVideos(media, lambda: self.base_url)
        self.signin = SignInVideo(media, lambda: self.base_url)
        self.feeds = FeedVideos(media, lambda: self.base_url)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("origin already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="test-origin", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None
        self._port = 0

    def __enter__(self) -> Origin:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.get("/channel/{name}/live", self._channel, name="channel"),
                web.get("/hls/{name}/master.m3u8", self._master, name="master"),
                web.get("/hls/{name}/{variant}/index.m3u8", self._variant, name="variant"),
                web.get(r"/hls/{name}/{variant}/seg/{seq:\d+}.ts", self._segment, name="segment"),
                web.get("/watch/vod", self._watch_vod, name="watch_vod"),
                web.get("/vod/video.mp4", self._vod_file, name="vod_file"),
                web.get("/watch/dash", self._watch_dash, name="watch_dash"),
                web.get("/dash/manifest.mpd", self._dash_manifest, name="dash_manifest"),
                web.get("/dash/file/{rep_id}", self._dash_file, name="dash_file"),
                *self.youtube.routes(),
                *self.subtitles.routes(),
                *self.signin.routes(),
                *self.feeds.routes(),
            ]
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("origin not started")
        return f"http://127.0.0.1:{self._port}"

    def url(self, path: str) -> str:
        """Absolute, unsigned URL of `path`."""
        return self.base_url + path

    def signed_url(self, path: str, expire: int | None = None) -> str:
        """Absolute URL of `path` signed now, with the current URL lifetime, or until
        `expire` (googlevideo's playlists list URLs that expire with the playlist's own)."""
        return f"{self.base_url}{path}?{self._signer.query(path, expire)}"

    def channel_url(self, name: str) -> str:
        return self.url(f"/channel/{name}/live")

    @property
    def vod_url(self) -> str:
        return self.url("/watch/vod")

    @property
    def dash_url(self) -> str:
        return self.url("/watch/dash")

    def reset_live(self, name: str) -> None:
        """(Re)start the stream's clock now: media sequence 0..4 again."""
        with self._lock:
            self._starts[name] = self._clock()

    def advance_live(self, name: str, seconds: float) -> None:
        """Move the stream's clock forward without waiting (starting it if needed)."""
        now = self._clock()
        with self._lock:
            self._starts[name] = self._starts.setdefault(name, now) - seconds

    def newest_live_sequence(self, name: str) -> int:
        """Media sequence number of the newest published segment of `name` right now."""
        return manifests.newest_sequence(self._elapsed(name), self.media.hls_variants[0].durations)

    def set_offline(self, name: str, offline: bool = True) -> None:
        with self._lock:
            (self._offline.add if offline else self._offline.discard)(name)

    def _elapsed(self, name: str) -> float:
        now = self._clock()
        with self._lock:
            start = self._starts.setdefault(name, now)
        return now - start + _PREROLL

    def _is_offline(self, name: str) -> bool:
        with self._lock:
            return name in self._offline

    def set_url_lifetime(self, seconds: float) -> None:
        """Lifetime of URLs issued from now on (default 3600 s)."""
        self._signer.set_lifetime(seconds)

    def expire_all(self) -> None:
        """Revoke every URL issued so far (they answer 403 from now on)."""
        self._signer.expire_all()
        self.youtube.expire_all()

    def drop_after(self, prefix: str, nbytes: int, times: int = 1) -> None:
        """The next `times` requests under `prefix` send `nbytes` of body, then the
        connection is closed (Content-Length promised the whole body)."""
        self._faults.drop_after(prefix, nbytes, times)

    def stall_after(self, prefix: str, nbytes: int, times: int = 1) -> None:
        """The next `times` requests under `prefix` send `nbytes` of body, then nothing
        more, with the connection left open, until the client closes it."""
        self._faults.stall_after(prefix, nbytes, times)

    def add_latency(self, prefix: str, seconds: float) -> None:
        """Delay every request under `prefix` by `seconds` before answering."""
        self._faults.add_latency(prefix, seconds)

    def fail_once(self, prefix: str, status: int = 500, times: int = 1) -> None:
        """The next `times` requests under `prefix` get `status` with a plain body."""
        self._faults.fail(prefix, status, times)

    def clear_faults(self) -> None:
        self._faults.clear()

    def count(self, path_or_prefix: str) -> int:
        """Requests whose path (no query string) starts with `path_or_prefix`."""
        return self._log.count(path_or_prefix)

    @property
    def requests(self) -> dict[str, int]:
        """A copy of the per-path request counter."""
        return self._log.counts()

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every request in order: method, path, query, Range header."""
        return self._log.records()

    def reset_counts(self) -> None:
        self._log.clear()

    def reset(self) -> None:
        """Back to a fresh origin: no faults, counters, offline flags or stream clocks,
        the default URL lifetime, no YouTube-style lives. (URLs revoked by `expire_all`
        stay revoked.)"""
        self.clear_faults()
        self.youtube.reset()
        self.signin.reset()
        self.reset_counts()
        self.set_url_lifetime(DEFAULT_URL_LIFETIME)
        with self._lock:
            self._offline.clear()
            self._starts.clear()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._log.add(
            RequestRecord(
                request.method,
                request.path,
                request.query_string,
                request.headers.get("Range"),
                request.headers.get("User-Agent"),
                request.headers.get("Accept-Encoding"),
            )
        )
        plan = self._faults.plan(request.path)
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if plan.fail_status is not None:
            return web.Response(status=plan.fail_status, text=f"injected {plan.fail_status}\n")
        request[PLAN] = plan
        return await handler(request)

    def _signed(self, request: web.Request) -> bool:
        query = request.query
        return self._signer.verify(request.path, query.get("expire"), query.get("sig"))

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if self._is_offline(name):
            return _text(404, "this stream is offline")
        self._elapsed(name)
        raise web.HTTPFound(self.signed_url(f"/hls/{name}/master.m3u8"))

    async def _master(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not self._signed(request):
            return _forbidden()
        if self._is_offline(name):
            return _text(404, "this stream is offline")
        self._elapsed(name)
        body = manifests.master_playlist(
            [
                (
                    variant,
                    self.signed_url(f"/hls/{name}/{variant.name}/index.m3u8", _expire(request)),
                )
                for variant in self.media.hls_variants
            ]
        )
        return await send_bytes(request, body.encode(), _M3U8)

    def _live_variant(self, request: web.Request) -> tuple[str, HlsVariant] | web.Response:
        """The stream name and variant a signed live URL names, or the error response."""
        name, variant_name = request.match_info["name"], request.match_info["variant"]
        variant = next((v for v in self.media.hls_variants if v.name == variant_name), None)
        if variant is None:
            return _text(404, "no such variant")
        if not self._signed(request):
            return _forbidden()
        return name, variant

    async def _variant(self, request: web.Request) -> web.StreamResponse:
        found = self._live_variant(request)
        if isinstance(found, web.Response):
            return found
        name, variant = found
        expire = _expire(request)
        if self._is_offline(name):
            return _text(404, "this stream is offline")
        window = manifests.live_window(self._elapsed(name), variant.durations)
        body = manifests.media_playlist(
            window,
            len(variant.durations),
            lambda seq: self.signed_url(f"/hls/{name}/{variant.name}/seg/{seq}.ts", expire),
            self.media.segment_seconds,
        )
        return await send_bytes(request, body.encode(), _M3U8)

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        found = self._live_variant(request)
        if isinstance(found, web.Response):
            return found
        name, variant = found
        seq = int(request.match_info["seq"])
        if seq > manifests.newest_sequence(self._elapsed(name), variant.durations):
            return _text(404, "segment not published yet")
        path = variant.segments[seq % len(variant.segments)]
        return await send_file(request, path, "video/mp2t")

    async def _watch_vod(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(self.signed_url("/vod/video.mp4"))

    async def _vod_file(self, request: web.Request) -> web.StreamResponse:
        if not self._signed(request):
            return _forbidden()
        return await send_file(request, self.media.vod.path, "video/mp4")

    async def _watch_dash(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(self.signed_url("/dash/manifest.mpd"))

    async def _dash_manifest(self, request: web.Request) -> web.StreamResponse:
        if not self._signed(request):
            return _forbidden()
        body = manifests.dash_manifest(
            [(rep, self.signed_url(f"/dash/file/{rep.id}")) for rep in self.media.dash]
        )
        return await send_bytes(request, body.encode(), "application/dash+xml")

    async def _dash_file(self, request: web.Request) -> web.StreamResponse:
        rep = next((r for r in self.media.dash if r.id == request.match_info["rep_id"]), None)
        if rep is None:
            return _text(404, "no such representation")
        if not self._signed(request):
            return _forbidden()
        return await send_file(request, rep.path, rep.mime_type)


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


def _expire(request: web.Request) -> int:
    """The expiry of a request's (already verified) signed URL."""
    return int(request.query["expire"])


def _forbidden() -> web.Response:
    return _text(403, "expired or invalid signature")
