"""Access control: which requests the gateway answers at all, and who may use it.

Three pure ASGI middlewares (none buffers a body, so streaming is untouched), outermost
first, and the login throttle:

`HostGuard` answers only the host names the gateway is known by, which is what stops a
DNS-rebinding page (a hostile name re-pointed at 127.0.0.1) from using a gateway on
loopback. A Host that is not `name[:port]` is `400 invalid_host` always, because links
are built from it. Otherwise the Host's name (port dropped, IPv6 brackets, case and a
trailing dot ignored) must be allowed, else `421 host_not_allowed`:
- `ALLOWED_HOSTS=*`: any name.
- `ALLOWED_HOSTS` listed: those, plus the loopback names (`localhost`, `127.0.0.1`,
  `::1`) and `PUBLIC_BASE_URL`'s host, which a rebinding page can never send.
- unset, with `ACCESS_TOKEN`: any name. The token already defeats rebinding (the hostile
  page has no token, and the login cookie belongs to the real name), and an operator
  who reaches the server by its IP should not also need `ALLOWED_HOSTS`.
- unset, without `ACCESS_TOKEN`: the loopback names and `PUBLIC_BASE_URL`'s host.
`/health` and `/ready` answer any Host: probes use the container's or pod's address,
and these two are open even with `ACCESS_TOKEN`. A request without Host (HTTP/1.0,
never a browser) is answered.

`CrossSiteGuard` refuses state-changing browser requests from other sites (`403
cross_site_request`): for POST, PUT, PATCH and DELETE, `Sec-Fetch-Site` must be
`same-origin` or `none` (a sibling subdomain or another port of the same host is
`same-site`, and refused); a browser that does not send it is judged by `Origin`, which
must match the request's Host or `PUBLIC_BASE_URL`. Requests with neither header
(curl, API clients, players) pass: they are not a browser acting for a page.

`AccessGuard`: when `ACCESS_TOKEN` is set, every route but a few needs it. The token
can be given three ways: an `Authorization: Bearer` header (curl, API clients), a
`?token=` query parameter (IPTV players, which cannot send headers; the M3U carries
it), or the `ytproxy_auth` cookie that the login page sets (browsers). The cookie holds
a keyed hash of the token, not the token itself. Open without a token: `/health`,
`/ready`, `/login`, `/static/`, the web app manifest and service worker, and the
inputs of a running merge (`/v1/download/part/`, signed and valid only while that
merge runs). Relayed segment
and download URLs are not open: they carry the token too, as players and browsers
fetch them with the same credentials as the playlist or page. A browser asking for a
page without the token is redirected to the login page; everything else gets `401
auth_required` as JSON.

`check_login` throttles `/login`: after `LOGIN_ATTEMPTS` tries from one client (an
IPv4 address, or an IPv6 /64) in a `LOGIN_WINDOW`-second window, every further try,
right or wrong, gets `429 login_throttled` with `Retry-After` until the window ends; a
successful login clears the client's count. The counters live in the app's cache
(bounded in memory, or in Redis with a TTL). This module knows no users: there is one
shared token.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import re
import time
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .cache import Cache
from .errors import BadRequest, Forbidden, MisdirectedRequest, TooManyRequests, Unauthorized
from .settings import Settings
from .signing import Signer
from .web import error_response, scope_header, wants_html

log = logging.getLogger(__name__)

COOKIE = "ytproxy_auth"
# The web app manifest and service worker hold nothing private, and browsers fetch the
# manifest without cookies.
OPEN_PATHS = frozenset(
    {"/health", "/ready", "/login", "/favicon.ico", "/manifest.webmanifest", "/sw.js"}
)
# Merge inputs: signed tokens valid only while their merge runs, fetched by our own
# ffmpeg; exempting them keeps ACCESS_TOKEN off ffmpeg's command line (visible in ps).
OPEN_PREFIXES = ("/static/", "/v1/download/part/")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_HOST_PATHS = frozenset({"/health", "/ready"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# `Sec-Fetch-Site` values a page of this gateway sends (`none`: typed, bookmarked).
OWN_SITE = frozenset({"same-origin", "none"})
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = 300
# `name[:port]`, where the name is a DNS name (underscores too: compose service names)
# or a bracketed IPv6 literal.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9_.-]{1,253})(?::([0-9]{1,5}))?")
_MAX_HOST = 253 + len(":65535")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names answered, normalised; None when any is (see the module docstring)."""
    configured = settings.allowed_hosts
    if configured == ("*",) or (configured is None and settings.access_token is not None):
        return None
    names = set(LOOPBACK_NAMES)
    if settings.public_base_url:
        names.add(_name(urlsplit(settings.public_base_url).hostname or ""))
    names.update(_name(host) for host in configured or ())
    return frozenset(names)


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's normalised name and port, or None when it is malformed."""
    if len(value) > _MAX_HOST:  # longer than `_HOST` can match
        return None
    return _split_host(value)


@functools.lru_cache(maxsize=64)  # every request's Host; clients send a handful
def _split_host(value: str) -> tuple[str, int | None] | None:
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 0 < port < 65536:
        return None
    return _name(match.group(1)), port


