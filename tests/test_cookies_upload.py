"""Cookies uploaded from the browser or curl (`cookies.py`, `cookies_page.py`).

The acceptance runs the real path: a page on the test origin that answers 403 "Sign
in to confirm you're not a bot" without its session cookie (`tests/origin/signin.py`)
fails to analyse with `login_required`, a `cookies.txt` for the origin's host is
uploaded with `PUT /v1/cookies`, and the same URL then analyses, yt-dlp having read
the uploaded file. The origin is 127.0.0.1, which is not a YouTube domain: the tests
allow it explicitly with `COOKIES_EXTRA_DOMAINS`, as an operator would.
"""

from __future__ import annotations

import json
import logging
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.origin.signin import COOKIE_VALUE
from tests.test_analyse_origin import analyse
from ytproxy import cookies
from ytproxy.errors import BadRequest
from ytproxy.settings import Settings, SettingsError

TOKEN = "cookie-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FUTURE = int(time.time()) + 30 * 86400
YOUTUBE_COOKIES = (
    "# Netscape HTTP Cookie File\n"
    f".youtube.com\tTRUE\t/\tTRUE\t{FUTURE}\tSAPISID\tsapisid-value-0001\n"
    f"#HttpOnly_.youtube.com\tTRUE\t/\tTRUE\t{FUTURE}\t__Secure-3PSID\tpsid-value-0002\n"
    f".youtube.com\tTRUE\t/\tTRUE\t{FUTURE}\tLOGIN_INFO\tlogin-value-0003\n"
    f".google.com\tTRUE\t/\tTRUE\t{FUTURE}\tNID\tnid-value-0004\n"
    f".bank.example\tTRUE\t/\tTRUE\t{FUTURE}\tsession\tbank-value-0005\n"
)
VALUES = ("sapisid-value-0001", "psid-value-0002", "login-value-0003", "nid-value-0004")


@pytest.fixture
def start_app(app_server, settings, tmp_path):
    def start(**changes):
        defaults = {
            "access_token": TOKEN,
            "data_dir": tmp_path / "data",
            "cookies_extra_domains": ("127.0.0.1",),
        }
        return app_server(settings, **{**defaults, **changes})

    return start


def put(client: httpx.Client, body: bytes | str) -> httpx.Response:
    return client.put("/v1/cookies", content=body, headers=AUTH)


def test_every_cookies_route_is_refused_without_an_access_token(app_server, settings) -> None:
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url) as client:
        for method, path in [
            ("GET", "/settings"),
            ("POST", "/settings"),
            ("GET", "/v1/cookies"),
            ("PUT", "/v1/cookies"),
            ("DELETE", "/v1/cookies"),
        ]:
            response = client.request(method, path, content=YOUTUBE_COOKIES)
            assert response.status_code == 403, (method, path)
            assert response.json()["error"]["code"] == "cookies_need_token"
        page = client.get("/", headers={"Accept": "text/html"})
        assert 'href="/settings"' not in page.text
        assert not (settings.data_dir / "cookies.txt").exists()


