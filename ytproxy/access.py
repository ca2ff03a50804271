"""Access control: when `ACCESS_TOKEN` is set, every route but a few needs it.

The token can be given three ways: an `Authorization: Bearer` header (curl, API
clients), a `?token=` query parameter (IPTV players, which cannot send headers; the
M3U carries it), or the `ytproxy_auth` cookie that the login page sets (browsers).
The cookie holds a keyed hash of the token, not the token itself.

Open without a token: `/health`, `/ready`, `/login`, `/static/`, and the inputs of a
running merge (`/v1/download/part/`, signed and valid only while that merge runs).
Relayed segment and download URLs are not open: they carry the token too, as players
and browsers fetch them with the same credentials as the playlist or page.

A browser asking for a page without the token is redirected to the login page;
everything else gets `401 auth_required` as JSON. This module does not rate-limit or
know users: there is one shared token.
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import Unauthorized
from .signing import Signer
from .web import error_response, wants_html

COOKIE = "ytproxy_auth"
OPEN_PATHS = frozenset({"/health", "/ready", "/login", "/favicon.ico"})
# Merge inputs: signed tokens valid only while their merge runs, fetched by our own
# ffmpeg; exempting them keeps ACCESS_TOKEN off ffmpeg's command line (visible in ps).
OPEN_PREFIXES = ("/static/", "/v1/download/part/")


class AccessGuard:
    """Pure ASGI middleware (it does not buffer bodies, so streaming is untouched)."""

    def __init__(self, app: ASGIApp, *, token: str | None, signer: Signer) -> None:
        self.app = app
        self.token = token
        self.cookie_value = cookie_value(signer, token) if token else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or self.allows(scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if wants_html(request) and request.method == "GET":
            target = quote(path + ("?" + request.url.query if request.url.query else ""), safe="")
            await _redirect(f"/login?next={target}", send)
            return
        error = Unauthorized(
            "An access token is required (Authorization: Bearer, ?token=, or log in)"
        )
        await error_response(request, error)(scope, receive, send)

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
