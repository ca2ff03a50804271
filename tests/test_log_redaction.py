"""Secrets never reach the logs, however a client spells them in a URL."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.apps import AppServer
from ytproxy.logs import JsonFormatter, RedactingFilter
from ytproxy.settings import Settings

TOKEN = "hunter2-Tok"
SECRET_KEY = "s3cr3t key/0123456789"


@pytest.fixture
def redact() -> Callable[[str], str]:
    return RedactingFilter([TOKEN, SECRET_KEY]).redact


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /playlist.m3u?tok%65n=abc HTTP/1.1", "GET /playlist.m3u?tok%65n=*** HTTP/1.1"),
        ("GET /playlist.m3u?TOKEN=abc HTTP/1.1", "GET /playlist.m3u?TOKEN=*** HTTP/1.1"),
        ("GET /playlist.m3u?%74oken=abc&lang=en", "GET /playlist.m3u?%74oken=***&lang=en"),
        ("GET /x?lang=en&Access_Token=abc", "GET /x?lang=en&Access_Token=***"),
        ("GET /x?a=1;token=abc", "GET /x?a=1;token=***"),
        ("GET /x?%2574oken=abc", "GET /x?%2574oken=***"),
        ("GET /x?pass%77ord=abc&api-key=def", "GET /x?pass%77ord=***&api-key=***"),
        ("GET /x?to+ken=abc", "GET /x?to+ken=abc"),
    ],
)
def test_secret_query_parameters_are_redacted_after_decoding_their_names(
    redact: Callable[[str], str], line: str, expected: str
) -> None:
    assert redact(line) == expected


@pytest.mark.parametrize(
    "spelling",
    [
        TOKEN,
        "%68unter2-Tok",
        "hunter2%2DTok",
        "hunter2%2dTok",
        "%68%75%6E%74%65%72%32%2D%54%6F%6B",
        "%68%75%6e%74%65%72%32%2d%54%6f%6b",
        "%2568unter2%252dTok",
        "s3cr3t+key%2F0123456789",
        "s3cr3t%20key/0123456789",
    ],
)
def test_the_access_token_and_secret_key_are_redacted_anywhere_however_encoded(
    redact: Callable[[str], str], spelling: str
) -> None:
    for line in (f"GET /live/{spelling}/x.m3u8 HTTP/1.1", f"GET /x?next=/y%3Fq%3D{spelling}"):
        redacted = redact(line)
        assert spelling not in redacted
        assert "***" in redacted


def test_an_encoded_url_inside_a_parameter_has_its_own_token_redacted(
    redact: Callable[[str], str],
) -> None:
    once = "/v1/analyse?url=https%3A%2F%2Fv.example%2Fw%3Ftoken%3Dabc%26t%3D1&lang=en"
    assert redact(once) == (
        "/v1/analyse?url=https%3A%2F%2Fv.example%2Fw%3Ftoken%3D***%26t%3D1&lang=en"
    )
    twice = "/x?u=https%253A%252F%252Fv%253Ftok%2565n%253Dabc%2526t%253D1"
    assert redact(twice) == "/x?u=https%253A%252F%252Fv%253Ftok%2565n%253D***%2526t%253D1"


@pytest.mark.parametrize(
    "line",
    [
        'GET /search?q=key+lime&page=2&format=json&lang=zh-CN HTTP/1.1" 200',
        "GET /v1/download/eyJhbGciOi.abc HTTP/1.1",
        "cookies file /srv/cookies.txt is not readable",
        "tokens: 3 refreshed, keys rotated",
    ],
)
def test_ordinary_lines_and_queries_are_untouched(redact: Callable[[str], str], line: str) -> None:
    assert redact(line) == line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: ***"),
        ("proxy-authorization: Basic dXNlcg==", "proxy-authorization: ***"),
        ("Cookie: SID=1; HSID=2", "Cookie: ***"),
        (
            "headers={'Authorization': 'Bearer x', 'Cookie': 'a=b', 'Accept': '*/*'}",
            "headers={'Authorization': '***', 'Cookie': '***', 'Accept': '*/*'}",
        ),
        ('{"set-cookie": "id=1; Path=/"}', '{"set-cookie": "***"}'),
    ],
)
def test_authorization_and_cookie_headers_are_redacted_if_ever_logged(
    redact: Callable[[str], str], line: str, expected: str
) -> None:
    assert redact(line) == expected


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The records of `ytproxy.test` and uvicorn's access log, as `configure_logging`
    writes them: through a handler carrying the filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter([TOKEN, SECRET_KEY]))
    loggers = [logging.getLogger("ytproxy.test"), logging.getLogger("uvicorn.access")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_uvicorn_access_log_of_a_real_request_is_redacted(
    app_server: Callable[..., AppServer], settings: Settings, captured: io.StringIO
) -> None:
    server = app_server(settings.replace(access_token=TOKEN, secret_key=SECRET_KEY))
    for path in (
        "/health?tok%65n=hunter2-Tok",
        "/health?TOKEN=abc",
        "/health?%74oken=abc",
        "/health/%68unter2%2DTok",
        "/health?lang=en&page=2",
    ):
        httpx.get(server.url(path))
    server.stop()  # the access log is written by the server's thread: wait for it
    log = captured.getvalue()
    assert log.count("uvicorn.access") == 5, log
    assert "hunter2" not in log and "%68unter2" not in log
    assert "abc" not in log
    assert "?tok%65n=***" in log and "?TOKEN=***" in log and "?%74oken=***" in log
    assert "/health/*** " in log
    assert "/health?lang=en&page=2 " in log


def test_tracebacks_are_redacted_in_text_and_json(captured: io.StringIO) -> None:
    log = logging.getLogger("ytproxy.test")
    try:
        raise RuntimeError(f"upstream refused https://x.example/?token=abc and {TOKEN}")
    except RuntimeError:
        log.exception("fetch failed for %s", "/live/a?access_token=def")
    text = captured.getvalue()
    assert "Traceback" in text
    assert "abc" not in text and "def" not in text and TOKEN not in text
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
    try:
        raise RuntimeError(f"with {TOKEN}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    RedactingFilter([TOKEN]).filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert TOKEN not in entry["exception"] and "***" in entry["exception"]
