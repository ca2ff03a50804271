"""The application factory: `create_app(settings)` builds one Starlette app.

Nothing happens at import. `create_app` builds the route table and middleware; the
lifespan opens the long-lived clients in order (metrics, cache, HTTP session,
extractor, probes: the frozen `Core`), then builds each job's service from the few
clients it uses (live channels, analyse tasks, downloads' transfers, and the sources
both analyse and download use), and closes them in reverse order on shutdown.

Handlers reach all of this through the lifespan state, which Starlette copies into
each request (`core(request)`, `live_service(request)`, `task_runner(request)`,
`transfers(request)`, `source_store(request)`, `readiness(request)`); nothing is kept
on `app.state`. This module is the composition root: the one shared module that
imports the job packages.

Routes are data: `build_routes()` lists every route, each named, from the shared
routes here and the `routes()` of each job package.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, cookies_page, diagnostics, images, pages, system
from .access import (
    AccessCheck,
    AccessGuard,
    CrossSiteGuard,
    HostGuard,
    allowed_hosts,
    host_admitted,
)
from .analyse import routes as analyse_routes
from .analyse.runner import TaskRunner
from .cache import open_cache
from .core import Core, Readiness, open_http_session, open_pieces
from .download import routes as download_routes
from .download.transfers import Transfers
from .errors import NotFound, YtproxyError
from .extractor import YTDLP_VERSION, Extractor
from .live import routes as live_routes
from .live.service import LiveService
from .metrics import Metrics
from .netguard import AddressPolicy
from .probes import Probes
from .settings import Settings, load_environment
from .signing import Signer
from .sources import Sources
from .web import STATIC_DIR, Templates, error_response

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Gateway:
    if settings is None:
        settings = Settings.from_env(load_environment())
    signer = Signer(settings.secret_key)
    templates = Templates(login_required=bool(settings.access_token))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with _open(settings, signer, templates) as state:
            yield state

    routes = build_routes()
    hosts, access = allowed_hosts(settings), AccessCheck(settings.access_token, signer)
    hot = [r for r in routes if _name_of(r) in HOT_ROUTES]
    if missing := HOT_ROUTES - {_name_of(r) for r in hot}:  # a renamed route: say so
        raise RuntimeError(f"HOT_ROUTES names routes that do not exist: {sorted(missing)}")
    return Gateway(
        direct=DirectRoutes(hot, allowed_hosts=hosts, access=access),
        routes=routes,
        middleware=[
            Middleware(HttpMetrics),
            Middleware(HostGuard, allowed=hosts),
            Middleware(CrossSiteGuard, public_base_url=settings.public_base_url),
            Middleware(AccessGuard, check=access),
        ],
        exception_handlers={
            YtproxyError: _handle_ytproxy_error,
            HTTPException: _handle_http_exception,
            Exception: _handle_unexpected,
        },
        lifespan=lifespan,
    )


# The routes every byte of a download or a live stream goes through, served by
# `Gateway` before its middleware stack (they stay in the router too, for `url_for`).
HOT_ROUTES = frozenset(
    {
        "download",
        "download_part",
        "live_variant",
        "live_media",
        "live_audio_segment",
        "live_muxed_segment",
    }
)


def build_routes() -> list[BaseRoute]:
    shared: list[BaseRoute] = [
        Route("/", pages.index, name="index"),
        Route("/manifest.webmanifest", pages.manifest, name="manifest"),
        Route("/sw.js", pages.service_worker, name="service_worker"),
        Route("/health", system.health, name="health"),
        Route("/ready", system.ready, name="ready"),
        Route("/metrics", system.metrics, name="metrics"),
        Route("/login", system.login, methods=["GET", "POST"], name="login"),
        Route("/logout", system.logout, methods=["GET", "POST"], name="logout"),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return [
        *shared,
        *diagnostics.routes(),
        *cookies_page.routes(),
        *images.routes(),
        *live_routes(),
        *analyse_routes(),
        *download_routes(),
    ]


@contextlib.asynccontextmanager
async def _open(
    settings: Settings, signer: Signer, templates: Templates
) -> AsyncIterator[dict[str, Any]]:
    """The lifespan state: the core, each job's service, and readiness."""
    if settings.secret_key_generated:
        log.warning(
            "SECRET_KEY is not set: generated one for this process. Links stop working on "
            "restart, and several instances behind a load balancer need one shared SECRET_KEY."
        )
    metrics = Metrics()
    metrics.info.labels(__version__, YTDLP_VERSION).set(1)
    metrics.max_streams.set(settings.max_concurrent_streams)
    cache = open_cache(settings.redis_url, settings.cache_max_bytes)
    # One address policy for every outbound client: the session, the piece client, yt-dlp.
    policy = AddressPolicy.from_settings(settings)
    http = open_http_session(settings, policy)
    pieces = open_pieces(settings, policy)
    extractor = Extractor(settings, metrics, policy=policy)
    probes = Probes(settings)
    readiness = Readiness()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(cache.close)
        stack.push_async_callback(http.close)
        if pieces is not None:
            stack.push_async_callback(pieces.close)
        stack.callback(extractor.close)
        stack.push_async_callback(probes.close)
        await probes.start()
        await extractor.start()
        core = Core(
            settings=settings,
            metrics=metrics,
            cache=cache,
            http=http,
            pieces=pieces,
            extractor=extractor,
            signer=signer,
            policy=policy,
            templates=templates,
            probes=probes,
        )
        live = LiveService(
            settings=settings,
            cache=cache,
            http=http,
            extractor=extractor,
            metrics=metrics,
            signer=signer,
        )
        await live.start()
        stack.push_async_callback(live.close)
        sources = Sources(cache, extractor, metrics, settings.result_ttl)
        tasks = TaskRunner(
            settings=settings, cache=cache, extractor=extractor, metrics=metrics, sources=sources
        )
        await tasks.start()
        stack.push_async_callback(tasks.close)
        transfers = Transfers(settings, metrics)
        stack.push_async_callback(transfers.close)
        cache_status = await cache.status()
        metrics.redis_up.set(1 if cache_status["connected"] else 0)
        log.info(
            "ytproxy %s ready (yt-dlp %s, cache %s)",
            __version__,
            YTDLP_VERSION,
            cache_status["backend"],
        )
        readiness.ready = True
        try:
            yield {
                "core": core,
                "live": live,
                "channel_report": live.channel_report,
                "tasks": tasks,
                "sources": sources,
                "transfers": transfers,
                "readiness": readiness,
            }
        finally:
            readiness.ready = False
            log.info("ytproxy shutting down")


