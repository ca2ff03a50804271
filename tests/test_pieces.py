"""The download relay's piece client (`ytproxy.pieces`, `ytproxy.http1`) against servers
that misbehave.

Each test runs a small server on the test's own loop: aiohttp for well-formed answers,
a raw asyncio server where the bytes on the wire must be exactly wrong (a body cut
short, a head that never comes, a kept-alive connection closed under a request). The
relay over the client is tested through the app in `test_download_relay.py` and
`test_download_cleanup.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from tests.local_http import serving
from ytproxy import http1, pieces
from ytproxy.download.upstream import Upstream
from ytproxy.errors import UpstreamError
from ytproxy.http1 import Response
from ytproxy.metrics import Metrics
from ytproxy.netguard import AddressPolicy, ForbiddenAddress, TooManyRedirects
from ytproxy.pieces import PieceClient, RequestHeaders, UpstreamStalled
from ytproxy.sources import Sources

OPEN = AddressPolicy(allow_private=True)
DATA = bytes(range(256)) * 400  # 100 KiB
HEADERS = RequestHeaders({"User-Agent": "test", "Accept-Encoding": "identity"})

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[str]:
    """A server that answers with `handle`; its connections end with the block."""
    running: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def answer(reply: bytes, *, close: bool) -> Handler:
    """A handler that reads one request head, sends `reply` as it is, then closes the
    connection or holds it open."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        if not close:
            await asyncio.sleep(30)

    return handle


@contextlib.asynccontextmanager
async def client(policy: AddressPolicy = OPEN, **options: Any) -> AsyncIterator[PieceClient]:
    made = PieceClient(policy, **options)
    try:
        yield made
    finally:
        await made.close()


async def body_of(response: Response) -> bytes:
    received = bytearray()
    while block := await response.read(64 * 1024):
        received += block
    return bytes(received)


def fixed(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body)

    return handler


def ranged_app(peers: list[object]) -> web.Application:
    """Serves DATA with Range support; records each request's client port."""

    async def handler(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername")[1] if request.transport else 0)
        first, _, last = request.headers["Range"].removeprefix("bytes=").partition("-")
        part = DATA[int(first) : int(last) + 1]
        headers = {"Content-Range": f"bytes {first}-{int(first) + len(part) - 1}/{len(DATA)}"}
        return web.Response(status=206, body=part, headers=headers)

    app = web.Application()
    app.router.add_get("/file", handler)
    return app


async def test_pieces_one_after_another_share_one_kept_alive_connection() -> None:
    peers: list[object] = []
    async with serving(ranged_app(peers)) as base, client() as pieces_client:
        received = b""
        for first in range(0, len(DATA), 40_000):
            last = min(first + 40_000, len(DATA)) - 1
            response = await pieces_client.get(base + "/file", HEADERS, (first, last))
            assert response.status == 206
            assert response.headers["content-range"].startswith(f"bytes {first}-{last}/")
            received += await body_of(response)
            response.release()
            assert pieces_client.idle() == 1 and pieces_client.busy() == 0
        assert received == DATA
        assert len(peers) == 3 and len(set(peers)) == 1


async def test_a_piece_connection_receives_into_a_fixed_large_buffer_when_allowed() -> None:
    """Bulk relays run faster with the fixed receive buffer than with the kernel's
    auto-tuned one (`make bench`'s bulk row); this holds the setting itself."""
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    async with serving(ranged_app([])) as base, client() as pieces_client:
        response = await pieces_client.get(base + "/file", HEADERS, (0, 999))
        sock = cast(Any, response)._connection._transport.get_extra_info("socket")
        booked = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert await body_of(response) == DATA[:1000]
        response.release()
    if rmem_max >= http1.RECEIVE_BUFFER:  # Linux books twice what was asked
        assert booked >= http1.RECEIVE_BUFFER
    else:  # left to auto-tuning, which starts at tcp_rmem's default
        assert booked < http1.RECEIVE_BUFFER
    # The decision itself, for a kernel that allows it and one that caps it.
    assert http1.fixed_receive_buffer(4 * 1024 * 1024) == http1.RECEIVE_BUFFER
    assert http1.fixed_receive_buffer(212_992) is None
    assert http1.fixed_receive_buffer(None) is None


async def test_a_body_is_byte_exact_whether_sized_chunked_or_ended_by_the_close() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(DATA), 7_000):
            await response.write(DATA[i : i + 7_000])
        await response.write_eof()
        return response

    until_close = answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + DATA, close=True)
    app = web.Application()
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/sized", fixed(DATA))
    async with (
        serving(app) as base,
        raw_server(until_close) as raw,
        client() as pieces_client,
    ):
        for url in (base + "/sized", base + "/chunked", raw + "/"):
            response = await pieces_client.get(url, HEADERS)
            assert await body_of(response) == DATA, url
            assert response.at_eof()
            response.release()
        # The aiohttp server's one connection is kept; the one its peer closed is not.
        assert pieces_client.idle() == 1


