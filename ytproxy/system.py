"""The routes every deployment needs: /health, /ready, /metrics, the login page.

The login page compares the submitted token in constant time and is throttled per
client (`access.check_login`); the token is never logged.

`/health` is liveness with component status: it answers 200 while the process
runs, with `status` `healthy` or `degraded` (Redis unreachable, ffmpeg or a JS
runtime missing, the PO-token provider configured but down). `/ready` answers 503
until start-up has finished and once shutdown has begun. `/metrics` is the app's
own Prometheus registry.

`Probes` finds the external programs once at start-up (ffmpeg, the JS runtime) and
pings the PO-token provider with a short cache. Deeper diagnostics (proxy, cookies
file format, per-channel history) belong to the diagnostics page, not here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import shutil
import subprocess
import time
from typing import Any

import aiohttp
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
from .errors import ServiceUnavailable
from .extractor import YTDLP_VERSION
from .metrics import CONTENT_TYPE_LATEST
from .services import services
from .settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Program:
    found: bool
    name: str = ""
    path: str = ""
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Probes:
    """External programs and local services. Its session bypasses `GLOBAL_PROXY`: the
    PO-token provider runs next to the gateway, not behind the proxy."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http: aiohttp.ClientSession | None = None
        self.ffmpeg = Program(found=False, name="ffmpeg")
        self.js_runtime = Program(found=False, name=settings.js_runtime)
        self._pot: tuple[float, dict[str, Any]] | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        self.ffmpeg, self.js_runtime = await asyncio.gather(
            asyncio.to_thread(_find_ffmpeg), asyncio.to_thread(_find_js_runtime, self._settings)
        )
        if not self.ffmpeg.found:
            log.warning("ffmpeg not found: merged video+audio downloads will not work")
        if not self.js_runtime.found:
            log.warning(
                "JavaScript runtime %s not found: yt-dlp needs one for YouTube",
                self._settings.js_runtime,
            )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def pot_provider(self) -> dict[str, Any]:
        url = self._settings.pot_provider_url
        if not url or self._http is None:
            return {"configured": False}
        if self._pot is not None and time.monotonic() - self._pot[0] < 30:
            return self._pot[1]
        result: dict[str, Any] = {"configured": True, "url": url}
        try:
            async with self._http.get(f"{url}/ping") as response:
                result["reachable"] = response.status == 200
                if response.status == 200:
                    body = await response.json(content_type=None)
                    result["version"] = (
                        str(body.get("version", "")) if isinstance(body, dict) else ""
                    )
                else:
                    result["error"] = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            result["reachable"] = False
            result["error"] = type(exc).__name__
        self._pot = (time.monotonic(), result)
        return result


def _find_ffmpeg() -> Program:
    path = shutil.which("ffmpeg")
    if path is None:
        return Program(found=False, name="ffmpeg")
    return Program(found=True, name="ffmpeg", path=path, version=_version_of([path, "-version"]))


def _find_js_runtime(settings: Settings) -> Program:
    # yt-dlp's own detection, so /health says exactly what yt-dlp will find.
    from yt_dlp.globals import supported_js_runtimes

    runtime_cls = supported_js_runtimes.value.get(settings.js_runtime)
    info = runtime_cls(path=settings.js_runtime_path).info if runtime_cls else None
    if info is None:
        return Program(found=False, name=settings.js_runtime)
    return Program(
        found=bool(info.supported), name=info.name, path=info.path, version=str(info.version)
    )


def _version_of(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r"version\s+(\S+)", out.stdout)
    return match.group(1) if match else out.stdout.split("\n", 1)[0][:60]


async def health(request: Request) -> Response:
    svc = services(request)
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
    if getattr(request.app.state, "ready", False):
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})
    raise ServiceUnavailable("Starting up or shutting down", code="not_ready")


async def metrics(request: Request) -> Response:
    svc = services(request)
    cache_status = await svc.cache.status()
    svc.metrics.redis_up.set(1 if cache_status["connected"] else 0)
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def login(request: Request) -> Response:
    svc = services(request)
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
