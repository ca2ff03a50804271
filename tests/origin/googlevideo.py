"""YouTube lives as googlevideo serves them, for the test origin (`origin.youtube`).

What YouTube's extractor cannot do offline is imitated here and in the yt-dlp plugin
`tests/plugins/yt_dlp_plugins/extractor/ytlocal.py`, which reads this module's player API.

Routes (added to `Origin`'s app; `{vid}` is an 11-character video id):

- `GET|POST /youtubei/v1/player?videoId={vid}` (or JSON body `{"videoId": ...}`): a
  reduced InnerTube player response (see `playerapi.py`). Each call is one "resolution":
  it mints a new `ei` and fresh signed URLs, and is counted (`extractions`).
- `GET /watch?v={vid}`: a small HTML page (the plugin does not need it).
- `GET /@{handle}/live`: JSON `{"channel": {...}, "videoId": id or null}`: the live on now
  (earliest start), else the next upcoming one, else one ended within 10 minutes, else null.
- `GET /@{handle}/streams`: JSON `{"channel": {...}, "videos": [...]}`: every live of the
  channel that is on now or upcoming, newest first (ended ones after them).
- `GET /api/manifest/hls_variant/expire/{ts}/ei/{ei}/ip/127.0.0.1/id/{vid}.1/source/
  yt_live_broadcast/.../sparams/.../sig/{sig}/file/index.m3u8`: the master (muxed: itags
  91 and 92; demuxed: `demuxed/1`, EXT-X-MEDIA audio itag 233 and video-only 269, 229).
- `GET /api/manifest/hls_playlist/expire/{ts}/ei/{ei}/ip/127.0.0.1/id/{vid}.1/itag/{n}/
  .../sig/{sig}/playlist/index.m3u8`: the media playlist: TARGETDURATION 2, a window of 5
  segments, MEDIA-SEQUENCE counted from the live's start, DISCONTINUITY-SEQUENCE (0),
  PROGRAM-DATE-TIME on every segment; segment timestamps keep going up across the 30 s
  media loop (`tsclock.shift`), so, as on YouTube, there is no discontinuity.
- `GET /videoplayback/id/{vid}.1/itag/{n}/source/yt_live_broadcast/expire/{ts}/ei/{ei}/
  .../sq/{N}/dur/{d}/.../sig/{sig}/file/seg.ts`: one MPEG-TS segment (404 if not yet
  published); `/videoplayback/id/{vid}/itag/18/...` (no `sq`) is the ended live's MP4.

Every googlevideo URL is signed over its whole path before `/sig/`: a changed character
anywhere, an `expire` in the past or `expire_all()` → 403. URLs listed in a playlist carry
that playlist's `expire` and `ei`. Live URLs of a live that has ended, or not begun, → 404.
`reject_segments_after(vid, s)`: segments fetched more than `s` seconds after the player
call that minted their `ei` → 403 although `expire` is hours away (a rejected PO token).
`set_available_at_delay(vid, s)`: the ended live's MP4 answers 403 until `s` seconds after
the player call, and the player API advertises it as a pre-roll ad of `s` seconds.

It deliberately leaves out SABR, DASH lives, `n` challenges, POST-live DVR and
multi-language audio.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from aiohttp import web

from tests.origin import manifests, tsclock
from tests.origin.media import Media
from tests.origin.playerapi import channel_id_of, player_response
from tests.origin.responses import send_bytes, send_file, send_ranged_bytes
from tests.origin.youtube_media import (
    LOOP_SEGMENTS,
    SEGMENT_SECONDS,
    LazyYoutubeMedia,
    YoutubeMedia,
)

Flavour = Literal["muxed", "demuxed"]
Status = Literal["upcoming", "live", "ended"]
RequestKind = Literal["player", "master", "playlist", "segment", "vod"]

URL_LIFETIME = 21540.0  # YouTube's expiresInSeconds
_PREROLL = manifests.WINDOW_SEGMENTS * SEGMENT_SECONDS
_RECENTLY_ENDED = 600.0
_M3U8 = "application/vnd.apple.mpegurl"
_MUXED_ITAGS = (91, 92)
_DEMUXED_ITAGS = (269, 229, 233)


@dataclass
class Live:
    """One broadcast and its schedule (unix seconds). `end` None: never ends."""

    video_id: str
    handle: str
    title: str
    flavour: Flavour
    start: float
    end: float | None
    created: float
    description: str = ""
    reject_after: float | None = None
    available_delay: float = 0.0

    def status(self, now: float) -> Status:
        if now < self.start:
            return "upcoming"
        if self.end is not None and now >= self.end:
            return "ended"
        return "live"

    @property
    def itags(self) -> tuple[int, ...]:
        return _MUXED_ITAGS if self.flavour == "muxed" else _DEMUXED_ITAGS


@dataclass(frozen=True)
class GoogleVideoRequest:
    """One request the googlevideo routes answered (after routing, before auth)."""

    kind: RequestKind
    video_id: str | None
    itag: int | None
    sq: int | None
    ei: str | None
    status: int


@dataclass
class _Resolution:
    video_id: str
    minted: float


@dataclass
class _State:
    lives: dict[str, Live] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)
    resolutions: dict[str, _Resolution] = field(default_factory=dict)
    log: list[GoogleVideoRequest] = field(default_factory=list)
    generation: int = 0
    lifetime: float = URL_LIFETIME


class YouTube:
    """Lives, channels and googlevideo URLs; steered from tests, served on the origin."""

    def __init__(self, media: Media, base_url: Callable[[], str], clock: Callable[[], float]):
        self._media = LazyYoutubeMedia(media.directory / "youtube")
        self._vod = media.vod
        self._base_url = base_url
        self._clock = clock
        self._secret = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._state = _State()

    def add_live(
        self,
        video_id: str,
        *,
        handle: str = "localnews",
        title: str | None = None,
        flavour: Flavour = "muxed",
        starts_in: float = -60.0,
        ends_in: float | None = None,
        channel_name: str | None = None,
        description: str = "",
    ) -> Live:
        """Register a live of channel `@handle` (created if new). It starts `starts_in`
        seconds from now (negative: already live) and ends `ends_in` from now (None:
        never). Encodes the test media on first call (a few seconds, once a session)."""
        if len(video_id) != 11:
            raise ValueError("YouTube video ids have 11 characters")
        self._media.get()
        now = self._clock()
        live = Live(
            video_id=video_id,
            handle=handle,
            title=title or f"Local live {video_id}",
            flavour=flavour,
            start=now + starts_in,
            end=None if ends_in is None else now + ends_in,
            created=min(now, now + starts_in) - 3600,
            description=description or f"A local imitation of a YouTube live ({flavour}).",
        )
        with self._lock:
            self._state.lives[video_id] = live
            self._state.channels.setdefault(handle, channel_name or handle.title())
        return live

    def schedule(
        self, video_id: str, *, start: float | None = None, end: float | None = None
    ) -> None:
        """Set absolute start and/or end times (unix seconds) of a live."""
        with self._lock:
            live = self._state.lives[video_id]
            if start is not None:
                live.start = start
            if end is not None:
                live.end = end

    def start_now(self, video_id: str) -> None:
        self.schedule(video_id, start=self._clock())

    def end_now(self, video_id: str) -> None:
        self.schedule(video_id, end=self._clock())

    def status(self, video_id: str) -> Status:
        with self._lock:
            return self._state.lives[video_id].status(self._clock())

    def reject_segments_after(self, video_id: str, seconds: float | None) -> None:
        """Segments answer 403 once `seconds` have passed since the player call that
        minted their URLs (None: never), as with a missing or rejected PO token."""
        with self._lock:
            self._state.lives[video_id].reject_after = seconds

    def set_available_at_delay(self, video_id: str, seconds: float) -> None:
        with self._lock:
            self._state.lives[video_id].available_delay = seconds

    def set_url_lifetime(self, seconds: float) -> None:
        """`expire` of URLs minted from now on is this far ahead (default 21540 s)."""
        with self._lock:
            self._state.lifetime = seconds

    def expire_all(self) -> None:
        with self._lock:
            self._state.generation += 1

    def reset(self) -> None:
        with self._lock:
            self._state = _State(generation=self._state.generation)

    def watch_url(self, video_id: str) -> str:
        return f"{self._base_url()}/watch?v={video_id}"

    def live_url(self, handle: str) -> str:
        return f"{self._base_url()}/@{handle}/live"

    def streams_url(self, handle: str) -> str:
        return f"{self._base_url()}/@{handle}/streams"

    def channel_id(self, handle: str) -> str:
        return channel_id_of(handle)

    def requests(
        self,
        video_id: str | None = None,
        *,
        itag: int | None = None,
        kind: RequestKind | None = None,
    ) -> list[GoogleVideoRequest]:
        """Requests seen so far, oldest first, filtered by what is given."""
        with self._lock:
            log = list(self._state.log)
        return [
            r
            for r in log
            if (video_id is None or r.video_id == video_id)
            and (itag is None or r.itag == itag)
            and (kind is None or r.kind == kind)
        ]

    def count(
        self,
        video_id: str | None = None,
        *,
        itag: int | None = None,
        kind: RequestKind | None = None,
    ) -> int:
        return len(self.requests(video_id, itag=itag, kind=kind))

    def extractions(self, video_id: str | None = None) -> int:
        """Player API calls (resolutions) for `video_id`, or for all videos."""
        return self.count(video_id, kind="player")

    def segment_fetches(self, video_id: str, itag: int) -> dict[int, int]:
        """How many times each media sequence number of `itag` was fetched."""
        counts: dict[int, int] = {}
        for r in self.requests(video_id, itag=itag, kind="segment"):
            if r.sq is not None:
                counts[r.sq] = counts.get(r.sq, 0) + 1
        return counts

    def newest_sequence(self, video_id: str) -> int:
        with self._lock:
            live = self._state.lives[video_id]
        return self._newest(live, self._clock())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/youtubei/v1/player", self._player, name="yt_player"),
            web.post("/youtubei/v1/player", self._player, name="yt_player_post"),
            web.get("/watch", self._watch, name="yt_watch"),
            web.get(r"/@{handle}/live", self._channel_live, name="yt_channel_live"),
            web.get(r"/@{handle}/streams", self._channel_streams, name="yt_channel_streams"),
            web.get("/api/manifest/hls_variant/{rest:.+}", self._master, name="yt_master"),
            web.get("/api/manifest/hls_playlist/{rest:.+}", self._playlist, name="yt_playlist"),
            web.get("/videoplayback/{rest:.+}", self._videoplayback, name="yt_videoplayback"),
        ]

    # Signing: the HMAC covers the whole path up to `/sig/`, and the revocation generation.

    def _digest(self, signed: str, generation: int) -> str:
        message = f"{signed}\n{generation}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40].upper()

    def _sign(self, prefix: str, params: list[tuple[str, str]], tail: str) -> str:
        keys = ",".join(k for k, _ in params)
        signed = prefix + "".join(f"/{k}/{v}" for k, v in params) + f"/sparams/{keys}"
        with self._lock:
            generation = self._state.generation
        return f"{self._base_url()}{signed}/sig/{self._digest(signed, generation)}/{tail}"

    def _verify(self, path: str) -> dict[str, str] | None:
        """The path's parameters if its signature is good and unexpired, else None."""
        signed, sep, rest = path.rpartition("/sig/")
        sig = rest.split("/", 1)[0]
        with self._lock:
            generation = self._state.generation
        if not sep or not hmac.compare_digest(sig, self._digest(signed, generation)):
            return None
        parts = signed.split("/")
        start = 4 if parts[1] == "api" else 2
        params = dict(zip(parts[start::2], parts[start + 1 :: 2], strict=False))
        expire = params.get("expire", "")
        if not expire.isdigit() or self._clock() >= int(expire):
            return None
        return params

    def _common(self, expire: int, ei: str, video_id: str) -> list[tuple[str, str]]:
        return [
            ("expire", str(expire)),
            ("ei", ei),
            ("ip", "127.0.0.1"),
            ("id", f"{video_id}.1"),
        ]

    def _master_url(self, live: Live, expire: int, ei: str) -> str:
        params = [*self._common(expire, ei, live.video_id), ("source", "yt_live_broadcast")]
        params += [("requiressl", "yes"), ("playlist_duration", "30")]
        if live.flavour == "demuxed":
            params.append(("demuxed", "1"))
        params += [("maudio", "1"), ("vprv", "1"), ("itag", "0"), ("playlist_type", "DVR")]
        return self._sign("/api/manifest/hls_variant", params, "file/index.m3u8")

    def _playlist_url(self, live: Live, itag: int, expire: int, ei: str) -> str:
        params = [*self._common(expire, ei, live.video_id), ("itag", str(itag))]
        params += [("source", "yt_live_broadcast"), ("requiressl", "yes"), ("live", "1")]
        params += [("playlist_duration", "30"), ("vprv", "1"), ("playlist_type", "DVR")]
        return self._sign("/api/manifest/hls_playlist", params, "playlist/index.m3u8")

    def _segment_url(self, live: Live, itag: int, sq: int, expire: int, ei: str) -> str:
        params = [("id", f"{live.video_id}.1"), ("itag", str(itag))]
        params += [("source", "yt_live_broadcast"), ("expire", str(expire)), ("ei", ei)]
        params += [("ip", "127.0.0.1"), ("requiressl", "yes"), ("live", "1")]
        params += [("playlist_type", "DVR"), ("sq", str(sq)), ("dur", f"{SEGMENT_SECONDS}.000")]
        return self._sign("/videoplayback", params, "file/seg.ts")

    def _vod_url(self, live: Live, expire: int, ei: str) -> str:
        params = [("id", live.video_id), ("itag", "18"), ("source", "youtube")]
        params += [("expire", str(expire)), ("ei", ei), ("ip", "127.0.0.1")]
        params += [("requiressl", "yes"), ("clen", str(self._vod.size))]
        return self._sign("/videoplayback", params, "file/video.mp4")

    # Live timeline: a live "encoder" starts `_PREROLL` seconds before `start`, so a
    # live that has just begun already has a full window (sequence 0..4).

    def _newest(self, live: Live, now: float) -> int:
        return int((now - live.start + _PREROLL) // SEGMENT_SECONDS) - 1

    def _date_of(self, live: Live, sq: int) -> str:
        moment = live.start - _PREROLL + sq * SEGMENT_SECONDS
        stamp = dt.datetime.fromtimestamp(moment, dt.UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # Handlers

    def _record(self, request: GoogleVideoRequest) -> None:
        with self._lock:
            self._state.log.append(request)

    def _live(self, video_id: str | None) -> Live | None:
        with self._lock:
            return self._state.lives.get(video_id or "")

    async def _player(self, request: web.Request) -> web.StreamResponse:
        video_id = request.query.get("videoId")
        if video_id is None and request.can_read_body:
            body = await request.json()
            video_id = body.get("videoId") if isinstance(body, dict) else None
        live = self._live(video_id)
        now = self._clock()
        ei = secrets.token_urlsafe(12)
        self._record(GoogleVideoRequest("player", video_id, None, None, ei, 200))
        if live is None:
            unavailable = {"playabilityStatus": {"status": "ERROR", "reason": "Video unavailable"}}
            return web.json_response(unavailable)
        with self._lock:
            self._state.resolutions[ei] = _Resolution(live.video_id, now)
            lifetime = self._state.lifetime
            channel = self._state.channels[live.handle]
            live = replace(live)
        expire = int(now + lifetime)
        status = live.status(now)
        urls: dict[str, object] = {}
        if status == "live":
            urls["master"] = self._master_url(live, expire, ei)
            urls["playlists"] = {i: self._playlist_url(live, i, expire, ei) for i in live.itags}
        elif status == "ended":
            urls["vod"] = self._vod_url(live, expire, ei)
        body = player_response(
            live, status, channel, now, urls, self._media.get(), self._vod, int(lifetime)
        )
        return web.json_response(body)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        live = self._live(request.query.get("v"))
        if live is None:
            return web.Response(status=404, text="Video unavailable\n")
        title = html.escape(live.title)
        page = f"<!doctype html><title>{title} - YouTube</title><h1>{title}</h1>\n"
        return web.Response(text=page, content_type="text/html")

    def _channel_json(self, handle: str) -> dict[str, str] | None:
        with self._lock:
            name = self._state.channels.get(handle)
        if name is None:
            return None
        return {"handle": f"@{handle}", "name": name, "channelId": channel_id_of(handle)}

    def _lives_of(self, handle: str) -> list[Live]:
        with self._lock:
            return [replace(v) for v in self._state.lives.values() if v.handle == handle]

    async def _channel_live(self, request: web.Request) -> web.StreamResponse:
        handle = request.match_info["handle"]
        channel = self._channel_json(handle)
        if channel is None:
            return web.Response(status=404, text="This channel does not exist\n")
        now = self._clock()
        lives = self._lives_of(handle)
        on_now = sorted((v for v in lives if v.status(now) == "live"), key=lambda v: v.start)
        upcoming = sorted((v for v in lives if v.status(now) == "upcoming"), key=lambda v: v.start)
        ended = sorted(
            (v for v in lives if v.status(now) == "ended" and now - (v.end or 0) < _RECENTLY_ENDED),
            key=lambda v: -(v.end or 0),
        )
        chosen = next(iter(on_now + upcoming + ended), None)
        return web.json_response({"channel": channel, "videoId": chosen and chosen.video_id})

    async def _channel_streams(self, request: web.Request) -> web.StreamResponse:
        handle = request.match_info["handle"]
        channel = self._channel_json(handle)
        if channel is None:
            return web.Response(status=404, text="This channel does not exist\n")
        now = self._clock()
        order = {"live": 0, "upcoming": 1, "ended": 2}
        lives = sorted(self._lives_of(handle), key=lambda v: (order[v.status(now)], -v.start))
        videos = [
            {
                "videoId": v.video_id,
                "title": v.title,
                "status": v.status(now),
                "scheduledStartTime": int(v.start) if v.status(now) == "upcoming" else None,
            }
            for v in lives
        ]
        return web.json_response({"channel": channel, "videos": videos})

    def _authorise(
        self, request: web.Request, kind: RequestKind
    ) -> tuple[Live, dict[str, str]] | web.Response:
        """Check a googlevideo path: signature, expiry, the live's state; record it."""
        params = self._verify(request.path) or {}
        video_id = params.get("id", "").split(".")[0] or None
        itag = int(params["itag"]) if params.get("itag", "").isdigit() else None
        sq = int(params["sq"]) if params.get("sq", "").isdigit() else None
        live = self._live(video_id)
        status, reason = 200, ""
        if not params:
            status, reason = 403, "expired or invalid signature"
        elif live is None or not (
            kind == "master" or itag in live.itags or (kind == "vod" and itag == 18)
        ):
            status, reason = 404, "no such stream"
        elif kind != "vod" and live.status(self._clock()) != "live":
            status, reason = 404, "this live stream is not on air"
        elif kind == "segment" and self._rejected(live, params.get("ei", "")):
            status, reason = 403, "playback rejected (PO token)"
        elif kind == "vod" and self._too_early(live, params.get("ei", "")):
            status, reason = 403, "not available yet"
        self._record(GoogleVideoRequest(kind, video_id, itag, sq, params.get("ei"), status))
        if status != 200 or live is None:
            return web.Response(status=status, text=reason + "\n")
        return live, params

    def _rejected(self, live: Live, ei: str) -> bool:
        with self._lock:
            resolution = self._state.resolutions.get(ei)
        if live.reject_after is None or resolution is None:
            return False
        return self._clock() - resolution.minted > live.reject_after

    def _too_early(self, live: Live, ei: str) -> bool:
        with self._lock:
            resolution = self._state.resolutions.get(ei)
        minted = resolution.minted if resolution is not None else 0.0
        return self._clock() < minted + live.available_delay

    async def _master(self, request: web.Request) -> web.StreamResponse:
        found = self._authorise(request, "master")
        if isinstance(found, web.Response):
            return found
        live, params = found
        media = self._media.get()
        expire, ei = int(params["expire"]), params["ei"]
        playlists = {i: self._playlist_url(live, i, expire, ei) for i in live.itags}
        body = _master_playlist(live, media, playlists)
        return await send_bytes(request, body.encode(), _M3U8)

    async def _playlist(self, request: web.Request) -> web.StreamResponse:
        found = self._authorise(request, "playlist")
        if isinstance(found, web.Response):
            return found
        live, params = found
        itag, expire, ei = int(params["itag"]), int(params["expire"]), params["ei"]
        rendition = self._media.get().rendition(itag)
        newest = self._newest(live, self._clock())
        first = max(0, newest - manifests.WINDOW_SEGMENTS + 1)
        # Timestamps keep going up across the media loop (tsclock), as a real live's do:
        # no discontinuity.
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        ]
        for sq in range(first, newest + 1):
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{self._date_of(live, sq)}")
            lines.append(f"#EXTINF:{rendition.durations[sq % LOOP_SEGMENTS]:.3f},")
            lines.append(self._segment_url(live, itag, sq, expire, ei))
        return await send_bytes(request, ("\n".join(lines) + "\n").encode(), _M3U8)

    async def _videoplayback(self, request: web.Request) -> web.StreamResponse:
        is_vod = "/sq/" not in request.path
        found = self._authorise(request, "vod" if is_vod else "segment")
        if isinstance(found, web.Response):
            return found
        live, params = found
        if is_vod:
            return await send_file(request, self._vod.path, "video/mp4")
        sq = int(params.get("sq", "-1"))
        if sq < 0 or sq > self._newest(live, self._clock()):
            return web.Response(status=404, text="segment not published yet\n")
        rendition = self._media.get().rendition(int(params["itag"]))
        path: Path = rendition.segments[sq % LOOP_SEGMENTS]
        loops = sq // LOOP_SEGMENTS
        body = tsclock.shift(path.read_bytes(), loops * SEGMENT_SECONDS * LOOP_SEGMENTS * 90_000)
        return await send_ranged_bytes(request, body, "video/mp2t")


def _master_playlist(live: Live, media: YoutubeMedia, playlists: dict[int, str]) -> str:
    lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    audio_group = None
    if live.flavour == "demuxed":
        audio = media.of_kind("audio")[0]
        audio_group = str(audio.itag)
        lines.append(
            f'#EXT-X-MEDIA:URI="{playlists[audio.itag]}",TYPE=AUDIO,GROUP-ID="{audio_group}",'
            'NAME="Default",DEFAULT=YES,AUTOSELECT=YES'
        )
    for itag in live.itags:
        rendition = media.rendition(itag)
        if rendition.kind == "audio":
            continue
        attrs = (
            f'BANDWIDTH={rendition.bandwidth},CODECS="{rendition.codecs}",'
            f"RESOLUTION={rendition.width}x{rendition.height},FRAME-RATE={rendition.fps},"
            "VIDEO-RANGE=SDR"
        )
        if audio_group is not None:
            attrs += f',AUDIO="{audio_group}"'
        lines += [f"#EXT-X-STREAM-INF:{attrs},CLOSED-CAPTIONS=NONE", playlists[itag]]
    return "\n".join(lines) + "\n"
