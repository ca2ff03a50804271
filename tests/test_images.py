"""Thumbnails and channel logos through the gateway (`/v1/image/<token>`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ytproxy.analyse.endpoints import with_links
from ytproxy.images import MAX_IMAGE_BYTES, image_path

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200 + b"IEND"


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/thumb.png":
            self._send(200, "image/png", PNG)
        elif path == "/page.html":
            self._send(200, "text/html", b"<html>not an image</html>")
        elif path == "/huge.jpg":
            self._send(200, "image/jpeg", b"\xff" * (MAX_IMAGE_BYTES + 1))
        else:
            self._send(404, "text/plain", b"missing")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return None  # the gateway hangs up on the oversized image on purpose


@pytest.fixture
def image_host() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_image_is_relayed_byte_for_byte_with_browser_caching(
    app_server, settings, image_host
) -> None:
    server = app_server(settings)
    path = image_path(server.core.signer, f"{image_host}/thumb.png")
    response = httpx.get(server.url(path))
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert "max-age=86400" in response.headers["cache-control"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert image_host not in path


@pytest.mark.parametrize("name", ["page.html", "huge.jpg", "missing.png"])
def test_what_is_not_a_reachable_image_is_502_image_unavailable(
    app_server, settings, image_host, name
) -> None:
    server = app_server(settings)
    response = httpx.get(server.url(image_path(server.core.signer, f"{image_host}/{name}")))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "image_unavailable"


def test_an_image_on_a_private_address_is_refused_without_the_setting(
    app_server, settings, image_host
) -> None:
    server = app_server(settings, allow_private_networks=False)
    response = httpx.get(server.url(image_path(server.core.signer, f"{image_host}/thumb.png")))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_address"


def test_a_forged_or_foreign_token_is_403(app_server, settings, image_host) -> None:
    server = app_server(settings)
    download_like = server.core.signer.seal("download", {"u": f"{image_host}/thumb.png"}, 60)
    for token in ("forged", download_like):
        response = httpx.get(server.url(f"/v1/image/{token}"))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "invalid_token"


def test_image_links_are_stable_so_browsers_can_cache_them(app_server, settings) -> None:
    signer = app_server(settings).core.signer
    first = image_path(signer, "https://i.ytimg.com/vi/x/maxresdefault.jpg")
    assert first == image_path(signer, "https://i.ytimg.com/vi/x/maxresdefault.jpg")
    assert first != image_path(signer, "https://i.ytimg.com/vi/y/maxresdefault.jpg")


def test_served_results_carry_the_thumbnail_through_the_gateway(
    app_server, settings, image_host
) -> None:
    server = app_server(settings)
    result = {
        "title": "t",
        "thumbnail": f"{image_host}/thumb.png",
        "formats": {"muxed": [], "video_only": [], "audio_only": []},
        "recommended": {},
    }
    served = with_links(server.core, "https://example.com/watch", result)
    assert served["thumbnail"] == result["thumbnail"]
    assert served["thumbnail_url"].startswith("/v1/image/")
    assert httpx.get(server.url(served["thumbnail_url"])).content == PNG


def test_m3u_and_channels_api_point_logos_at_the_gateway_with_the_token(
    app_server, settings, channels_file, image_host
) -> None:
    channels_file.write_text(
        '[[channel]]\nid = "logo"\nname = "Logo TV"\nurl = "https://example.com/live"\n'
        f'logo = "{image_host}/thumb.png"\n',
        encoding="utf-8",
    )
    server = app_server(settings, access_token="family-token-1")
    auth = {"Authorization": "Bearer family-token-1"}
    m3u = httpx.get(server.url("/playlist.m3u"), headers=auth).text
    logo = m3u.split('tvg-logo="', 1)[1].split('"', 1)[0]
    assert logo.startswith(server.base_url + "/v1/image/")
    assert parse_qs(urlsplit(logo).query)["token"] == ["family-token-1"]
    assert image_host not in m3u
    assert httpx.get(logo).content == PNG  # a player fetches it with no other credentials
    [channel] = httpx.get(server.url("/api/channels"), headers=auth).json()["channels"]
    assert channel["logo_url"] == logo