def test_analysis_fails_with_login_required_and_succeeds_after_the_upload(
    start_app, origin, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_app()
    page = origin.signin.page_url
    assert httpx.get(page).status_code == 403
    assert httpx.get(page, cookies={"SID": COOKIE_VALUE}).status_code == 200
    responses: list[httpx.Response] = []
    with httpx.Client(
        base_url=server.base_url, headers=AUTH, event_hooks={"response": [responses.append]}
    ) as client:
        before = analyse(client, page)
        assert before["state"] == "failed"
        assert before["error"]["code"] == "login_required"
        assert "Sign in to confirm" in before["error"]["message"]

        uploaded = put(client, origin.signin.cookies_txt())
        assert uploaded.status_code == 200, uploaded.text
        body = uploaded.json()
        assert (body["present"], body["cookies"], body["domains"]) == (True, 1, ["127.0.0.1"])
        assert (body["signed_in"], body["dropped"], body["done"]) == (False, 0, "saved")

        stored = tmp_path / "data" / "cookies.txt"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
        assert stored.read_text().startswith("# Netscape HTTP Cookie File\n")
        assert [p.name for p in stored.parent.iterdir()] == ["cookies.txt"]  # no temp left

        after = analyse(client, page)
        assert after["state"] == "completed", after["error"]
        assert origin.signin.admitted >= 1
        [fmt] = [f for group in after["result"]["formats"].values() for f in group]

        for path in ("/v1/cookies", "/settings", "/diagnostics", "/api/diagnostics"):
            client.get(path, headers={"Accept": "text/html"})
        client.get(fmt["download_url"]).read()
    for response in responses:
        response.read()
        assert COOKIE_VALUE not in response.text, response.request.url
        assert COOKIE_VALUE not in json.dumps(dict(response.headers))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "cookies uploaded: 1 cookie(s) for 1 domain(s)" in logged
    assert COOKIE_VALUE not in logged


def test_the_upload_keeps_youtube_and_google_cookies_and_drops_the_rest(
    start_app, tmp_path
) -> None:
    server = start_app(cookies_extra_domains=())
    with httpx.Client(base_url=server.base_url) as client:
        body = put(client, YOUTUBE_COOKIES.encode()).json()
        assert (body["cookies"], body["dropped"]) == (4, 1)
        assert body["domains"] == ["google.com", "youtube.com"]
        assert body["signed_in"] is True
        assert body["login_cookies"] == ["LOGIN_INFO", "SAPISID", "__Secure-3PSID"]
        stored = (tmp_path / "data" / "cookies.txt").read_text()
        assert "bank-value-0005" not in stored and "#HttpOnly_.youtube.com" in stored
        assert all(value not in json.dumps(body) for value in VALUES)

        status = client.get("/v1/cookies", headers=AUTH).json()
        assert status["present"] is True and status["age_seconds"] < 60
        diagnostics = client.get("/api/diagnostics", headers=AUTH).json()
        [check] = [c for c in diagnostics["checks"] if c["name"] == "cookies"]
        assert check["status"] == "ok"
        assert check["details"]["signed_in"] is True
        assert check["details"]["domains"] == ["google.com", "youtube.com"]
        assert (
            "YouTube login cookies present (LOGIN_INFO, SAPISID, __Secure-3PSID)"
            in (check["message"])
        )
        assert "Updated 0 minute(s) ago; domains: google.com, youtube.com" in check["message"]
        assert all(value not in json.dumps(diagnostics) for value in VALUES)

        deleted = client.delete("/v1/cookies", headers=AUTH)
        assert deleted.json() == {"present": False, "uploads_to": "DATA_DIR", "done": "deleted"}
        assert not (tmp_path / "data" / "cookies.txt").exists()
        diagnostics = client.get("/api/diagnostics", headers=AUTH).json()
        [check] = [c for c in diagnostics["checks"] if c["name"] == "cookies"]
        assert check["status"] == "off"


def test_the_upload_replaces_ytdlp_cookies_file_when_it_is_set(start_app, tmp_path) -> None:
    configured = tmp_path / "mounted" / "cookies.txt"
    configured.parent.mkdir()
    configured.write_text("old", encoding="utf-8")
    server = start_app(ytdlp_cookies_file=configured)
    with httpx.Client(base_url=server.base_url, headers=AUTH) as client:
        body = put(client, YOUTUBE_COOKIES).json()
        assert body["uploads_to"] == "YTDLP_COOKIES_FILE"
        assert "SAPISID" in configured.read_text()
        assert stat.S_IMODE(configured.stat().st_mode) == 0o600
        assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        ('[{"domain": ".youtube.com"}]', "invalid_cookies", "JSON export"),
        (YOUTUBE_COOKIES.replace("\t", " "), "invalid_cookies", "line 2: its fields are separated"),
        (".youtube.com\tTRUE\t/\tTRUE\tsoon\tSID\tx\n", "invalid_cookies", "line 1: the expiry"),
        (".youtube.com\tMAYBE\t/\tTRUE\t0\tSID\tx\n", "invalid_cookies", "TRUE or FALSE"),
        (".youtube.com\tTRUE\tx\tTRUE\t0\tSID\tx\n", "invalid_cookies", "path (3rd field)"),
        ("bad domain\tTRUE\t/\tTRUE\t0\tSID\tx\n", "invalid_cookies", "domain (1st field)"),
        (b"\xff\xfe".decode("latin-1"), "invalid_cookies", "not UTF-8"),
        ("# Netscape HTTP Cookie File\n", "cookies_no_youtube", "No cookie for YouTube"),
        (".bank.example\tTRUE\t/\tTRUE\t0\tSID\tx\n", "cookies_no_youtube", "1 for other"),
    ],
)
def test_an_unfit_file_is_refused_with_the_line_and_never_its_content(
    content: str, code: str, words: str
) -> None:
    data = content.encode("latin-1") if content.startswith("\xff") else content.encode()
    with pytest.raises(BadRequest) as caught:
        cookies.read_upload(data)
    assert caught.value.code == code
    assert words in caught.value.message
    assert "sapisid-value" not in caught.value.message


