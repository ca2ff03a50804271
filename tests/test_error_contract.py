"""The JSON error contract of the analyse API, pinned in one place.

Every hostile or malformed input the issue names gets a 4xx with a stable
`{"error": {"code", "message"}}` body, never a 500 and never a task. The address
rules run with the guard on (`allow_private_networks=False`); the one hostname that
must resolve to a private address is the only thing faked (`socket.getaddrinfo` for
`intranet.example`), because there is no DNS server to ask offline.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from ytproxy import app
from ytproxy.analyse.endpoints import MAX_BODY

_real_getaddrinfo = socket.getaddrinfo


def _fake_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host == "intranet.example":
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))]
    if host == "mixed.example":
        # One public and one private address: every address is checked.
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 0)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::1", 0, 0, 0)),
        ]
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture
def guarded(app_server, settings, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo)
    server = app_server(settings, allow_private_networks=False, analyze_rate_limit=0)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client, server


def error_of(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("file:///etc/passwd", 400, "invalid_url"),
        ("javascript:alert(1)", 400, "invalid_url"),
        ("data:text/html,<script>alert(1)</script>", 400, "invalid_url"),
        ("ftp://example.com/video.mp4", 400, "invalid_url"),
        ("http://", 400, "invalid_url"),
        ("http://exa mple.com/", 400, "invalid_url"),
        ("http://example.com:99999/", 400, "invalid_url"),
        ("https://www.youtube.com/watch?v=" + "x" * 10_000, 400, "url_too_long"),
        ("http://127.0.0.1:8000/", 403, "forbidden_address"),
        ("http://localhost/", 403, "forbidden_address"),
        ("http://2130706433/", 403, "forbidden_address"),
        ("http://[::1]/", 403, "forbidden_address"),
        ("http://[::ffff:127.0.0.1]/", 403, "forbidden_address"),
        ("http://169.254.169.254/latest/meta-data/", 403, "forbidden_address"),
        ("http://192.168.1.1/", 403, "forbidden_address"),
        ("http://0.0.0.0/", 403, "forbidden_address"),
        ("http://224.0.0.1/", 403, "forbidden_address"),
        ("http://100.64.0.1/", 403, "forbidden_address"),
        ("http://intranet.example/watch", 403, "forbidden_address"),
        ("http://mixed.example/watch", 403, "forbidden_address"),
        ("http://no-such-host.invalid/", 400, "unresolvable_host"),
    ],
)
def test_hostile_urls_are_refused_with_codes(guarded, url: str, status: int, code: str) -> None:
    client, server = guarded
    assert error_of(client.post("/v1/analyze", json={"url": url})) == (status, code)
    assert server.core.extractor.calls == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"this is not json", "application/json", 400, "invalid_json"),
        (b'{"url": "https://example.com/"', "application/json", 400, "invalid_json"),
        (b'["https://example.com/"]', "application/json", 400, "invalid_json"),
        (b"\xff\xfe\x00", "application/json", 400, "invalid_json"),
        (b"[" * 5_000, "application/json", 400, "invalid_json"),
        (b'{"url": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "application/json", 400, "invalid_json"),
        (b"{}", "application/json", 400, "missing_field"),
        (b'{"link": "https://example.com/"}', "application/json", 400, "missing_field"),
        (b'{"url": "   "}', "application/json", 400, "missing_field"),
        (b'{"url": null}', "application/json", 400, "missing_field"),
        (b'{"url": 42}', "application/json", 400, "invalid_url"),
        (b'{"url": ["https://example.com/"]}', "application/json", 400, "invalid_url"),
        (b"url=", "application/x-www-form-urlencoded", 400, "missing_field"),
        (b"other=1", "application/x-www-form-urlencoded", 400, "missing_field"),
        (b"https://example.com/", "text/plain", 400, "unsupported_content_type"),
        (b"<url>https://example.com/</url>", "application/xml", 400, "unsupported_content_type"),
        (b"https://example.com/", None, 400, "unsupported_content_type"),
    ],
)
def test_malformed_bodies_are_refused_with_codes(
    guarded, content: bytes, content_type: str | None, status: int, code: str
) -> None:
    client, _ = guarded
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/analyze", content=content, headers=headers)
    assert error_of(response) == (status, code)


def test_a_10_mb_body_is_refused_with_413(guarded) -> None:
    client, _ = guarded
    body = b'{"url": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    response = client.post(
        "/v1/analyze", content=body, headers={"Content-Type": "application/json"}
    )
    assert error_of(response) == (413, "payload_too_large")


def test_a_chunked_body_over_the_limit_is_refused_with_413(guarded) -> None:
    client, _ = guarded

    def chunks():
        yield b'{"url": "'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"a" * 1024
        yield b'"}'

    response = client.post(
        "/v1/analyze", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert error_of(response) == (413, "payload_too_large")


def test_a_body_just_under_the_limit_is_read(guarded) -> None:
    client, _ = guarded
    padding = " " * (MAX_BODY - 200)
    body = ('{"url": "file:///x"' + padding + "}").encode()
    assert len(body) <= MAX_BODY
    response = client.post(
        "/v1/analyze", content=body, headers={"Content-Type": "application/json"}
    )
    assert error_of(response) == (400, "invalid_url")


def test_an_oversized_request_head_is_431_header_too_large(guarded) -> None:
    client, server = guarded
    response = client.post(
        "/v1/analyze", json={"url": "https://example.com/"}, headers={"X-Pad": "p" * 65_536}
    )
    assert error_of(response) == (431, "header_too_large")
    assert server.core.extractor.calls == 0


def test_unknown_and_malformed_task_ids_are_404_task_not_found(guarded) -> None:
    client, _ = guarded
    for task_id in ("0" * 32, "not-a-task", "..%2F..%2Fetc%2Fpasswd", "A" * 32, "0" * 500):
        assert error_of(client.get(f"/v1/tasks/{task_id}")) == (404, "task_not_found")


def test_wrong_methods_are_405(guarded) -> None:
    client, _ = guarded
    assert error_of(client.get("/v1/analyze")) == (405, "method_not_allowed")
    assert error_of(client.post("/v1/tasks/" + "0" * 32)) == (405, "method_not_allowed")


def test_rate_limit_answers_429_with_retry_after(app_server, settings) -> None:
    server = app_server(settings, analyze_rate_limit=2)
    with httpx.Client(base_url=server.base_url) as client:
        answers = [client.post("/v1/analyze", json={"url": "file:///x"}) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [400, 400]
    assert error_of(answers[2]) == (429, "rate_limited")
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60


def test_htmx_errors_are_html_fragments_with_the_code(guarded) -> None:
    client, _ = guarded
    response = client.post(
        "/v1/analyze", data={"url": "javascript:alert(1)"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-code="invalid_url"' in response.text
    assert "<script" not in response.text


def test_hot_routes_answer_errors_like_every_other_route(guarded) -> None:
    """Downloads and live segments are served outside the stack (`app.DirectRoutes`):
    their errors keep the JSON shape, an HTMX request still gets the fragment, and a
    wrong method still gets 405."""
    client, _ = guarded
    for path in ("/v1/download/not-a-token", "/v1/download/part/x", "/live/demo/s/x.ts"):
        status, code = error_of(client.get(path, headers={"Accept": "text/html"}))
        assert status in (403, 404), (path, status, code)
        fragment = client.get(path, headers={"HX-Request": "true"})
        assert fragment.status_code == status
        assert fragment.headers["content-type"].startswith("text/html")
        assert f'data-code="{code}"' in fragment.text
    assert error_of(client.post("/v1/download/not-a-token")) == (405, "method_not_allowed")


def test_a_hot_route_whose_response_fails_before_its_head_answers_500_json(
    app_server, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the stack no Starlette error middleware catches what a response raises:
    `Gateway` answers it as the app's handler would (JSON 500, logged, counted)."""
    server = app_server(settings)
    route = next(r for r in server.app.routes if getattr(r, "name", "") == "download")

    class Broken(Response):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("a bug in a response")

    async def endpoint(request: Any) -> Response:
        return Broken()

    monkeypatch.setattr(route, "endpoint", endpoint)
    response = httpx.get(f"{server.base_url}/v1/download/any", timeout=30)
    assert error_of(response) == (500, "internal_error")
    assert "a bug" not in response.text
    labels = {"route": "download", "method": "GET", "status": "500"}
    registry = server.core.metrics.registry
    assert registry.get_sample_value("http_requests_total", labels) == 1


def test_a_hot_route_name_that_matches_no_route_stops_the_app_from_being_built(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renamed hot route would otherwise fall back to the stack unnoticed."""
    monkeypatch.setattr(app, "HOT_ROUTES", app.HOT_ROUTES | {"no_such_route"})
    with pytest.raises(RuntimeError, match="no_such_route"):
        app.create_app(settings)
