"""The rules a URL must pass before the gateway asks yt-dlp to fetch it.

`check_url(url, policy=..., proxied=...)` returns the URL, stripped, or raises:

- `BadRequest invalid_url`: not a string, not http(s) (so no `file:`, `javascript:`,
  `data:`, `ftp:`), no host, whitespace or control characters inside, a bad port;
- `BadRequest url_too_long`: longer than `MAX_URL_LENGTH` characters;
- `BadRequest unresolvable_host`: the host name does not resolve (unless a proxy is
  configured: then the proxy resolves names and the gateway may not be able to);
- `Forbidden forbidden_address`: the host is, or resolves to, an address that is not
  globally routable: loopback, private (RFC 1918, unique-local IPv6), link-local
  (which includes the 169.254.169.254 cloud metadata service), carrier-grade NAT,
  multicast, reserved or unspecified, in IPv4, IPv6 or IPv4-mapped IPv6 form. Every
  address the name resolves to is checked, not just the first.

With `ALLOW_PRIVATE_NETWORKS` the address rules are skipped (the tests need this: their
origin runs on 127.0.0.1), and `TRUSTED_NETWORKS` are allowed; the scheme and length
rules still apply.

This is a check at submission time, so that a bad URL gets a clear answer at once. It
is not what keeps the gateway out of private networks: redirects, URLs embedded in
pages and DNS rebinding all get past a check of the submitted URL. `netguard` does
that, at connect time, for every connection made on behalf of outside input.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from .errors import BadRequest, Forbidden
from .netguard import AddressPolicy, IPAddress

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 5.0


async def check_url(url: object, *, policy: AddressPolicy, proxied: bool = False) -> str:
    """Validate a submitted URL; see the module docstring for the rules."""
    host = parse_http_url(url)
    assert isinstance(url, str)
    if not policy.allow_private:
        for address in await resolve(host, proxied=proxied):
            if not policy.permits(address):
                raise Forbidden(
                    "This address is on a private or local network, which the gateway "
                    "does not fetch from",
                    code="forbidden_address",
                )
    return url.strip()


def parse_http_url(url: object) -> str:
    """The host of an http(s) URL, lower-cased; raises BadRequest for anything else."""
    if not isinstance(url, str):
        raise BadRequest("`url` must be a string", code="invalid_url")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise BadRequest(f"The URL is longer than {MAX_URL_LENGTH} characters", code="url_too_long")
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise BadRequest("This is not a valid URL", code="invalid_url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise BadRequest("This is not a valid URL", code="invalid_url") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise BadRequest("Only http:// and https:// URLs can be analysed", code="invalid_url")
    if not parts.hostname:
        raise BadRequest("The URL has no host name", code="invalid_url")
    return parts.hostname.lower()


async def resolve(host: str, *, proxied: bool = False) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is returned as it is)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        if proxied:
            # The proxy resolves names itself; this host may exist only on its side.
            log.debug("cannot resolve %s locally (%s); leaving it to the proxy", host, exc)
            return []
        raise BadRequest("The URL's host name does not resolve", code="unresolvable_host") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Scoped IPv6 addresses come back as "fe80::1%eth0".
        address = _literal(str(sockaddr[0]).split("%", 1)[0])
        if address is not None:
            addresses.append(address)
    return addresses


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    literal = _literal(host)
    return literal is not None and literal.is_loopback


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
