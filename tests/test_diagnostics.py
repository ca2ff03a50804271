"""/diagnostics reports every component, and explains what is wrong and what to do.

Real things throughout: the app on a real socket, a closed port for a provider that is
down, a tiny aiohttp server standing in for the bgutil PO-token provider (its /ping is
all the gateway uses), real cookies files, and the loopback forward proxy of
`tests.forward_proxy` for GLOBAL_PROXY.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tests.forward_proxy import ForwardProxy
from tests.local_http import serving
from ytproxy.diagnostics import check_cookies, check_ytdlp, diagnose, without_credentials

PLUGIN_VERSION = importlib.metadata.version("bgutil-ytdlp-pot-provider")
FUTURE = int(time.time()) + 30 * 86400
PAST = int(time.time()) - 86400
GOOD_COOKIES = (
    "# Netscape HTTP Cookie File\n"
    "# https://curl.haxx.se/rfc/cookie_spec.html\n"
    "\n"
    f".youtube.com\tTRUE\t/\tTRUE\t{FUTURE}\tPREF\tf6=40000000\n"
    f"#HttpOnly_.youtube.com\tTRUE\t/\tTRUE\t{FUTURE}\tVISITOR_INFO1_LIVE\tabcdef\n"
    f".youtube.com\tTRUE\t/\tTRUE\t{PAST}\tOLD\tx\n"
    f".google.com\tTRUE\t/\tFALSE\t0\tNID\tsession\n"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def checks_of(body: dict) -> dict[str, dict]:
    return {check["name"]: check for check in body["checks"]}


@pytest.fixture
async def fake_provider() -> AsyncIterator[dict]:
    """A stand-in for the bgutil provider (/ping) that also answers /generate_204,
    the proxy check's target. `state["version"]` is what /ping reports."""
    state: dict = {"version": PLUGIN_VERSION, "pings": 0}

    async def ping(request: web.Request) -> web.Response:
        state["pings"] += 1
        return web.json_response({"server_uptime": 12.5, "version": state["version"]})

    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_get("/generate_204", no_content)
    async with serving(app) as state["url"]:
        yield state


def test_diagnostics_explains_a_pot_provider_that_is_down(app_server, settings) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    server = app_server(settings, pot_provider_url=url)
    response = httpx.get(server.url("/api/diagnostics"))
    assert response.status_code == 200
    body = response.json()
    pot = checks_of(body)["pot_provider"]
    assert pot["status"] == "error"
    assert f"Nothing answers at {url}/ping" in pot["message"]
    assert "docker compose up -d bgutil" in pot["message"]
    assert "bot checks or 403" in pot["message"]
    assert pot["details"]["reachable"] is False
    assert body["status"] == "error"


