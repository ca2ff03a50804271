"""Unit tests of the URL guard's address rules (the HTTP contract is in test_error_contract)."""

from __future__ import annotations

import ipaddress

import pytest

from ytproxy.errors import BadRequest, Forbidden
from ytproxy.netguard import AddressPolicy, is_public
from ytproxy.urlguard import MAX_URL_LENGTH, check_url, parse_http_url

STRICT = AddressPolicy(allow_private=False)
LENIENT = AddressPolicy(allow_private=True)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("142.250.74.110", True),
        ("2a00:1450:4001:82b::200e", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.0.10", False),
        ("169.254.169.254", False),
        ("100.100.100.200", False),
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("224.0.0.251", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:0a00:0001::1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_parse_http_url_returns_the_lower_case_host() -> None:
    assert parse_http_url("  HTTPS://WWW.YouTube.com/watch?v=x ") == "www.youtube.com"
    assert parse_http_url("http://[::1]:8080/") == "::1"


@pytest.mark.parametrize(
    "url",
    ["", "youtube.com/watch?v=x", "mailto:a@b.c", "http:///path", "http://a\tb/", "http://a/\x00"],
)
def test_parse_http_url_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_http_url(url)
    assert caught.value.code == "invalid_url"


def test_length_limit_is_inclusive() -> None:
    base = "https://example.com/"
    assert parse_http_url(base + "a" * (MAX_URL_LENGTH - len(base))) == "example.com"
    with pytest.raises(BadRequest) as caught:
        parse_http_url(base + "a" * (MAX_URL_LENGTH - len(base) + 1))
    assert caught.value.code == "url_too_long"


async def test_private_addresses_pass_only_when_allowed() -> None:
    assert await check_url(" http://127.0.0.1:9/x ", policy=LENIENT) == "http://127.0.0.1:9/x"
    with pytest.raises(Forbidden) as caught:
        await check_url("http://127.0.0.1:9/x", policy=STRICT)
    assert (caught.value.code, caught.value.status_code) == ("forbidden_address", 403)


async def test_an_unresolvable_host_is_left_to_the_proxy_when_there_is_one() -> None:
    url = "https://no-such-host.invalid/v"
    assert await check_url(url, policy=STRICT, proxied=True) == url
    with pytest.raises(BadRequest) as caught:
        await check_url(url, policy=STRICT)
    assert caught.value.code == "unresolvable_host"
