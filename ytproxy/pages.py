"""Server-rendered pages that belong to no single job: the start page, and what makes
the gateway an installable web app that phones can share links to.

The start page is the analyse form; its behaviour (posting to `/v1/analyze`,
polling the task, showing the result) lives in the templates and `ytproxy.analyse`.
`/?url=…` (a bookmarklet, a link) or `/?text=…` (Android's share sheet, which often
puts the link inside the shared text) fills the form in and starts the analysis.

`/manifest.webmanifest` names the app, its icons and its `share_target` (a GET to `/`
with `url`, `text` and `title`); `/sw.js` is a service worker that lets every request
through untouched: it exists because browsers want one before they offer to install,
and it caches nothing, least of all the API. Both are open without `ACCESS_TOKEN`
(`access.OPEN_PATHS`): they hold nothing private, and browsers fetch the manifest
without cookies.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .access import base_url
from .core import core
from .web import STATIC_DIR

# The first http(s) URL in shared text ("Look at this https://youtu.be/x via YouTube").
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"']+", re.I)
_MAX_SHARED = 2048


async def index(request: Request) -> Response:
    svc = core(request)
    context = {
        "shared_url": shared_url(request),
        "bookmarklet": bookmarklet(base_url(request, svc.settings.public_base_url)),
    }
    return svc.templates.render(request, "index.html", context)


def shared_url(request: Request) -> str:
    """The link a share or a bookmarklet sent, or "" (the form's own check applies)."""
    params = request.query_params
    for candidate in (params.get("url", ""), params.get("text", "")):
        match = _URL_IN_TEXT.search(candidate.strip()[:_MAX_SHARED])
        if match:
            return match.group(0).rstrip(".,;:!?)")
    return ""


def bookmarklet(base: str) -> str:
    return f"javascript:location.href='{base}/?url='+encodeURIComponent(location.href)"


async def manifest(request: Request) -> Response:
    body = {
        "id": "/",
        "name": "ytproxy",
        "short_name": "ytproxy",
        "description": "Your own YouTube gateway: analyse, download, watch live channels.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#d93526",
        "icons": [
            {
                "src": request.url_for("static", path=f"icon-{size}.png").path,
                "sizes": f"{size}x{size}",
                "type": "image/png",
                "purpose": "any",
            }
            for size in (192, 512)
        ],
        "share_target": {
            "action": "/",
            "method": "GET",
            "enctype": "application/x-www-form-urlencoded",
            "params": {"title": "title", "text": "text", "url": "url"},
        },
    }
    return JSONResponse(
        body,
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


async def service_worker(request: Request) -> Response:
    return FileResponse(
        STATIC_DIR / "sw.js",
        media_type="text/javascript",
        headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"},
    )
