"""ACCESS_TOKEN guards the whole route table, whichever way the token is given.

The tests walk `app.routes` (into Mounts), so a route added later is covered without
anyone remembering to add it here. For every route and method but the open ones
(/health, /ready, the login page, static files, and a running merge's signed inputs):

- without the token: `401 auth_required` as JSON, or for a browser asking for an HTML
  page, a 303 to the login page that brings it back afterwards;
- with the token as a bearer header, as `?token=`, or as the cookie the login page sets:
  anything but that refusal (the route itself may still say 404 for the made-up ids
  used here, or 400 for an empty body).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route

from tests.apps import AppServer
from ytproxy.access import COOKIE

TOKEN = "test-access-token-42"
# The web app manifest and its service worker hold nothing private (pages.py).
OPEN = {"/health", "/ready", "/login", "/manifest.webmanifest", "/sw.js"}
# Requests a browser makes for pages; API, player and metrics paths answer JSON.
JSON_PREFIXES = ("/api/", "/v1/", "/live/", "/metrics", "/health", "/ready")


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(path with made-up parameters, method, route name) for every route."""
    for route in routes:
        if isinstance(route, Mount):
            inner = route.routes
            if inner:
                yield from walk(list(inner), prefix + route.path)
            else:  # an app mounted whole, such as StaticFiles
                yield prefix + route.path + "/app.css", "GET", route.name or ""
        elif isinstance(route, Route):
            path = route.path_format.format(**{name: "x" for name in route.param_convertors})
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield prefix + path, method, route.name


@pytest.fixture
def guarded(app_server, settings) -> AppServer:
    return app_server(settings, access_token=TOKEN)


def route_table(server: AppServer) -> list[tuple[str, str, str]]:
    table = list(walk(server.app.routes))
    assert len(table) >= 20, table  # the jobs' routes are in it
    return table


def is_open(path: str) -> bool:
    return path in OPEN or path.startswith(("/static/", "/v1/download/part/"))


def test_the_route_table_includes_every_job(guarded: AppServer) -> None:
    names = {name for _, _, name in route_table(guarded)}
    assert {"index", "metrics", "diagnostics", "analyze", "task_status"} <= names
    assert {"playlist_m3u", "live_master", "live_media", "download"} <= names


def test_every_route_but_the_open_ones_refuses_a_request_without_the_token(
    guarded: AppServer,
) -> None:
    refused = []
    with httpx.Client(base_url=guarded.base_url, follow_redirects=False, timeout=30) as client:
        for path, method, name in route_table(guarded):
            if is_open(path):
                continue
            response = client.request(method, path)
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.json()["error"]["code"] == "auth_required", (method, path)
            refused.append(name)
    assert "metrics" in refused and "logout" in refused


def test_browsers_asking_for_a_page_without_the_token_go_to_the_login_page(
    guarded: AppServer,
) -> None:
    with httpx.Client(base_url=guarded.base_url, follow_redirects=False, timeout=30) as client:
        for path, method, _ in route_table(guarded):
            if is_open(path) or method != "GET":
                continue
            response = client.get(path, headers={"Accept": "text/html,*/*;q=0.8"})
            if path.startswith(JSON_PREFIXES):
                assert response.status_code == 401, path
            else:
                assert response.status_code == 303, path
                assert response.headers["location"] == f"/login?next={quote(path, safe='')}"


def test_open_routes_answer_without_the_token(guarded: AppServer) -> None:
    with httpx.Client(base_url=guarded.base_url, follow_redirects=False, timeout=30) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        assert client.get("/login").status_code == 200
        assert client.get("/static/app.css").status_code == 200


def login_cookie(server: AppServer) -> str:
    response = httpx.post(
        server.url("/login"), data={"token": TOKEN, "next": "/diagnostics"}, timeout=30
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/diagnostics"
    cookie = response.cookies[COOKIE]
    assert TOKEN not in cookie  # a keyed hash of the token, not the token
    return cookie


def test_a_wrong_token_is_refused_every_way(guarded: AppServer) -> None:
    wrong = "not-the-token-123"
    assert httpx.post(guarded.url("/login"), data={"token": wrong}).status_code == 401
    for kwargs in (
        {"headers": {"Authorization": f"Bearer {wrong}"}},
        {"params": {"token": wrong}},
        {"cookies": {COOKIE: wrong}},
    ):
        assert httpx.get(guarded.url("/api/channels"), **kwargs).status_code == 401


@pytest.mark.parametrize("way", ["bearer", "query", "cookie"])
def test_every_route_accepts_the_token_given_each_way(guarded: AppServer, way: str) -> None:
    cookie = login_cookie(guarded) if way == "cookie" else ""
    accepted = []
    with httpx.Client(base_url=guarded.base_url, follow_redirects=False, timeout=60) as client:
        for path, method, name in route_table(guarded):
            if is_open(path):
                continue
            headers = {"Accept": "text/html"} if not path.startswith(JSON_PREFIXES) else {}
            params = {}
            if way == "bearer":
                headers["Authorization"] = f"Bearer {TOKEN}"
            elif way == "query":
                params["token"] = TOKEN
            else:
                headers["Cookie"] = f"{COOKIE}={cookie}"
            response = client.request(method, path, headers=headers, params=params)
            assert response.status_code != 401, (way, method, path, response.text[:200])
            # (/logout itself sends the browser to /login, without a `next`.)
            location = response.headers.get("location", "")
            assert not location.startswith("/login?next="), (way, method, path)
            accepted.append(name)
    assert {"metrics", "diagnostics", "analyze", "live_master", "download"} <= set(accepted)
