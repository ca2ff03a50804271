"""Rendering: Jinja2 pages and fragments, and the one error handler.

`Templates.render(request, name, context)` renders a page (or, for a name starting
with `_`, an HTMX fragment) with `url_for`, `t` (translate), `lang` and `static`
available. `error_response(request, exc)` turns a `YtproxyError` into JSON for API
clients, an HTML page for browsers, or a fragment for HTMX requests; it never
includes a stack trace.

It does not decide what a page shows: the endpoints do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope

from . import __version__
from .errors import RangeNotSatisfiable, YtproxyError
from .i18n import COOKIE, LANGUAGES, pick_language, translate

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
_JSON_PREFIXES = ("/api/", "/v1/", "/live/", "/metrics", "/health", "/ready")


class Templates:
    def __init__(self, directory: Path = TEMPLATES_DIR, *, login_required: bool = False) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["version"] = __version__
        # ACCESS_TOKEN is set: pages link to the settings page and to logout.
        self.env.globals["login_required"] = login_required

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        lang = pick_language(request)

        def url_for(route: str, /, **params: Any) -> str:
            return str(request.url_for(route, **params).path)

        def t(key: str, **values: object) -> str:
            return translate(lang, key, **values)

        def static(path: str) -> str:
            return f"{url_for('static', path=path)}?v={__version__}"

        values: dict[str, Any] = {
            "request": request,
            "url_for": url_for,
            "t": t,
            "lang": lang,
            "languages": LANGUAGES,
            "static": static,
            "current_path": request.url.path,
        }
        values.update(context or {})
        html = self.env.get_template(name).render(values)
        response = HTMLResponse(html, status_code=status, headers=headers)
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return response


def scope_header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case, as ASGI gives names) of a request,
    read from its scope without building Starlette's `Headers` (for the hot routes)."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def wants_html(request: Request) -> bool:
    """Browsers asking for a page get HTML errors; API clients and players get JSON."""
    if request.url.path.startswith(_JSON_PREFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_response(request: Request, exc: YtproxyError) -> Response:
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, RangeNotSatisfiable) and exc.size is not None:
        headers["Content-Range"] = f"bytes */{exc.size}"
    templates = _templates_of(request)
    if templates is not None and request.headers.get("hx-request") == "true":
        return templates.render(
            request, "_error.html", {"error": exc}, status=exc.status_code, headers=headers
        )
    if templates is not None and wants_html(request):
        return templates.render(
            request, "error.html", {"error": exc}, status=exc.status_code, headers=headers
        )
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code, headers=headers)


def _templates_of(request: Request) -> Templates | None:
    """The app's templates from the lifespan state (absent before start-up)."""
    state: dict[str, Any] = request.scope.get("state") or {}
    found = getattr(state.get("core"), "templates", None)
    return found if isinstance(found, Templates) else None
