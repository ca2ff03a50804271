"""Which requests the gateway answers: Host names, cross-site browser posts, login guesses.

Over a real socket (`app_server`), with httpx setting the headers a browser, a
DNS-rebinding page or curl would send. `/v1/analyze` with a `file:` URL stands for any
state-changing request: it answers `400 invalid_url` once it gets past the guards and
starts no task.
"""

from __future__ import annotations

import types
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Match

from tests.apps import AppServer
from ytproxy import access, app
from ytproxy.access import LOGIN_ATTEMPTS, login_client, split_host
from ytproxy.settings import Settings

TOKEN = "test-access-token-42"
HARMLESS = {"url": "file:///x"}


def code_of(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.status_code, response.json()["error"]["code"]


def get(server: AppServer, path: str, host: str, **headers: str) -> httpx.Response:
    return httpx.get(server.url(path), headers={"Host": host, **headers}, timeout=30)


def analyse(server: AppServer, **headers: str) -> httpx.Response:
    return httpx.post(server.url("/v1/analyze"), json=HARMLESS, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost.:8000", ("localhost", 8000)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::1]", ("::1", None)),
        ("ytproxy_app:8000", ("ytproxy_app", 8000)),
        ("::1", None),
        ("evil.example:99999", None),
        ('evil"x', None),
        ("a b", None),
        ("evil.example/path", None),
        ("", None),
    ],
)
def test_split_host_normalises_names_and_refuses_malformed_ones(
    value: str, expected: tuple[str, int | None] | None
) -> None:
    assert split_host(value) == expected


def test_a_host_name_not_allowed_is_421_without_a_token(app_server, settings) -> None:
    server = app_server(settings)
    for host in ("evil.example", f"evil.example:{server.port}", "192.168.1.5"):
        assert code_of(get(server, "/api/channels", host)) == (421, "host_not_allowed")
    page = get(server, "/", "evil.example", Accept="text/html")
    assert page.status_code == 421
    assert 'data-code="host_not_allowed"' in page.text


def test_downloads_and_live_segments_check_the_host_too(app_server, settings) -> None:
    """They are served outside the middleware stack (`app.DirectRoutes`), which must
    still leave a request with a refused Host to the guard."""
    server = app_server(settings)
    paths = ("/v1/download/not-a-token", "/live/x/s/tok.ts", "/live/x/p/tok.m3u8")
    hot = [r for r in server.app.routes if getattr(r, "name", "") in app.HOT_ROUTES]
    for path in paths:  # each is served by DirectRoutes
        assert any(r.matches(_scope(path))[0] is Match.FULL for r in hot), path
    for path in paths:
        assert code_of(get(server, path, "evil.example")) == (421, "host_not_allowed"), path
        assert code_of(get(server, path, 'evil"x')) == (400, "invalid_host"), path
    assert code_of(get(server, paths[0], "localhost")) == (403, "invalid_token")


def _scope(path: str) -> dict[str, object]:
    return {"type": "http", "method": "GET", "path": path, "root_path": ""}


def test_loopback_names_are_answered_with_any_port_case_or_trailing_dot(
    app_server, settings
) -> None:
    server = app_server(settings)
    for host in ("localhost", f"LOCALHOST.:{server.port}", "127.0.0.1", f"[::1]:{server.port}"):
        assert get(server, "/api/channels", host).status_code == 200, host


def test_public_base_urls_host_is_answered(app_server, settings) -> None:
    server = app_server(settings, public_base_url="https://tv.example.com")
    assert get(server, "/api/channels", "tv.example.com").status_code == 200
    assert get(server, "/api/channels", "TV.example.com:443").status_code == 200
    assert code_of(get(server, "/api/channels", "tv.example.org")) == (421, "host_not_allowed")


def test_allowed_hosts_add_names_to_the_loopback_ones(app_server, settings) -> None:
    server = app_server(settings, allowed_hosts=("tv.lan", "[fd00::5]"))
    assert get(server, "/api/channels", "tv.lan:8000").status_code == 200
    assert get(server, "/api/channels", "[fd00::5]:8000").status_code == 200
    assert get(server, "/api/channels", "127.0.0.1").status_code == 200
    assert code_of(get(server, "/api/channels", "evil.example")) == (421, "host_not_allowed")


def test_with_a_token_and_no_allowed_hosts_any_name_is_answered(app_server, settings) -> None:
    server = app_server(settings, access_token=TOKEN)
    bearer = f"Bearer {TOKEN}"
    assert get(server, "/api/channels", "203.0.113.5:8000", Authorization=bearer).status_code == 200
    assert code_of(get(server, "/api/channels", "rebound.example")) == (401, "auth_required")


def test_with_a_token_explicit_allowed_hosts_still_apply(app_server, settings) -> None:
    server = app_server(settings, access_token=TOKEN, allowed_hosts=("tv.lan",))
    bearer = f"Bearer {TOKEN}"
    assert get(server, "/api/channels", "tv.lan", Authorization=bearer).status_code == 200
    refused = get(server, "/api/channels", "other.lan", Authorization=bearer)
    assert code_of(refused) == (421, "host_not_allowed")


def test_a_malformed_host_is_400_even_when_every_name_is_allowed(app_server, settings) -> None:
    server = app_server(settings, allowed_hosts=("*",))
    assert get(server, "/api/channels", "anything.example").status_code == 200
    assert code_of(get(server, "/api/channels", 'evil"x')) == (400, "invalid_host")