async def test_an_interim_answer_is_skipped_for_the_final_one() -> None:
    early_hints = answer(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\n\r\nok",
        close=False,
    )
    async with raw_server(early_hints) as base, client() as pieces_client:
        response = await pieces_client.get(base + "/", HEADERS)
        assert (response.status, "link" in response.headers) == (206, False)
        assert await body_of(response) == b"ok"
        response.release()
        assert pieces_client.idle() == 1


async def test_an_unparsable_answer_fails_naming_only_the_origin() -> None:
    garbage = answer(b"HTTP/1.1 2x0 Nope\r\n\r\n", close=False)
    async with raw_server(garbage) as base, client() as pieces_client:
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            await pieces_client.get(base + "/file?sig=secret", HEADERS, (0, 9))
        assert pieces_client.busy() == 0 and pieces_client.idle() == 0
    assert str(caught.value.request_info.url) == base
    assert "Bad response" in caught.value.message
    assert "secret" not in str(caught.value) + repr(caught.value.request_info)


async def test_a_body_cut_short_gives_what_arrived_then_a_payload_error() -> None:
    cut = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd", close=True)
    async with raw_server(cut) as base, client() as pieces_client:
        response = await pieces_client.get(base + "/", HEADERS)
        assert await response.read(10) == b"abcd"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read(10)
        response.release()  # not at its end: closed, not pooled
        assert pieces_client.idle() == 0 and pieces_client.busy() == 0


async def test_a_response_released_twice_or_after_its_connection_was_lost_is_let_go_once() -> None:
    whole = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab", close=False)
    async with raw_server(whole) as base, client() as pieces_client:
        response = await pieces_client.get(base + "/", HEADERS)
        assert await response.read(10) == b"ab" and await response.read(10) == b""
        response.release()
        response.release()  # a second time: the connection is not pooled twice
        response.close()  # nor closed under the next request
        assert pieces_client.idle() == 1 and pieces_client.busy() == 0
    dropped = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", close=True)
    async with raw_server(dropped) as base, client() as pieces_client:
        response = await pieces_client.get(base + "/", HEADERS)
        assert await response.read(10) == b"ab"
        with pytest.raises(aiohttp.ClientPayloadError):  # the connection is lost by now
            await response.read(10)
        response.release()
        assert pieces_client.idle() == 0 and pieces_client.busy() == 0


async def test_a_head_or_body_that_never_comes_fails_after_the_stall_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /body"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        await asyncio.sleep(30)

    async with raw_server(silent) as base, client(stall_timeout=0.2) as pieces_client:
        async with asyncio.timeout(10):  # a plain TimeoutError: the watchdog did nothing
            with pytest.raises(UpstreamStalled):
                await pieces_client.get(base + "/head", HEADERS)
            response = await pieces_client.get(base + "/body", HEADERS)
            assert await response.read(10) == b"ab"
            with pytest.raises(UpstreamStalled):
                await response.read(10)
        response.release()
        assert pieces_client.busy() == 0


async def test_the_upstream_is_not_blamed_while_the_relay_is_not_reading() -> None:
    # The relay is busy sending to a slow client for several stall periods, and the
    # upstream has sent all it has for now; reading later must still work.
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await asyncio.sleep(0.5)
        writer.write(b"cd")
        await asyncio.sleep(30)

    async with raw_server(slow) as base, client(stall_timeout=0.1) as pieces_client:
        response = await pieces_client.get(base + "/", HEADERS)
        await asyncio.sleep(0.6)  # six periods without a read
        assert await body_of(response) == b"abcd"
        response.release()
        assert pieces_client.idle() == 1


async def test_a_kept_alive_connection_closed_under_a_request_is_replaced() -> None:
    # The race of every keep-alive client: the server drops an idle connection just as
    # a request is sent on it. The request was never read, so it is sent anew.
    connections = 0

    async def once_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request: dropped unanswered
        writer.close()

    async with raw_server(once_per_connection) as base, client() as pieces_client:
        for _ in range(3):
            response = await pieces_client.get(base + "/", HEADERS)
            assert await body_of(response) == b"ok"
            response.release()
        assert connections == 3


