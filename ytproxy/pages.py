"""Server-rendered pages that belong to no single job: the start page.

The start page is the analyse form; its behaviour (posting to `/v1/analyze`,
polling the task, showing the result) lives in the templates and `ytproxy.analyse`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .services import services


async def index(request: Request) -> Response:
    return services(request).templates.render(request, "index.html")
