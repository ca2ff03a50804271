"""The shared endpoints (/health, /ready, /metrics, pages, errors) on a real server."""

from __future__ import annotations

import logging
import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ytproxy.errors import Forbidden
from ytproxy.logs import RedactingFilter
from ytproxy.settings import Settings
from ytproxy.signing import Signer


def test_health_reports_components_with_the_embedded_cache(app_server, settings) -> None:
    server = app_server(settings)
    body = httpx.get(server.url("/health")).json()
    assert body["status"] == "healthy"
    assert body["version"]
    assert body["ytdlp_version"].startswith("20")
    components = body["components"]
    assert components["redis"] == "embedded"
    assert components["ffmpeg"]["found"] is True
    assert components["js_runtime"]["found"] is True
    assert components["pot_provider"] == {"configured": False}


def test_health_says_degraded_while_redis_is_down_and_recovers_by_itself(
    app_server, settings, redis_server, redis_url
) -> None:
    server = app_server(settings, redis_url=redis_url)
    assert httpx.get(server.url("/health")).json()["components"]["redis"] == "connected"
    redis_server.stop()
    try:
        down = httpx.get(server.url("/health"))
        assert down.status_code == 200
        assert down.json()["status"] == "degraded"
        assert down.json()["components"]["redis"] == "unavailable"
        # Other requests are still served, the cache working locally meanwhile.
        assert httpx.get(server.url("/")).status_code == 200
        assert httpx.get(server.url("/metrics")).status_code == 200
        assert server.call(lambda: _roundtrip(server)) == {"v": 1}
    finally:
        redis_server.start()
    deadline = time.monotonic() + 10
    while httpx.get(server.url("/health")).json()["status"] != "healthy":
        assert time.monotonic() < deadline, "did not recover"
        time.sleep(0.2)
    assert httpx.get(server.url("/health")).json()["components"]["redis"] == "connected"


async def _roundtrip(server) -> object:
    await server.core.cache.set("probe", {"v": 1}, ttl=30)
    return await server.core.cache.get("probe")


def test_health_reports_an_unreachable_pot_provider_as_degraded(app_server, settings) -> None:
    server = app_server(settings, pot_provider_url="http://127.0.0.1:9")
    body = httpx.get(server.url("/health")).json()
    assert body["status"] == "degraded"
    assert body["components"]["pot_provider"]["reachable"] is False


def test_answers_do_not_name_the_server_software(app_server, settings) -> None:
    server = app_server(settings)
    for path in ("/health", "/", "/no-such-page"):
        response = httpx.get(server.url(path))
        assert "server" not in response.headers, path
        assert response.headers["date"]  # uvicorn's Date stays (RFC 9110 wants one)


def test_ready_answers_once_started(app_server, settings) -> None:
    server = app_server(settings)
    response = httpx.get(server.url("/ready"))
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_metrics_parse_with_prometheus_own_parser(app_server, settings) -> None:
    server = app_server(settings)
    httpx.get(server.url("/health"))
    httpx.get(server.url("/no-such-page"))
    response = httpx.get(server.url("/metrics"))
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert {"ytproxy_info", "ytdlp_requests", "active_streams", "http_requests"} <= set(families)
    routes = {s.labels["route"] for s in families["http_requests"].samples if "route" in s.labels}
    assert {"health", "unmatched"} <= routes


def test_two_apps_in_one_process_have_separate_registries(app_server, settings) -> None:
    first, second = app_server(settings), app_server(settings)
    httpx.get(first.url("/health"))
    labels = {"route": "health", "method": "GET", "status": "200"}

    def health_requests(server) -> float | None:
        return server.core.metrics.registry.get_sample_value("http_requests_total", labels)

    assert health_requests(first) == 1
    assert health_requests(second) is None


def test_start_page_uses_only_vendored_assets(app_server, settings) -> None:
    server = app_server(settings)
    page = httpx.get(server.url("/"), headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert "/static/vendor/htmx.min.js" in page.text
    assert "/static/vendor/pico.min.css" in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "no CDN or remote assets"
    for asset in re.findall(r"(?:src|href)=\"(/static/[^\"?]+)", page.text):
        assert httpx.get(server.url(asset)).status_code == 200, asset


def test_start_page_speaks_chinese_when_the_browser_asks(app_server, settings) -> None:
    server = app_server(settings)
    page = httpx.get(server.url("/"), headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-CN">' in page.text
    assert "解析视频" in page.text


def test_unknown_paths_get_json_for_api_clients_and_html_for_browsers(app_server, settings) -> None:
    server = app_server(settings)
    api = httpx.get(server.url("/v1/nothing"))
    assert api.status_code == 404
    assert api.json() == {
        "error": {"code": "not_found", "message": "There is nothing at this address"}
    }
    page = httpx.get(server.url("/nothing"), headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Traceback" not in page.text


def test_a_wrong_method_is_405_json(app_server, settings) -> None:
    server = app_server(settings)
    response = httpx.post(server.url("/health"))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_signed_tokens_are_opaque_and_refuse_tampering_expiry_and_other_purposes() -> None:
    signer = Signer("k" * 32)
    token = signer.seal("segment", {"url": "http://origin.example/seg/1.ts"}, ttl=60)
    assert "origin" not in token
    assert signer.open("segment", token) == {"url": "http://origin.example/seg/1.ts"}
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for bad in (tampered, "garbage", "", token + "x"):
        with pytest.raises(Forbidden) as caught:
            signer.open("segment", bad)
        assert caught.value.code == "invalid_token"
    with pytest.raises(Forbidden):
        signer.open("download", token)
    with pytest.raises(Forbidden):
        Signer("other-key" * 4).open("segment", token)
    expired = signer.seal("segment", {}, ttl=-1)
    with pytest.raises(Forbidden) as caught:
        signer.open("segment", expired)
    assert caught.value.code == "token_expired"


def test_log_filter_redacts_secrets_and_token_parameters() -> None:
    settings = Settings(secret_key="s3cr3t-key-0123456789", access_token="hunter2-token")
    flt = RedactingFilter([settings.access_token or "", settings.secret_key])
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "GET /playlist.m3u?token=%s key=%s other=%s",
        ("hunter2-token", "s3cr3t-key-0123456789", "/live/a.m3u8?lang=en&token=abc"),
        None,
    )
    flt.filter(record)
    message = record.getMessage()
    assert "hunter2" not in message
    assert "s3cr3t" not in message
    assert "token=abc" not in message
    assert "lang=en" in message


async def test_ready_is_503_until_start_up_has_finished(settings) -> None:
    from ytproxy.app import create_app

    # httpx's ASGI transport does not run the lifespan: the app has not started.
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"


def test_the_c_allocator_is_tuned_where_it_is_glibc() -> None:
    """`python app.py` keeps freed heap for reuse (cli.tune_malloc); on this glibc
    machine both settings must take (mallopt answers 0 to a refused one). In a process
    of its own, so the test run's allocator is left as it is."""
    import platform
    import subprocess
    import sys

    probe = "from ytproxy.cli import tune_malloc; print(tune_malloc())"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    assert out == str(platform.libc_ver()[0] == "glibc")
    assert out == "True"  # the machines this runs on are Debian (glibc)