def test_a_file_without_the_header_gets_it_and_a_bom_or_crlf_is_accepted() -> None:
    line = f".youtube.com\tTRUE\t/\tTRUE\t{FUTURE}\tSID\tv\r\n"
    text, summary = cookies.read_upload(("\ufeff" + line).encode())
    assert text.startswith("# Netscape HTTP Cookie File\n")
    assert text.endswith(f".youtube.com\tTRUE\t/\tTRUE\t{FUTURE}\tSID\tv\n")
    assert (summary.cookies, summary.signed_in) == (1, True)


def test_an_oversized_upload_is_refused_before_it_is_read_whole(start_app, tmp_path) -> None:
    server = start_app()
    big = YOUTUBE_COOKIES * (cookies.MAX_UPLOAD // len(YOUTUBE_COOKIES) + 1)
    with httpx.Client(base_url=server.base_url, headers=AUTH) as client:
        response = put(client, big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

        def chunks():
            for _ in range(4):
                yield big.encode()[: cookies.MAX_UPLOAD // 2]

        chunked = client.put("/v1/cookies", content=chunks())
        assert chunked.status_code == 413
    assert not (tmp_path / "data" / "cookies.txt").exists()


def test_the_settings_page_uploads_a_form_file_and_deletes_it(start_app, tmp_path) -> None:
    server = start_app(cookies_extra_domains=())
    with httpx.Client(base_url=server.base_url, headers=AUTH) as client:
        page = client.get("/settings?lang=zh", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "YouTube cookies" in page.text and "当前没有使用 cookies。" in page.text
        assert 'href="/settings" aria-current="page"' in page.text
        files = {"file": ("cookies.txt", YOUTUBE_COOKIES.encode(), "text/plain")}
        fragment = client.put("/v1/cookies", files=files, headers={"HX-Request": "true"})
        assert fragment.status_code == 200
        assert 'data-notice="saved"' in fragment.text
        assert 'data-signed-in="true"' in fragment.text
        assert "google.com, youtube.com" in fragment.text
        assert all(value not in fragment.text for value in VALUES)

        # Without JavaScript: the form posts to the page, which redirects back.
        (tmp_path / "data" / "cookies.txt").unlink()
        posted = client.post("/settings", files=files, follow_redirects=True)
        assert posted.status_code == 200 and 'data-notice="saved"' in posted.text
        deleted = client.post("/settings", data={"delete": "1"}, follow_redirects=True)
        assert 'data-notice="deleted"' in deleted.text
        assert not (tmp_path / "data" / "cookies.txt").exists()


def test_a_cross_site_page_cannot_replace_the_cookies(start_app, tmp_path) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url, headers=AUTH) as client:
        response = client.put(
            "/v1/cookies", content=YOUTUBE_COOKIES, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "cross_site_request"
    assert not (tmp_path / "data" / "cookies.txt").exists()


def test_the_extractor_uses_the_uploaded_file_only_when_there_is_one(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path / "d")})
    assert settings.cookies_target == tmp_path / "d" / "cookies.txt"
    assert settings.cookies_file() is None
    cookies.store(settings.cookies_target, "# Netscape HTTP Cookie File\n")
    assert settings.cookies_file() == tmp_path / "d" / "cookies.txt"
    configured = Settings.from_env(
        {"DATA_DIR": str(tmp_path / "d"), "YTDLP_COOKIES_FILE": str(tmp_path / "missing.txt")}
    )
    # A configured file wins, even missing: the extraction then says what is wrong.
    assert configured.cookies_file() == tmp_path / "missing.txt"
    assert configured.cookies_target == tmp_path / "missing.txt"


def test_data_dir_and_extra_domains_are_checked_once(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(SettingsError, match=r"DATA_DIR=.*not a directory"):
        Settings.from_env({"DATA_DIR": str(afile)})
    with pytest.raises(SettingsError, match="COOKIES_EXTRA_DOMAINS"):
        Settings.from_env({"COOKIES_EXTRA_DOMAINS": "https://x.example/"})
    parsed = Settings.from_env({"COOKIES_EXTRA_DOMAINS": " .Example.com, 127.0.0.1 "})
    assert parsed.cookies_extra_domains == ("example.com", "127.0.0.1")
    assert Settings.from_env({}).data_dir == Path("data")