def test_diagnostics_explains_a_malformed_cookies_file(app_server, settings, tmp_path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(GOOD_COOKIES.replace("\t", " "), encoding="utf-8")
    server = app_server(settings, ytdlp_cookies_file=cookies)
    check = checks_of(httpx.get(server.url("/api/diagnostics")).json())["cookies"]
    assert check["status"] == "error"
    assert check["message"].startswith(f"{cookies}: 4 line(s) are not valid cookies")
    assert "line 4: its fields are separated by spaces, not tabs" in check["message"]
    assert check["details"]["invalid_lines"] == [4, 5, 6, 7]
    assert "abcdef" not in json.dumps(check)  # cookie values never appear


@pytest.mark.parametrize(
    ("content", "status", "explanation"),
    [
        (None, "error", "does not exist"),
        ('[{"domain": ".youtube.com", "name": "SID"}]', "error", "is JSON"),
        ("youtube.com\tTRUE\t/\tTRUE\t0\tSID\tx\n", "error", "does not start with"),
        ("# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\n", "error", "4 tab-separated"),
        (
            "# HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\tsoon\tSID\tx\n",
            "error",
            "the expiry (5th field) is not a Unix time",
        ),
        ("# Netscape HTTP Cookie File\n# nothing\n", "error", "holds no cookies"),
        (
            f"# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tFALSE\t{FUTURE}\ta\tb\n",
            "warning",
            "none for youtube.com",
        ),
        (
            f"# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t{PAST}\tSID\tx\n",
            "warning",
            "all expired",
        ),
        (GOOD_COOKIES, "ok", "Netscape format, 3 YouTube cookie(s) (1 expired)"),
    ],
)
def test_cookies_check_explains_each_way_a_file_goes_wrong(
    tmp_path: Path, content: str | None, status: str, explanation: str
) -> None:
    path = tmp_path / "cookies.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    check = check_cookies(path).to_dict("en")
    assert check["status"] == status
    assert explanation in check["message"]


def test_cookies_check_is_off_when_not_configured() -> None:
    check = check_cookies(None).to_dict("en")
    assert check["status"] == "off"
    assert "YTDLP_COOKIES_FILE is not set" in check["message"]


async def test_diagnostics_reports_ok_with_good_cookies_and_a_live_provider(
    app_server, settings, tmp_path, fake_provider
) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(GOOD_COOKIES, encoding="utf-8")
    server = app_server(settings, ytdlp_cookies_file=cookies, pot_provider_url=fake_provider["url"])
    async with httpx.AsyncClient() as client:
        response = await client.get(
            server.url("/diagnostics"), headers={"Accept": "application/json"}
        )
    checks = checks_of(response.json())
    assert checks["pot_provider"]["status"] == "ok"
    assert checks["pot_provider"]["message"] == (
        f"The bgutil provider at {fake_provider['url']} answers (version {PLUGIN_VERSION})."
    )
    assert checks["cookies"]["status"] == "ok"
    assert checks["cookies"]["details"]["youtube_cookies"] == 3
    assert checks["js_runtime"]["status"] == "ok"
    assert checks["ffmpeg"]["status"] == "ok"
    assert checks["redis"]["status"] == "off"
    assert checks["proxy"]["status"] == "off"
    assert set(checks) == {
        "ytdlp", "js_runtime", "pot_provider", "proxy", "cookies", "redis", "ffmpeg",
        "extractor_args", "channels",
    }  # fmt: skip
    assert fake_provider["pings"] == 1


async def test_diagnostics_warns_when_provider_and_plugin_versions_differ(
    app_server, settings, fake_provider
) -> None:
    fake_provider["version"] = "0.9.0"
    server = app_server(settings, pot_provider_url=fake_provider["url"])
    async with httpx.AsyncClient() as client:
        body = (await client.get(server.url("/api/diagnostics"))).json()
    pot = checks_of(body)["pot_provider"]
    assert pot["status"] == "warning"
    assert f"Set BGUTIL_VERSION={PLUGIN_VERSION}" in pot["message"]


async def test_proxy_check_goes_through_global_proxy(app_server, settings, fake_provider) -> None:
    with ForwardProxy() as proxy:
        server = app_server(settings, global_proxy=proxy.url)
        target = f"{fake_provider['url']}/generate_204"
        # In a thread: the target runs on this test's loop, which must stay free.
        report = await asyncio.to_thread(
            server.call,
            lambda: diagnose(server.core, server.live.channel_report, proxy_target=target),
        )
        check = next(c for c in report.checks if c.name == "proxy").to_dict("en")
        assert check["status"] == "ok", check
        assert check["message"].startswith(f"Through {proxy.url}, {target} answered HTTP 204")
        assert proxy.count(fake_provider["url"].removeprefix("http://")) == 1


def test_proxy_check_explains_a_proxy_that_is_down(app_server, settings) -> None:
    proxy = f"http://user:secret@127.0.0.1:{closed_port()}"
    server = app_server(settings, global_proxy=proxy)
    report = server.call(
        lambda: diagnose(
            server.core, server.live.channel_report, proxy_target="http://127.0.0.1:9/"
        )
    )
    check = next(c for c in report.checks if c.name == "proxy").to_dict("en")
    assert check["status"] == "error"
    assert check["message"].startswith(f"Cannot connect to the proxy {without_credentials(proxy)}")
    assert "secret" not in json.dumps(check)


def test_diagnostics_page_renders_every_component_in_chinese(app_server, settings) -> None:
    server = app_server(settings, pot_provider_url=f"http://127.0.0.1:{closed_port()}")
    response = httpx.get(server.url("/diagnostics?lang=zh"), headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<h1>诊断</h1>" in page
    for name in ("ytdlp", "js_runtime", "pot_provider", "proxy", "cookies", "redis", "ffmpeg"):
        assert f'id="check-{name}"' in page
    assert "没有响应" in page  # the provider that is down, explained in Chinese
    assert 'href="/api/diagnostics"' in page


def test_diagnostics_reports_redis_that_is_down(app_server, settings) -> None:
    server = app_server(settings, redis_url=f"redis://:pw@127.0.0.1:{closed_port()}/0")
    check = checks_of(httpx.get(server.url("/api/diagnostics")).json())["redis"]
    assert check["status"] == "error"
    assert "does not answer" in check["message"]
    assert ":pw@" not in json.dumps(check)


def test_ytdlp_age_is_read_from_its_version() -> None:
    fresh = check_ytdlp(dt.date(2026, 8, 29), "2026.08.19").to_dict("en")
    assert fresh["status"] == "ok"
    assert fresh["details"]["age_days"] == 10
    assert fresh["message"] == "yt-dlp 2026.08.19, released 10 days ago."
    old = check_ytdlp(dt.date(2026, 12, 1), "2026.08.19.232652").to_dict("en")
    assert old["status"] == "warning"
    assert "104 days old" in old["message"]
    assert "docker compose build --pull --no-cache app" in old["message"]
    assert check_ytdlp(dt.date(2026, 1, 1), "weird").status == "warning"


def test_diagnostics_shows_each_channels_last_resolution(app_server, settings, tmp_path) -> None:
    channels = tmp_path / "channels.toml"
    channels.write_text(
        '[[channel]]\nid = "gone"\nname = "Gone"\n'
        f'url = "http://127.0.0.1:{closed_port()}/channel/gone/live"\n\n'
        '[[channel]]\nid = "idle"\nname = "Idle"\nurl = "http://127.0.0.1:9/live"\n',
        encoding="utf-8",
    )
    server = app_server(settings, channels_file=channels)
    # /api/stream resolves and reports (the player URL would answer the slate).
    assert httpx.get(server.url("/api/stream/gone"), timeout=60).status_code >= 500
    body = httpx.get(server.url("/api/diagnostics")).json()
    rows = {row["id"]: row for row in body["channels"]}
    assert rows["gone"]["status"] in {"error", "offline"}
    assert rows["gone"]["code"]
    assert rows["gone"]["checked_at"] > time.time() - 120
    assert rows["idle"]["status"] == "not_resolved"
    assert checks_of(body)["channels"]["details"] == {
        "live": 0,
        "enabled": 2,
        "failed": 1 if rows["gone"]["status"] == "error" else 0,
    }
    page = httpx.get(server.url("/diagnostics"), headers={"Accept": "text/html"}).text
    assert 'id="channel-resolutions"' in page and "not resolved yet" in page


def test_diagnostics_shows_the_extractor_args_yt_dlp_gets(app_server, settings) -> None:
    args = {"youtube": {"player_client": ["web_safari", "mweb"]}}
    server = app_server(settings, ytdlp_extractor_args=args)
    check = checks_of(httpx.get(server.url("/api/diagnostics")).json())["extractor_args"]
    assert check["status"] == "ok"
    assert "youtube: player_client=web_safari,mweb" in check["message"]
    assert check["details"]["args"] == args
    assert server.core.extractor.params()["extractor_args"]["youtube"] == {
        "player_client": ["web_safari", "mweb"]
    }
    page = httpx.get(server.url("/diagnostics?lang=zh"), headers={"Accept": "text/html"}).text
    assert 'id="check-extractor_args"' in page and "提取器参数" in page
    plain = app_server(settings)
    off = checks_of(httpx.get(plain.url("/api/diagnostics")).json())["extractor_args"]
    assert off["status"] == "off" and "player_client" in off["message"]
