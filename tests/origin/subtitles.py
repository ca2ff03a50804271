"""Videos with subtitles, for the test origin (`origin.subtitles`).

Two shapes that yt-dlp's generic extractor reports as `subtitles`:

- `GET /subs/page`: an HTML page with one `<video>` (the VOD MP4) and a
  `<track kind="subtitles" srclang="en">` pointing at `GET /subs/en.vtt`: one WebVTT file
  (`ONE_FILE_VTT`), a track whose download must arrive byte for byte.
- `GET /subs/hls/master.m3u8`: an HLS VOD whose variant (`/subs/hls/video.m3u8`, the
  first `HLS_SEGMENTS` 2 s MPEG-TS segments of the live material) is tied to an
  `EXT-X-MEDIA:TYPE=SUBTITLES` rendition in German (`/subs/hls/subs_de.m3u8`): a media
  playlist of WebVTT segments (`/subs/hls/sub/{n}.vtt`, `HLS_VTT_SEGMENTS`), each with
  its own `WEBVTT` header and `X-TIMESTAMP-MAP`. The first two map local time 0 to
  MPEG-TS `BASE_MPEGTS` and carry absolute cue times; the third maps local 0 to its own
  start (`BASE_MPEGTS` + 4 s), so its cue at local 0.5 s is at 4.5 s of the video.

`HLS_CUES` is the number of cues in the rendition; `HLS_JOINED_VTT` is the one VTT file
the gateway should make of it (cue times on the first segment's timeline).

It deliberately serves no signatures or faults: the subtitle path is what is tested.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from tests.origin.media import Media
from tests.origin.responses import send_bytes, send_file

HLS_SEGMENTS = 3
BASE_MPEGTS = 900000  # 10 s at 90 kHz, the MPEG-TS start many packagers use

ONE_FILE_VTT = (
    "WEBVTT\n"
    "\n"
    "NOTE made for the test origin\n"
    "\n"
    "1\n"
    "00:00:00.500 --> 00:00:02.000\n"
    "Hello, <i>world</i>.\n"
    "\n"
    "2\n"
    "00:00:02.500 --> 00:00:04.000 align:start position:10%\n"
    "Second line, with a comma\n"
    "and two lines.\n"
    "\n"
    "00:00:05.000 --> 00:00:07.500\n"
    "Zwölf Boxkämpfer — ünïcödé\n"
)
ONE_FILE_CUES = 3

_HLS_VTT = (
    f"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{BASE_MPEGTS},LOCAL:00:00:00.000\n"
    "\n"
    "00:00:00.200 --> 00:00:01.000\n"
    "Erster Satz\n"
    "\n"
    "00:00:01.200 --> 00:00:01.900\n"
    "Zweiter Satz\n",
    f"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{BASE_MPEGTS},LOCAL:00:00:00.000\n"
    "\n"
    "00:00:02.100 --> 00:00:03.500\n"
    "Dritter Satz\n",
    f"WEBVTT\nX-TIMESTAMP-MAP=LOCAL:00:00:00.000,MPEGTS:{BASE_MPEGTS + 4 * 90000}\n"
    "\n"
    "00:00:00.500 --> 00:00:01.500\n"
    "Vierter Satz\n",
)
HLS_VTT_SEGMENTS = len(_HLS_VTT)
HLS_CUES = 4
HLS_JOINED_VTT = (
    "WEBVTT\n"
    "\n"
    "00:00:00.200 --> 00:00:01.000\n"
    "Erster Satz\n"
    "\n"
    "00:00:01.200 --> 00:00:01.900\n"
    "Zweiter Satz\n"
    "\n"
    "00:00:02.100 --> 00:00:03.500\n"
    "Dritter Satz\n"
    "\n"
    "00:00:04.500 --> 00:00:05.500\n"
    "Vierter Satz\n"
)

_VTT = "text/vtt; charset=utf-8"
_M3U8 = "application/vnd.apple.mpegurl"


class SubtitledVideos:
    def __init__(self, media: Media, base_url: Callable[[], str]) -> None:
        self._media = media
        self._base_url = base_url

    @property
    def page_url(self) -> str:
        return self._base_url() + "/subs/page"

    @property
    def hls_url(self) -> str:
        return self._base_url() + "/subs/hls/master.m3u8"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/subs/page", self._page, name="subs_page"),
            web.get("/subs/en.vtt", self._one_file, name="subs_one_file"),
            web.get("/subs/video.mp4", self._video, name="subs_video"),
            web.get("/subs/hls/master.m3u8", self._master, name="subs_master"),
            web.get("/subs/hls/video.m3u8", self._video_playlist, name="subs_video_playlist"),
            web.get("/subs/hls/subs_de.m3u8", self._subs_playlist, name="subs_playlist"),
            web.get(r"/subs/hls/seg/{n:\d+}.ts", self._segment, name="subs_segment"),
            web.get(r"/subs/hls/sub/{n:\d+}.vtt", self._vtt_segment, name="subs_vtt_segment"),
        ]

    async def _page(self, request: web.Request) -> web.StreamResponse:
        html = (
            "<!doctype html><html><head><title>A subtitled video</title></head><body>"
            '<video controls src="/subs/video.mp4">'
            '<track kind="subtitles" src="/subs/en.vtt" srclang="en" label="English">'
            "</video></body></html>"
        )
        return await send_bytes(request, html.encode(), "text/html; charset=utf-8")

    async def _one_file(self, request: web.Request) -> web.StreamResponse:
        return await send_bytes(request, ONE_FILE_VTT.encode(), _VTT)

    async def _video(self, request: web.Request) -> web.StreamResponse:
        return await send_file(request, self._media.vod.path, "video/mp4")

    async def _master(self, request: web.Request) -> web.StreamResponse:
        variant = self._media.hls_variants[0]
        body = (
            "#EXTM3U\n"
            '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Deutsch",LANGUAGE="de",'
            'DEFAULT=NO,AUTOSELECT=YES,URI="subs_de.m3u8"\n'
            f"#EXT-X-STREAM-INF:BANDWIDTH={variant.bandwidth},"
            f"RESOLUTION={variant.width}x{variant.height},"
            f'CODECS="{variant.codecs}",SUBTITLES="subs"\n'
            "video.m3u8\n"
        )
        return await send_bytes(request, body.encode(), _M3U8)

    async def _video_playlist(self, request: web.Request) -> web.StreamResponse:
        durations = self._media.hls_variants[0].durations[:HLS_SEGMENTS]
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2"]
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
        for n, duration in enumerate(durations):
            lines += [f"#EXTINF:{duration:.6f},", f"seg/{n}.ts"]
        lines.append("#EXT-X-ENDLIST")
        return await send_bytes(request, ("\n".join(lines) + "\n").encode(), _M3U8)

    async def _subs_playlist(self, request: web.Request) -> web.StreamResponse:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2"]
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
        for n in range(HLS_VTT_SEGMENTS):
            lines += ["#EXTINF:2.000000,", f"sub/{n}.vtt"]
        lines.append("#EXT-X-ENDLIST")
        return await send_bytes(request, ("\n".join(lines) + "\n").encode(), _M3U8)

    async def _segment(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        if n >= HLS_SEGMENTS:
            raise web.HTTPNotFound()
        path = self._media.hls_variants[0].segments[n]
        return await send_file(request, path, "video/mp2t")

    async def _vtt_segment(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        if n >= HLS_VTT_SEGMENTS:
            raise web.HTTPNotFound()
        return await send_bytes(request, _HLS_VTT[n].encode(), _VTT)
