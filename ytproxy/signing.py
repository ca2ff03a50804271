"""Opaque, signed, time-bounded tokens for every URL the gateway relays.

A token carries a small JSON payload (for example the upstream segment URL and the
channel it belongs to) that only this gateway can read and that nobody can forge:
the payload is compressed, encrypted with AES-CTR and signed with HMAC-SHA256, both
keys derived from `SECRET_KEY`. Each token names its purpose, so a segment token is
not accepted as a download token, and carries an expiry.

Encrypting is what keeps upstream URLs (and the IP they are bound to) away from
clients; signing is what keeps the gateway from being an open proxy.

This module does not decide lifetimes or what goes into a payload; its callers do.
Tokens are not revocable before they expire: rotate `SECRET_KEY` to invalidate all.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import time
import zlib
from typing import Any

from Cryptodome.Cipher import AES

from .errors import Forbidden

_VERSION = b"\x01"
_NONCE = 8
_MAC = 16
# Tokens opened recently, by their exact text: a player or a download client sends the
# same token again and again, and decrypting it (AES through ctypes, zlib, JSON) was a
# tenth of a small download's cost. Only a token whose MAC checked gets in.
_OPENED_MAX = 4096


class Signer:
    def __init__(self, secret_key: str) -> None:
        root = hashlib.sha256(secret_key.encode()).digest()
        self._enc_key = hmac.new(root, b"ytproxy-token-encryption", hashlib.sha256).digest()
        self._mac_key = hmac.new(root, b"ytproxy-token-signature", hashlib.sha256).digest()
        # A per-signer LRU of opened tokens; a token that fails raises and is not kept.
        self._opened = functools.lru_cache(maxsize=_OPENED_MAX)(self._decrypt)

    def seal(
        self, purpose: str, payload: dict[str, Any], ttl: float, *, expires: int | None = None
    ) -> str:
        """A URL-safe token for `payload`, valid for `ttl` seconds, for `purpose` only.

        With `expires` (a Unix time, used instead of `ttl`) the token is deterministic:
        the same payload and expiry give the same token, so browsers can cache what it
        names. It reveals only that two such tokens name the same thing.
        """
        deterministic = expires is not None
        expiry = expires if expires is not None else int(time.time() + ttl)
        body = {"p": purpose, "e": expiry, "d": payload}
        plain = zlib.compress(json.dumps(body, separators=(",", ":"), sort_keys=True).encode(), 9)
        if deterministic:
            nonce = hmac.new(self._enc_key, plain, hashlib.sha256).digest()[:_NONCE]
        else:
            nonce = os.urandom(_NONCE)
        cipher = AES.new(self._enc_key, AES.MODE_CTR, nonce=nonce)
        sealed = _VERSION + nonce + cipher.encrypt(plain)
        mac = hmac.new(self._mac_key, sealed, hashlib.sha256).digest()[:_MAC]
        return base64.urlsafe_b64encode(sealed + mac).rstrip(b"=").decode()

    def open(self, purpose: str, token: str) -> dict[str, Any]:
        """The payload of a valid token; `Forbidden` (invalid_token/token_expired) otherwise."""
        found_purpose, expiry, data = self._opened(token)
        if found_purpose != purpose:
            raise _invalid()
        if expiry < time.time():
            raise Forbidden(
                "This link has expired; reload the page or playlist", code="token_expired"
            )
        return dict(data)  # callers may change their copy

    def _decrypt(self, token: str) -> tuple[str, float, dict[str, Any]]:
        """(purpose, expiry, payload) of a token whose MAC checks; raises otherwise."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise _invalid() from None
        if len(raw) < 1 + _NONCE + _MAC or raw[:1] != _VERSION:
            raise _invalid()
        sealed, mac = raw[:-_MAC], raw[-_MAC:]
        expected = hmac.new(self._mac_key, sealed, hashlib.sha256).digest()[:_MAC]
        if not hmac.compare_digest(mac, expected):
            raise _invalid()
        cipher = AES.new(self._enc_key, AES.MODE_CTR, nonce=sealed[1 : 1 + _NONCE])
        try:
            body = json.loads(zlib.decompress(cipher.decrypt(sealed[1 + _NONCE :])))
        except (zlib.error, ValueError):
            raise _invalid() from None
        if not isinstance(body, dict) or not isinstance(body.get("d", {}), dict):
            raise _invalid()
        return str(body.get("p")), float(body.get("e", 0)), body.get("d", {})

    def digest(self, value: str) -> str:
        """A stable keyed hash (hex), for cookies and cache keys that must not reveal `value`."""
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()


def _invalid() -> Forbidden:
    return Forbidden("This link is not valid", code="invalid_token")