async def test_connection_close_and_idle_timeout_leave_nothing_in_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def closing(request: web.Request) -> web.Response:
        return web.Response(body=b"x", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/closing", closing)
    app.router.add_get("/kept", fixed(b"y"))
    monkeypatch.setattr(pieces, "IDLE_TIMEOUT", 0.1)
    async with serving(app) as base, client() as pieces_client:
        response = await pieces_client.get(base + "/closing", HEADERS)
        assert await body_of(response) == b"x"
        response.release()
        assert pieces_client.idle() == 0
        response = await pieces_client.get(base + "/kept", HEADERS)
        assert await body_of(response) == b"y"
        response.release()
        assert pieces_client.idle() == 1
        await asyncio.sleep(0.4)  # the sweeper runs every half period
        assert pieces_client.idle() == 0


async def test_redirects_are_followed_and_each_hop_is_checked() -> None:
    hops = 0

    async def redirect(request: web.Request) -> web.Response:
        nonlocal hops
        hops += 1
        target = request.query.get("to", "")
        raise web.HTTPFound(target or f"/redirect?n={hops}")

    app = web.Application()
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/file", fixed(b"end"))
    async with serving(app) as base, serving(app) as other:
        async with client() as pieces_client:
            response = await pieces_client.get(base + "/redirect?to=/file", HEADERS)
            assert (response.status, await body_of(response)) == (200, b"end")
            response.release()
            with pytest.raises(TooManyRedirects):
                await pieces_client.get(base + "/redirect", HEADERS)
        port = int(base.rsplit(":", 1)[1])
        guarded = AddressPolicy(allow_private=False, exempt=[("127.0.0.1", port)])
        async with client(guarded) as pieces_client:
            response = await pieces_client.get(base + "/file", HEADERS)  # exempt: allowed
            response.close()
            with pytest.raises(ForbiddenAddress):
                await pieces_client.get(f"{base}/redirect?to={other}/file", HEADERS)


async def test_private_addresses_are_refused_before_connecting() -> None:
    accepted = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    async with raw_server(count) as base, client(AddressPolicy(allow_private=False)) as c:
        port = base.rsplit(":", 1)[1]
        for url in (base + "/", f"http://localhost:{port}/", f"http://[::ffff:127.0.0.1]:{port}/"):
            with pytest.raises(ForbiddenAddress):
                await c.get(url, HEADERS)
    assert accepted == 0


async def test_a_format_whose_headers_hold_a_line_break_is_a_502_and_nothing_is_sent() -> None:
    accepted = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1

    fmt = {"format_id": "18", "url": "", "http_headers": {"User-Agent": "x\r\nX-Evil: 1"}}
    async with raw_server(count) as base, client() as pieces_client:
        fmt["url"] = base + "/video.mp4"
        async with aiohttp.ClientSession() as session:
            upstream = Upstream(
                session,
                Metrics(),
                cast(Sources, None),
                "https://x/watch",
                fmt,
                pieces=pieces_client,
            )
            with pytest.raises(UpstreamError) as raised:
                await upstream.get_piece((0, 99))
    assert raised.value.status == 502 and accepted == 0


def test_a_header_holding_a_line_break_is_refused() -> None:
    for headers in ({"X-A": "1\r\nX-B: 2"}, {"X-A\n": "1"}, {"X-A": "1\n"}):
        with pytest.raises(ValueError, match="line break"):
            RequestHeaders(headers)
    block = RequestHeaders({"Host": "elsewhere", "X-A": "1"}).block
    assert block == b"X-A: 1\r\n"  # the Host header is the client's to write


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` (and its key), made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_verified_and_kept_alive(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    peers: list[object] = []
    runner = web.AppRunner(ranged_app(peers), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_side)
    await site.start()
    url = f"https://localhost:{runner.addresses[0][1]}/file"
    try:
        # The default context does not trust a self-signed certificate.
        async with client() as untrusting:
            with pytest.raises(aiohttp.ClientConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(url, HEADERS, (0, 99))
        trusting = ssl.create_default_context(cafile=str(cert))
        async with client(tls=trusting) as pieces_client:
            for first in (0, 50_000):
                response = await pieces_client.get(url, HEADERS, (first, first + 49_999))
                assert await body_of(response) == DATA[first : first + 50_000]
                response.release()
        assert len(peers) == 2 and len(set(peers)) == 1
    finally:
        await runner.cleanup()
