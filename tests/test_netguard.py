"""No private address, ever: the connect-time address policy (issue 10, item 1).

Two servers play the world. The *internal* one, on 127.0.0.1, stands for a service on
the VPS's private side (a database console, the cloud metadata endpoint): it counts
every request and must see none. The *public* one, on 127.0.0.2, stands for a web page
on the internet: the gateway trusts 127.0.0.2/32 (`TRUSTED_NETWORKS`) and nothing else
private, so reaching it is allowed and everything it leads to is checked. Its pages
embed the internal service's media, redirect to it, or redirect to 169.254.169.254.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web

from tests.forward_proxy import ForwardProxy
from tests.local_http import serving
from tests.test_analyse_origin import analyse
from ytproxy.core import open_http_session
from ytproxy.images import image_path
from ytproxy.netguard import MAX_REDIRECTS, AddressPolicy, TooManyRedirects, is_public
from ytproxy.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64 + b"IEND"
TRUSTED = (ipaddress.ip_network("127.0.0.2/32"),)


class _Server:
    """A threaded HTTP server on `host` that answers with `routes` and counts requests."""

    def __init__(self, host: str, routes: dict[str, Any]) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                route = routes.get(urlsplit(self.path).path)
                if route is None:
                    self._send(404, "text/plain", b"missing")
                    return
                status, headers, body = route(owner) if callable(route) else route
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def internal() -> Iterator[_Server]:
    server = _Server(
        "127.0.0.1",
        {
            "/secret.mp4": (200, {"Content-Type": "video/mp4"}, b"\x00\x00\x00\x18ftypmp42SECRET"),
            "/secret.html": (200, {"Content-Type": "text/html"}, b"<title>INTERNAL</title>"),
            "/secret.png": (200, {"Content-Type": "image/png"}, PNG),
        },
    )
    yield server
    server.close()


@pytest.fixture
def public(internal: _Server) -> Iterator[_Server]:
    def redirect(target: str) -> tuple[int, dict[str, str], bytes]:
        return 302, {"Location": target, "Content-Type": "text/plain"}, b""

    page = (
        f'<html><head><title>A public page</title></head><body><video src="{internal.base}'
        '/secret.mp4" controls></video></body></html>'
    ).encode()
    server = _Server(
        "127.0.0.2",
        {
            "/embed.html": (200, {"Content-Type": "text/html"}, page),
            "/redirect.mp4": redirect(f"{internal.base}/secret.mp4"),
            "/metadata.mp4": redirect("http://169.254.169.254/latest/meta-data/"),
            "/redirect.html": redirect(f"{internal.base}/secret.html"),
            "/thumb.png": (200, {"Content-Type": "image/png"}, PNG),
            "/thumb-redirect.png": redirect(f"{internal.base}/secret.png"),
            "/logo-redirect.png": redirect("http://[::ffff:127.0.0.1]:9/logo.png"),
        },
    )
    yield server
    server.close()


@pytest.fixture
def strict(settings):
    """Settings of a gateway on a server: private networks refused, 127.0.0.2 trusted."""
    return settings.replace(allow_private_networks=False, trusted_networks=TRUSTED)


def download_links(result: dict[str, Any]) -> list[str]:
    return [
        fmt["download_url"]
        for group in result["formats"].values()
        for fmt in group
        if fmt.get("download_url")
    ]


def test_policy_refuses_every_non_public_form_and_allows_trusted_networks() -> None:
    policy = AddressPolicy(allow_private=False, trusted=TRUSTED)
    refused = [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",
        "ff02::1",
    ]
    for text in refused:
        assert not policy.permits(ipaddress.ip_address(text)), text
    for text in ("8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808", "127.0.0.2"):
        assert policy.permits(ipaddress.ip_address(text)), text
    assert not is_public(ipaddress.ip_address("127.0.0.2"))


def test_a_page_embedding_internal_media_never_reaches_the_internal_service(
    app_server, strict, internal, public
) -> None:
    server = app_server(strict)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        task = analyse(client, f"{public.base}/embed.html")
        if task["state"] == "failed":
            assert task["error"]["code"] == "forbidden_address", task
        else:
            links = download_links(task["result"])
            assert links, task
            for link in links:
                response = client.get(link)
                assert response.status_code == 403, response.text
                assert response.json()["error"]["code"] == "forbidden_address"
    assert internal.requests == []


@pytest.mark.parametrize("path", ["/redirect.mp4", "/metadata.mp4", "/redirect.html"])
def test_media_or_a_page_redirecting_inside_fails_the_analysis_with_a_stable_code(
    app_server, strict, internal, public, path
) -> None:
    server = app_server(strict)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        task = analyse(client, f"{public.base}{path}")
    assert task["state"] == "failed", task
    assert task["error"]["code"] == "forbidden_address"
    assert "INTERNAL" not in str(task)
    assert internal.requests == []
    assert public.requests  # the public page itself was read


def test_a_redirecting_thumbnail_or_logo_is_refused_by_the_image_relay(
    app_server, strict, internal, public
) -> None:
    server = app_server(strict)
    signer = server.core.signer
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        good = client.get(image_path(signer, f"{public.base}/thumb.png"))
        assert good.status_code == 200 and good.content == PNG
        for path in ("/thumb-redirect.png", "/logo-redirect.png"):
            response = client.get(image_path(signer, f"{public.base}{path}"))
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "forbidden_address"
    assert internal.requests == []


def test_a_link_minted_where_private_networks_are_allowed_is_refused_where_they_are_not(
    app_server, settings, origin, redis_url
) -> None:
    lenient = app_server(settings, redis_url=redis_url)
    with httpx.Client(base_url=lenient.base_url, timeout=30) as client:
        task = analyse(client, origin.vod_url)
    assert task["state"] == "completed", task
    link = download_links(task["result"])[0]
    strict = app_server(settings, redis_url=redis_url, allow_private_networks=False)
    before = sum(origin.requests.values())
    with httpx.Client(base_url=strict.base_url, timeout=30) as client:
        response = client.get(link)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden_address"
    assert sum(origin.requests.values()) == before


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


def test_through_global_proxy_private_targets_are_refused_before_anything_is_sent(
    app_server, strict, internal, public, proxy
) -> None:
    server = app_server(strict, global_proxy=proxy.url)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        task = analyse(client, f"{public.base}/redirect.mp4")
        assert task["state"] == "failed", task
        assert task["error"]["code"] == "forbidden_address"
        for path in ("/thumb-redirect.png", "/logo-redirect.png"):
            response = client.get(image_path(server.core.signer, f"{public.base}{path}"))
            assert response.status_code == 403, response.text
        good = client.get(image_path(server.core.signer, f"{public.base}/thumb.png"))
        assert good.status_code == 200
        # A name that resolves locally to a private address is refused as well.
        named = client.get(image_path(server.core.signer, "http://localhost:9/x.png"))
        assert named.status_code == 403, named.text
    carried = set(proxy.requests)
    assert urlsplit(public.base).netloc in carried  # the proxy did carry the public hops
    assert not any(target.startswith(("127.0.0.1", "localhost", "[::")) for target in carried)
    assert internal.requests == []


async def test_the_session_follows_at_most_five_redirects() -> None:
    """The app's session caps redirect chains (`netguard.MAX_REDIRECTS`) for every call."""

    async def hop(request: web.Request) -> web.StreamResponse:
        left = int(request.match_info["left"])
        if left == 0:
            return web.Response(text="arrived")
        raise web.HTTPFound(f"/r/{left - 1}")

    app = web.Application()
    app.router.add_get("/r/{left}", hop)
    settings = Settings.from_env({"ALLOW_PRIVATE_NETWORKS": "true"})
    async with (
        serving(app) as base,
        open_http_session(settings, AddressPolicy.from_settings(settings)) as session,
    ):
        url = f"{base}/r/{{}}"
        async with session.get(url.format(MAX_REDIRECTS)) as arrived:
            assert await arrived.text() == "arrived"
            assert len(arrived.history) == MAX_REDIRECTS
        with pytest.raises(TooManyRedirects):
            async with session.get(url.format(MAX_REDIRECTS + 1)):
                pass
        # Each request counts its own hops: the next one within the cap arrives.
        async with session.get(url.format(MAX_REDIRECTS)) as again:
            assert again.status == 200