async def _handle_any(request: Request, exc: Exception) -> Response:
    """What the app's exception handlers answer, for code that runs outside them."""
    if isinstance(exc, YtproxyError):
        return await _handle_ytproxy_error(request, exc)
    if isinstance(exc, HTTPException):
        return await _handle_http_exception(request, exc)
    return await _handle_unexpected(request, exc)


async def _handle_ytproxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, YtproxyError)
    return error_response(request, exc)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: YtproxyError = NotFound("There is nothing at this address")
    elif exc.status_code == 405:
        error = YtproxyError(
            "This method is not allowed here", code="method_not_allowed", status=405
        )
    else:
        error = YtproxyError(str(exc.detail), code="http_error", status=exc.status_code)
    return error_response(request, error)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, YtproxyError("Internal error; it has been logged"))


class Gateway(Starlette):
    """The app: Starlette, with the hot routes served before its middleware stack.

    A download or a live segment is small work (a signed token, a cache lookup, one
    upstream request), so the layers around it showed in a profile: Starlette's own
    entry and its error middleware, four middleware each calling the next, `send`
    wrapped at each layer, matching ~50 route patterns, the exception middleware. So a
    GET or HEAD for one of the hot routes (`DirectRoutes`) that the guards would let
    through anyway (an allowed Host, the access token when one is set; the cross-site
    check is for other methods) is served here, counted as `HttpMetrics` counts, its
    errors answered as the app's exception handlers would. Every other request, and any
    the guards would answer (a wrong Host, a missing token), takes the stack and the
    router as before.
    """

    def __init__(self, *, direct: DirectRoutes, **options: Any) -> None:
        super().__init__(**options)
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.direct.find(scope)
            if found is not None:
                scope["app"] = self
                await self.direct.serve(found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class DirectRoutes:
    """The hot routes `Gateway` serves itself (see its docstring)."""

    def __init__(
        self,
        routes: list[BaseRoute],
        *,
        allowed_hosts: frozenset[str] | None,
        access: AccessCheck,
    ) -> None:
        # Each route with the static start of its path, checked before its pattern (a
        # request under a root_path does not start with it and goes to the router).
        self.routes = [
            (route.path.partition("{")[0], route) for route in routes if isinstance(route, Route)
        ]
        self.allowed_hosts = allowed_hosts
        self.access = access

    def find(self, scope: Scope) -> Route | None:
        """The hot route serving this request, its path parameters set in `scope`; None
        for a request the stack must see (another route or method, a guard's answer)."""
        if scope["method"] not in _DIRECT_METHODS:
            return None
        path: str = scope["path"]
        for prefix, route in self.routes:
            if not path.startswith(prefix):
                continue
            match, child = route.matches(scope)
            if match is Match.FULL and self._admitted(scope):
                scope.update(child)
                scope["route"] = route  # as the router sets it: metrics name it
                return route
        return None

    def _admitted(self, scope: Scope) -> bool:
        return host_admitted(scope, self.allowed_hosts) and self.access.admits(scope)

    @staticmethod
    async def serve(route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """Call the endpoint and its response, counted as `HttpMetrics` counts, through
        one `send` wrapper (not one per layer); an error is answered as the app's
        handlers would, or, after the response began, ends the connection (uvicorn
        closes it)."""
        tally = RequestTally(scope)

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                tally.started(message["status"])
            await send(message)

        request = Request(scope, receive, send)
        with tally:
            try:
                response: Response = await route.endpoint(request)
            except Exception as exc:  # answered as the app's handlers would
                response = await _handle_any(request, exc)
            try:
                await response(scope, receive, counted)
            except Exception as exc:
                if tally.status is not None:
                    raise
                await (await _handle_unexpected(request, exc))(scope, receive, counted)


# What `DirectRoutes` serves; other methods take the stack (and get its 405).
_DIRECT_METHODS = frozenset({"GET", "HEAD"})


def _name_of(route: BaseRoute) -> str | None:
    name = getattr(route, "name", None)
    return name if isinstance(name, str) else None


# The status counted for a request whose client left before any response.
CLIENT_LEFT = 499


class HttpMetrics:
    """Counts requests and time to the response start, by route name (bounded labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tally = RequestTally(scope)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                tally.started(message["status"])
            await send(message)

        with tally:
            await self.app(scope, receive, send_wrapper)


class RequestTally:
    """One request in the HTTP metrics (`HttpMetrics`, and `DirectRoutes` for the hot
    routes): the time to its response's start and its status, by route name. An error
    that escapes is counted 500 (it is answered further out); a request that ends
    without a response is one whose client left first (499, as nginx counts it). Counts
    nothing before start-up (no metrics yet)."""

    __slots__ = ("_metrics", "_scope", "_since", "status")

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._metrics = _metrics_of(scope)
        self._since = time.monotonic()
        self.status: int | None = None

    def started(self, status: int) -> None:
        self.status = status
        if self._metrics is not None:
            elapsed = time.monotonic() - self._since
            self._metrics.http_duration.labels(_route_name(self._scope)).observe(elapsed)

    def __enter__(self) -> RequestTally:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._metrics is None:
            return
        status = self.status
        if status is None:
            status = CLIENT_LEFT if kind is None else 500
        labels = (_route_name(self._scope), self._scope["method"], str(status))
        self._metrics.http_requests.labels(*labels).inc()


def _metrics_of(scope: Scope) -> Metrics | None:
    """The app's metrics from the lifespan state (absent before start-up)."""
    found = (scope.get("state") or {}).get("core")
    return found.metrics if isinstance(found, Core) else None


def _route_name(scope: Scope) -> str:
    route = scope.get("route")
    name = getattr(route, "name", None)
    return str(name) if name else "unmatched"
