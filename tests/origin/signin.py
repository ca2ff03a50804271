"""A video behind a sign-in, for the test origin (`origin.signin`).

`GET /signin/page` answers like YouTube's bot check to a request without the session
cookie: `403` with the reason phrase (and body) "Sign in to confirm you're not a bot".
yt-dlp's generic extractor puts the reason phrase into its error ("Unable to download
webpage: HTTP Error 403: Sign in to confirm you're not a bot"), which the gateway
maps to `login_required` as it does YouTube's own message. With the cookie
`COOKIE_NAME=COOKIE_VALUE` (what a `cookies.txt` for `127.0.0.1` gives yt-dlp) the page
is a 200 with one `<video>`: the VOD MP4 at `/signin/video.mp4`.

Only the page is gated: googlevideo's media URLs need no cookie either (they are
signed), and the gateway's relay sends none. `refused` and `admitted` count the page's
answers, so a test can tell that yt-dlp sent the cookie.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from aiohttp import web

from tests.origin.media import Media
from tests.origin.responses import send_bytes, send_file

COOKIE_NAME = "SID"
COOKIE_VALUE = "sekrit-session-3f9c1e7a52d84b60"
REASON = "Sign in to confirm you're not a bot"


class SignInVideo:
    def __init__(self, media: Media, base_url: Callable[[], str]) -> None:
        self._media = media
        self._base_url = base_url
        self._lock = threading.Lock()
        self.refused = 0
        self.admitted = 0

    @property
    def page_url(self) -> str:
        return self._base_url() + "/signin/page"

    def cookies_txt(self) -> str:
        """A Netscape cookies.txt that opens the page (for the origin's host)."""
        return (
            "# Netscape HTTP Cookie File\n"
            f"127.0.0.1\tFALSE\t/\tFALSE\t0\t{COOKIE_NAME}\t{COOKIE_VALUE}\n"
        )

    def reset(self) -> None:
        with self._lock:
            self.refused = self.admitted = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/signin/page", self._page, name="signin_page"),
            web.get("/signin/video.mp4", self._video, name="signin_video"),
        ]

    async def _page(self, request: web.Request) -> web.StreamResponse:
        if request.cookies.get(COOKIE_NAME) != COOKIE_VALUE:
            with self._lock:
                self.refused += 1
            return web.Response(status=403, reason=REASON, text=REASON + ".")
        with self._lock:
            self.admitted += 1
        html = (
            "<!doctype html><html><head><title>A members' video</title></head><body>"
            '<video controls src="/signin/video.mp4"></video></body></html>'
        )
        return await send_bytes(request, html.encode(), "text/html; charset=utf-8")

    async def _video(self, request: web.Request) -> web.StreamResponse:
        return await send_file(request, self._media.vod.path, "video/mp4")
