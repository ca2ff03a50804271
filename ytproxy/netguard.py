"""The address policy, enforced where connections are made: no private address, ever.

Checking a submitted URL (`urlguard`) is not enough: redirects, media URLs embedded in
a page, and DNS answers that change between the check and the connection (rebinding)
all lead elsewhere. So every outbound connection the gateway makes for a URL that came
from outside — a user, a page, yt-dlp — is checked here, *after* the name is resolved
and for the very addresses that will be connected to:

- `AddressPolicy` says whether an address may be connected to: only globally routable
  unicast addresses (`is_public`: not loopback, RFC 1918, link-local and
  the metadata service, CGNAT, ULA, multicast, unspecified, reserved, nor their
  IPv4-mapped, 6to4 or NAT64 forms), plus `TRUSTED_NETWORKS`, plus the hosts the
  operator configured (`GLOBAL_PROXY`, `POT_PROVIDER_URL`), which are often private.
- `GuardedConnector` (aiohttp) is the connector of the app's one `ClientSession`, used
  by the download relay, fragments, the image relay and the live relay. It checks the
  addresses aiohttp resolved before it connects to them (names and literals alike), and
  each redirect hop is a new connection, so it is checked again; a trace on the
  session (`redirect_limit`) allows at most `MAX_REDIRECTS` hops per request.
- yt-dlp's network access is guarded by `ytproxy.ytdl_network` with the same policy.

Through `GLOBAL_PROXY` the proxy resolves names and connects, so the connection cannot
be checked here. What is checked instead, before anything is sent to the proxy: a
literal private address is refused, and so is a name that resolves *locally* to one.
A name that resolves to a public address here and to a private one on the proxy's side
(split-horizon DNS, or rebinding timed between the two lookups) is not caught: the
proxy's own egress rules are the defence there, as DEPLOYMENT.md says.

With `ALLOW_PRIVATE_NETWORKS` the policy allows everything and nothing is checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import ResolveResult

from .errors import Forbidden
from .upstream import DNS_TTL, KEEPALIVE_TIMEOUT

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

    from .settings import Settings

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Redirect hops the gateway follows for one request (each hop is checked).
MAX_REDIRECTS = 5
_LOCAL_RESOLVE_TIMEOUT = 5.0


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is None and address in _NAT64:
            # 64:ff9b::a.b.c.d reaches a.b.c.d through a NAT64 gateway.
            mapped = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if mapped is not None:
            return is_public(mapped)
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return False
    # is_global is False for loopback, RFC 1918, link-local (metadata), CGNAT, ULA,
    # documentation and benchmarking ranges.
    return address.is_global


class ForbiddenAddress(Forbidden):
    """A connection would have reached a private or local address.

    Not an `OSError` or an aiohttp `ClientError` on purpose: the relays retry those as
    network trouble, and this must end the request at once with a 403.
    """

    default_code = "forbidden_address"

    def __init__(self, host: str) -> None:
        # The host is not named: it may be an internal name the client should not learn.
        super().__init__(
            "The address is on a private or local network, which the gateway does not fetch from",
            code="forbidden_address",
        )
        self.host = host


class AddressPolicy:
    """Which peers the gateway may connect to on behalf of outside input."""

    def __init__(
        self,
        *,
        allow_private: bool,
        trusted: Iterable[IPNetwork] = (),
        exempt: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.allow_private = allow_private
        self.trusted = tuple(trusted)
        # (host, port) pairs the operator configured: the proxy, the PO-token provider.
        self.exempt = frozenset((host.lower(), port) for host, port in exempt)

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        exempt = [
            hostport
            for url in (settings.global_proxy, settings.pot_provider_url)
            if url and (hostport := _host_port(url)) is not None
        ]
        return cls(
            allow_private=settings.allow_private_networks,
            trusted=settings.trusted_networks,
            exempt=exempt,
        )

    def is_exempt(self, host: str, port: int | None) -> bool:
        return (host.lower().strip("[]"), port or 0) in self.exempt

    def permits(self, address: IPAddress) -> bool:
        if self.allow_private or is_public(address):
            return True
        plain = _unmapped(address)
        return any(plain in network for network in self.trusted)

    def check_address(self, host: str, address: str) -> None:
        """Raise `ForbiddenAddress` unless `address` (what `host` resolved to) is allowed."""
        if self.allow_private:
            return
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise ForbiddenAddress(host) from None
        if not self.permits(parsed):
            log.warning("refused a connection to a non-public address (host %s)", host)
            raise ForbiddenAddress(host)

    async def check_before_proxy(self, host: str) -> None:
        """The check for a name a proxy will resolve: literals, and local answers."""
        if self.allow_private:
            return
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            self.check_address(host, host)
            return
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), _LOCAL_RESOLVE_TIMEOUT
            )
        except (OSError, TimeoutError, UnicodeError):
            return  # known only on the proxy's side: its egress rules decide
        for *_, sockaddr in infos:
            self.check_address(host, str(sockaddr[0]))


class _GuardMixin:
    """The check, for `TCPConnector` and its subclasses (aiohttp-socks' connector)."""

    _policy: AddressPolicy
    _proxied_by_connector: bool

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        results: list[ResolveResult] = await super()._resolve_host(  # type: ignore[misc]
            host, port, traces=traces
        )
        policy = self._policy
        if policy.allow_private or policy.is_exempt(host, port):
            return results
        if self._proxied_by_connector:
            # A SOCKS connector with remote DNS returns the name unresolved.
            await policy.check_before_proxy(host)
            return results
        for result in results:
            policy.check_address(host, result["host"])
        return results

    async def _create_connection(
        self, req: aiohttp.ClientRequest, *args: Any, **kwargs: Any
    ) -> Any:
        if req.proxy is not None and req.url.raw_host:
            # An HTTP proxy: aiohttp resolves only the proxy's name (exempt above).
            await self._policy.check_before_proxy(req.url.raw_host)
        return await super()._create_connection(req, *args, **kwargs)  # type: ignore[misc]


class GuardedConnector(_GuardMixin, aiohttp.TCPConnector):
    def __init__(self, policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy
        self._proxied_by_connector = False


def guarded_connector(settings: Settings, policy: AddressPolicy) -> aiohttp.BaseConnector:
    """The connector of the app's session: direct, or through a SOCKS `GLOBAL_PROXY`."""
    proxy = settings.global_proxy
    if proxy and proxy.startswith("socks"):
        from aiohttp_socks import ProxyConnector

        class GuardedProxyConnector(_GuardMixin, ProxyConnector):
            _policy = policy
            _proxied_by_connector = True

        return GuardedProxyConnector.from_url(proxy, limit=0, rdns=True)
    return GuardedConnector(
        policy, limit=0, ttl_dns_cache=DNS_TTL, keepalive_timeout=KEEPALIVE_TIMEOUT
    )


def redirect_limit(limit: int = MAX_REDIRECTS) -> aiohttp.TraceConfig:
    """Caps the redirect hops of every request of a session (aiohttp's own default is
    10, settable only per call). Each hop is a new connection, checked by the connector.
    Only redirects are listened to: a receiver on every request's start showed in the
    profile of small downloads."""

    async def on_redirect(
        _session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestRedirectParams
    ) -> None:
        ctx.hops = getattr(ctx, "hops", 0) + 1
        if ctx.hops > limit:
            raise TooManyRedirects()

    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(on_redirect)
    return trace


class TooManyRedirects(Forbidden):
    default_code = "too_many_redirects"

    def __init__(self) -> None:
        super().__init__(
            f"The upstream redirected more than {MAX_REDIRECTS} times", code="too_many_redirects"
        )


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    default = {"https": 443, "http": 80}.get(parts.scheme, 1080)
    try:
        return parts.hostname.lower(), parts.port or default
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
