"""The routes every deployment needs: /health, /ready, /metrics, the login page.

The login page compares the submitted token in constant time and is throttled per
client (`access.check_login`); the token is never logged.

`/health` is liveness with component status: it answers 200 while the process
runs, with `status` `healthy` or `degraded` (Redis unreachable, ffmpeg or a JS
runtime missing, the PO-token provider configured but down). `/ready` answers 503
until start-up has finished and once shutdown has begun. `/metrics` is the app's
own Prometheus registry.

The probes of external programs are `probes.Probes`. Deeper diagnostics (proxy,
cookies file format, per-channel history) belong to the diagnostics page, not here.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from . import __version__
from .access import (
    COOKIE,
    check_login,
    clear_login,
    cookie_value,
    login_client,
    safe_next,
    token_matches,
)
from .core import core, readiness
from .errors import ServiceUnavailable
from .extractor import YTDLP_VERSION
from .metrics import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


async def health(request: Request) -> Response:
    svc = core(request)
    cache_status = await svc.cache.status()
    redis_ok = bool(cache_status["connected"])
    svc.metrics.redis_up.set(1 if redis_ok else 0)
    pot = await svc.probes.pot_provider()
    components: dict[str, Any] = {
        "redis": "embedded"
        if cache_status["backend"] == "embedded"
        else ("connected" if redis_ok else "unavailable"),
        "ffmpeg": svc.probes.ffmpeg.to_dict(),
        "js_runtime": svc.probes.js_runtime.to_dict(),
        "pot_provider": pot,
    }
    degraded = (
        not redis_ok
        or not svc.probes.ffmpeg.found
        or not svc.probes.js_runtime.found
        or (pot["configured"] and not pot.get("reachable"))
    )
    body = {
        "status": "degraded" if degraded else "healthy",
        "version": __version__,
        "ytdlp_version": YTDLP_VERSION,
        "components": components,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def ready(request: Request) -> Response:
    if readiness(request).ready:
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})
    raise ServiceUnavailable("Starting up or shutting down", code="not_ready")


async def metrics(request: Request) -> Response:
    svc = core(request)
    cache_status = await svc.cache.status()
    svc.metrics.redis_up.set(1 if cache_status["connected"] else 0)
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def login(request: Request) -> Response:
    svc = core(request)
    token = svc.settings.access_token
    target = safe_next(request.query_params.get("next"))
    if token is None:
        return RedirectResponse(target, status_code=303)
    wrong = False
    if request.method == "POST":
        attempt = await check_login(svc.cache, login_client(request))
        form = await request.form()
        candidate = str(form.get("token", ""))
        target = safe_next(str(form.get("next", "")) or target)
        if token_matches(candidate, token):
            await clear_login(svc.cache, attempt)
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                cookie_value(svc.signer, token),
                max_age=30 * 86400,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
            )
            return response
        wrong = True
    return svc.templates.render(
        request, "login.html", {"next": target, "wrong": wrong}, status=401 if wrong else 200
    )


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