def test_health_and_ready_answer_any_host(app_server, settings) -> None:
    server = app_server(settings)
    for path in ("/health", "/ready"):
        assert get(server, path, "172.17.0.2:8000").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
    ],
    ids=["sec-fetch-cross-site", "sec-fetch-same-site", "origin-elsewhere", "origin-null"],
)
def test_cross_site_posts_are_403(app_server, settings, headers: dict[str, str]) -> None:
    server = app_server(settings)
    assert code_of(analyse(server, **headers)) == (403, "cross_site_request")


def test_an_origin_on_another_port_of_the_same_host_is_cross_site(app_server, settings) -> None:
    server = app_server(settings)
    assert code_of(analyse(server, Origin="http://127.0.0.1:1")) == (403, "cross_site_request")
    assert code_of(analyse(server, Origin="https://127.0.0.1")) == (403, "cross_site_request")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "SERVER"},
    ],
    ids=["curl", "sec-fetch-same-origin", "sec-fetch-none", "origin-same"],
)
def test_same_origin_and_header_less_posts_are_accepted(
    app_server, settings, headers: dict[str, str]
) -> None:
    server = app_server(settings)
    headers = {k: v.replace("SERVER", server.base_url) for k, v in headers.items()}
    assert code_of(analyse(server, **headers)) == (400, "invalid_url")


def test_an_origin_matching_public_base_url_is_accepted_whatever_the_host(
    app_server, settings
) -> None:
    # A reverse proxy that passes its own upstream address as Host.
    server = app_server(settings, public_base_url="https://tv.example.com")
    same = analyse(server, Origin="https://tv.example.com")
    assert code_of(same) == (400, "invalid_url")
    assert code_of(analyse(server, Origin="https://evil.example")) == (403, "cross_site_request")


def test_cross_site_reads_are_not_refused(app_server, settings) -> None:
    server = app_server(settings)
    response = get(server, "/api/channels", "127.0.0.1", **{"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200


@pytest.fixture
def one_channel(channels_file: Path) -> Path:
    # Never resolved: the M3U lists what is configured, without asking yt-dlp.
    channels_file.write_text(
        '[[channel]]\nid = "news"\nname = "News"\nurl = "http://127.0.0.1:9/live"\n',
        encoding="utf-8",
    )
    return channels_file


def m3u_links(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [line for line in response.text.splitlines() if not line.startswith("#")]


def test_the_m3u_ignores_a_hostile_host_when_public_base_url_is_set(
    app_server, settings: Settings, one_channel: Path
) -> None:
    server = app_server(settings, allowed_hosts=("*",), public_base_url="https://tv.example.com")
    links = m3u_links(get(server, "/playlist.m3u", "evil.example"))
    assert links == ["https://tv.example.com/live/news.m3u8"]


def test_the_m3u_with_a_token_ignores_a_hostile_host(
    app_server, settings: Settings, one_channel: Path
) -> None:
    server = app_server(settings, access_token=TOKEN, public_base_url="https://tv.example.com")
    links = m3u_links(get(server, f"/playlist.m3u?token={TOKEN}", "evil.example"))
    assert links == [f"https://tv.example.com/live/news.m3u8?token={TOKEN}"]


def test_the_m3u_without_public_base_url_uses_the_allowed_host_it_was_asked_on(
    app_server, settings: Settings, one_channel: Path
) -> None:
    server = app_server(settings)
    links = m3u_links(get(server, "/playlist.m3u", f"localhost:{server.port}"))
    assert links == [f"http://localhost:{server.port}/live/news.m3u8"]


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    """The throttle's wall clock, fixed 100 s into a window, so no window ends mid-test
    and Retry-After is exact. Only `access`'s clock: the cache keeps its own."""
    now = 1_000_000 * access.LOGIN_WINDOW + 100.0
    monkeypatch.setattr(access, "time", types.SimpleNamespace(time=lambda: now))
    return now


def login(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/login", data={"token": token, "next": "/"})


def test_login_is_throttled_after_a_few_wrong_tokens_even_for_the_right_one(
    app_server, settings, fixed_clock: float
) -> None:
    server = app_server(settings, access_token=TOKEN)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        wrong = [login(client, "wrong-token-000").status_code for _ in range(LOGIN_ATTEMPTS)]
        assert wrong == [401] * LOGIN_ATTEMPTS
        throttled = login(client, "wrong-token-000")
        assert code_of(throttled) == (429, "login_throttled")
        assert throttled.headers["retry-after"] == str(access.LOGIN_WINDOW - 100)
        right = login(client, TOKEN)
        assert code_of(right) == (429, "login_throttled")
        assert access.COOKIE not in right.cookies
        assert client.get("/login").status_code == 200


def test_a_successful_login_clears_the_earlier_wrong_tries(
    app_server, settings, fixed_clock: float
) -> None:
    server = app_server(settings, access_token=TOKEN)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(LOGIN_ATTEMPTS - 1):
            assert login(client, "wrong-token-000").status_code == 401
        assert login(client, TOKEN).status_code == 303
        for _ in range(LOGIN_ATTEMPTS - 1):
            assert login(client, "wrong-token-000").status_code == 401


def test_the_throttle_does_not_log_the_submitted_token(
    app_server, settings, fixed_clock: float, caplog: pytest.LogCaptureFixture
) -> None:
    server = app_server(settings, access_token=TOKEN)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(LOGIN_ATTEMPTS + 2):
            login(client, "guess-secret-777")
        login(client, TOKEN)
    assert "login throttled" in caplog.text
    assert "guess-secret-777" not in caplog.text
    assert TOKEN not in caplog.text


def scope_from(host: str) -> Request:
    return Request({"type": "http", "client": (host, 50000), "headers": []})


def test_login_attempts_count_per_ipv4_address_and_per_ipv6_64() -> None:
    assert login_client(scope_from("203.0.113.7")) == "203.0.113.7"
    assert login_client(scope_from("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert login_client(scope_from("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
