"""yt-dlp's network access, held to the gateway's address policy.

yt-dlp reads pages, follows redirects and probes media URLs while it extracts; the
generic extractor would read an internal page and show its title. So when private
networks are not allowed, each call's `YoutubeDL` is `guarded_youtubedl(policy)`: a
subclass whose request director holds exactly one request handler, a subclass of
yt-dlp's own `requests` handler, and nothing else (no urllib, curl_cffi or websockets
handler that could take a request around it).

The seam is yt-dlp's `YoutubeDL.build_request_director(handlers, ...)`, the place
where a `YoutubeDL` decides which handlers it has. Inside the handler, the check is
made where a connection is made: the urllib3 connection classes of its direct pool
resolve the host, check every address, and connect to the checked address itself
(so a second DNS answer cannot differ: rebinding is covered), and every redirect hop
opens or reuses such a connection.
When yt-dlp goes through `GLOBAL_PROXY`, the proxy connects, and each request — every
redirect hop included — is checked before it is sent, as `netguard` describes.

What it does not do: guard ffmpeg or other programs yt-dlp might start (extraction
starts none; the JS runtime gets no network access from yt-dlp's calls).
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.structures
import urllib3
import urllib3.connection
import yt_dlp
from yt_dlp.networking._requests import (
    RequestsHTTPAdapter,
    RequestsRH,
    RequestsSession,
)
from yt_dlp.networking.exceptions import TransportError
from yt_dlp.utils.networking import select_proxy

from .netguard import AddressPolicy, ForbiddenAddress

# Words `extractor.classify` recognises to give the failure its stable code.
BLOCKED_MESSAGE = "forbidden_address: the address is on a private or local network"


class BlockedAddress(TransportError):  # type: ignore[misc]
    """yt-dlp's own error type, so its extractors report it like any network failure."""

    def __init__(self) -> None:
        super().__init__(BLOCKED_MESSAGE)


@functools.cache
def guarded_youtubedl(policy: AddressPolicy) -> type[yt_dlp.YoutubeDL]:
    """A `YoutubeDL` subclass whose every request obeys `policy` (one class per policy)."""
    handler = _guarded_handler(policy)

    class GuardedYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]
        def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
            return super().build_request_director([handler], preferences)

    return GuardedYoutubeDL


def _guarded_handler(policy: AddressPolicy) -> type[RequestsRH]:
    http_pool, https_pool = _guarded_pools(policy)

    class GuardedAdapter(RequestsHTTPAdapter):  # type: ignore[misc]
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    class GuardedSession(RequestsSession):  # type: ignore[misc]
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            # Called for the first request and for every redirect hop.
            if select_proxy(request.url, kwargs.get("proxies") or self.proxies):
                _check_before_proxy(policy, urlsplit(str(request.url)).hostname or "")
            return super().send(request, **kwargs)

    class YtproxyGuardRH(RequestsRH):  # type: ignore[misc]
        def _create_instance(self, cookiejar: Any, legacy_ssl_support: Any = None) -> Any:
            # yt-dlp's own `_create_instance`, with the guarded session and adapter.
            session = GuardedSession()
            adapter = GuardedAdapter(
                ssl_context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support),
                source_address=self.source_address,
                max_retries=urllib3.util.retry.Retry(False),
            )
            session.adapters.clear()
            session.headers = requests.structures.CaseInsensitiveDict()
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.cookies = cookiejar
            session.trust_env = False
            return session

    return YtproxyGuardRH


def _guarded_pools(
    policy: AddressPolicy,
) -> tuple[type[urllib3.HTTPConnectionPool], type[urllib3.HTTPSConnectionPool]]:
    def connect(connection: Any, new_conn: Callable[[], socket.socket]) -> socket.socket:
        """Resolve, check every answer, and connect to the checked address itself, so a
        second lookup cannot answer differently (rebinding); no packet reaches a refused
        address."""
        host = str(connection._dns_host)
        if policy.allow_private or policy.is_exempt(host.rstrip("."), connection.port):
            return new_conn()
        try:
            infos = socket.getaddrinfo(host, connection.port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return new_conn()  # urllib3 reports the failed lookup in its own words
        addresses = [str(sockaddr[0]) for *_, sockaddr in infos]
        try:
            for address in addresses:
                policy.check_address(host, address)
        except ForbiddenAddress:
            raise BlockedAddress() from None
        connection._dns_host = addresses[0]
        try:
            return new_conn()
        finally:
            connection._dns_host = host

    class GuardedHTTPConnection(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return connect(self, super()._new_conn)

    class GuardedHTTPSConnection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return connect(self, super()._new_conn)

    class GuardedHTTPPool(urllib3.HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return GuardedHTTPPool, GuardedHTTPSPool


def _check_before_proxy(policy: AddressPolicy, host: str) -> None:
    """`AddressPolicy.check_before_proxy`, for yt-dlp's threads (blocking is fine here)."""
    if policy.allow_private or not host:
        return
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return  # known only on the proxy's side
    for *_, sockaddr in infos:
        try:
            policy.check_address(host, str(sockaddr[0]))
        except ForbiddenAddress:
            raise BlockedAddress() from None