def _name(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


class HostGuard:
    """Answers only allowed Host names: `400 invalid_host`, `421 host_not_allowed`."""

    def __init__(self, app: ASGIApp, *, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or host_admitted(scope, self.allowed):
            await self.app(scope, receive, send)
            return
        host = split_host(Headers(scope=scope).get("host", ""))
        if host is None:
            error: BadRequest | MisdirectedRequest = BadRequest(
                "The Host header is not a host name", code="invalid_host"
            )
        else:
            error = MisdirectedRequest(
                f"This gateway does not answer to {host[0]!r}: add it to ALLOWED_HOSTS, "
                "or set PUBLIC_BASE_URL or ACCESS_TOKEN"
            )
        await error_response(Request(scope, receive), error)(scope, receive, send)


def host_admitted(scope: Scope, allowed: frozenset[str] | None) -> bool:
    """Whether `HostGuard` lets an HTTP request through: a path any host may ask for, no
    Host header, or a well-formed one whose name is allowed (`allowed` None: any)."""
    if scope["path"] in ANY_HOST_PATHS:
        return True
    value = scope_header(scope, b"host")
    if not value:
        return True
    host = split_host(value)
    return host is not None and (allowed is None or host[0] in allowed)


class CrossSiteGuard:
    """Refuses state-changing requests a browser sends for another site's page."""

    def __init__(self, app: ASGIApp, *, public_base_url: str | None) -> None:
        self.app = app
        self.public_origin = _origin(public_base_url) if public_base_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if not self.cross_site(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        error = Forbidden(
            "Refused a request sent by another site's page", code="cross_site_request"
        )
        await error_response(Request(scope, receive), error)(scope, receive, send)

    def cross_site(self, headers: Headers) -> bool:
        site = headers.get("sec-fetch-site")
        if site is not None:
            return site.strip().lower() not in OWN_SITE
        origin_header = headers.get("origin")
        if origin_header is None:
            return False
        origin = _origin(origin_header)  # "null" (sandboxed, data: pages) parses to None
        if origin is None:
            return True
        if origin == self.public_origin:
            return False
        host = split_host(headers.get("host", ""))
        if host is None:
            return True
        name, port = host
        return (name, port or _DEFAULT_PORTS[origin[0]]) != origin[1:]


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, name, port) of an http(s) origin or URL, or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, _name(parts.hostname), port or _DEFAULT_PORTS[parts.scheme]


def base_url(request: Request, public_base_url: str | None) -> str:
    """Where absolute links point: `PUBLIC_BASE_URL`, else this request's own address.

    The request's Host has passed `HostGuard` by then (an allowed name, or with `*` or
    a token at least a well-formed `name[:port]`), so it cannot inject into a link.
    """
    return public_base_url or str(request.base_url).rstrip("/")


class AccessCheck:
    """Whether a request carries the access token (or needs none): what `AccessGuard`
    asks, and what the hot routes ask before they skip the middleware (`app.DirectRoutes`)."""

    def __init__(self, token: str | None, signer: Signer) -> None:
        self.token = token
        self.cookie_value = cookie_value(signer, token) if token else ""

    def admits(self, scope: Scope) -> bool:
        """No token set, an open path, or the token given."""
        if self.token is None:
            return True
        path: str = scope["path"]
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or self.allows(scope)

    def allows(self, scope: Scope) -> bool:
        assert self.token is not None
        headers = Headers(scope=scope)
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(credential.strip(), self.token):
            return True
        query = QueryParams(scope.get("query_string", b"").decode("latin-1"))
        if _same(query.get("token", ""), self.token):
            return True
        return _same(_cookie(headers, COOKIE), self.cookie_value)


class AccessGuard:
    """Pure ASGI middleware (it does not buffer bodies, so streaming is untouched)."""

    def __init__(self, app: ASGIApp, *, check: AccessCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or self.check.admits(scope):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        request = Request(scope, receive)
        if wants_html(request) and request.method == "GET":
            target = quote(path + ("?" + request.url.query if request.url.query else ""), safe="")
            await _redirect(f"/login?next={target}", send)
            return
        error = Unauthorized(
            "An access token is required (Authorization: Bearer, ?token=, or log in)"
        )
        await error_response(request, error)(scope, receive, send)


def cookie_value(signer: Signer, token: str) -> str:
    """What the login cookie holds: a keyed hash of the token, not the token."""
    return signer.digest(f"auth:{token}")


def token_matches(candidate: str, token: str | None) -> bool:
    return token is not None and _same(candidate, token)


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _cookie(headers: Headers, name: str) -> str:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


async def _redirect(location: str, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def safe_next(target: str | None) -> str:
    """Only local paths are followed after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_client(request: Request) -> str:
    """Whom login attempts are counted against: the IP, or for IPv6 its /64 (one host
    commonly holds a whole /64, so per-address counting would not slow it)."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def check_login(cache: Cache, client: str) -> str:
    """Count one login attempt, and return its counter's key (for `clear_login`).

    Counted before the token is compared, right or wrong, so parallel guesses cannot
    all slip in before the first is counted: `429 login_throttled` past the limit.
    """
    now = time.time()
    key = f"login:attempts:{client}:{int(now // LOGIN_WINDOW)}"
    count = await cache.incr(key, LOGIN_WINDOW)
    if count <= LOGIN_ATTEMPTS:
        return key
    if count == LOGIN_ATTEMPTS + 1:
        log.warning("login throttled for %s after %d attempts", client, LOGIN_ATTEMPTS)
    raise TooManyRequests(
        "Too many login attempts from this address; wait a few minutes",
        code="login_throttled",
        retry_after=max(1, LOGIN_WINDOW - int(now % LOGIN_WINDOW)),
    )


async def clear_login(cache: Cache, key: str) -> None:
    """A successful login: the client's earlier wrong tries no longer count."""
    await cache.delete(key)
