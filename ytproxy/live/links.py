"""The gateway's live URLs: the stable channel URL and the signed variant and media ones.

Every URL a player gets is absolute (from `PUBLIC_BASE_URL`, else the request) and
carries `?token=<ACCESS_TOKEN>` when one is set, because players fetch segments with
no cookies or headers, and relative URIs would lose the query string.

- `/live/{id}.m3u8`: stable, never expires; what the M3U lists.
- `/live/{id}/audio.m3u8`: stable, never expires; the channel's audio alone (the M3U's
  radio entries, `radio.py`).
- `/live/{id}/program.m3u8`, `/live/{id}/slate/{n}.ts`: the program a player gets
  while the channel is not live (`program.py`); stable, unsigned, naming no upstream.
- `/live/{id}/p/{token}.m3u8`: a media playlist. The token names the channel and a
  variant key (plus a bandwidth hint), never an upstream URL, so it stays valid
  across re-resolutions; it is long-lived because players poll one for hours.
- `/live/{id}/s/{token}.{ext}`: a segment, key, map or part. The token carries the
  upstream URL (encrypted), the stream, variant and media sequence number, and
  expires one to one and a half `MEDIA_TOKEN_TTL` later; it is deterministic, so
  instances sharing `SECRET_KEY` give a segment the same link. The extension is the
  upstream one (`ts`, `m4s`, `key`, ...) because some players choose a demuxer by it.
- `/live/{id}/a/{token}.ts`: the audio of a muxed segment (the same token as `/s/`).
- `/live/{id}/m/{token}.ts`: a demuxed live's video segment muxed with its audio (the
  program behind the slate, `demuxed.py`): a video segment's token naming the audio too.

This module seals and opens tokens (through `signing.Signer`); it fetches nothing.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import Forbidden
from ..signing import Signer

VARIANT_PURPOSE = "live-variant"
MEDIA_PURPOSE = "live-media"
VARIANT_TOKEN_TTL = 30 * 86400
MEDIA_TOKEN_TTL = 3600
_EXT = re.compile(r"\.([A-Za-z0-9]{1,5})$")
_DEFAULT_EXT = {"segment": "ts", "part": "ts", "key": "key", "map": "mp4"}


@dataclasses.dataclass(frozen=True)
class Links:
    signer: Signer
    base_url: str  # no trailing slash
    access_token: str | None

    def url(self, path: str) -> str:
        query = f"?{urlencode({'token': self.access_token})}" if self.access_token else ""
        return f"{self.base_url}{path}{query}"

    def master(self, channel_id: str) -> str:
        return self.url(f"/live/{channel_id}.m3u8")

    def audio(self, channel_id: str) -> str:
        """The channel's audio alone: a media playlist (radio entries)."""
        return self.url(f"/live/{channel_id}/audio.m3u8")

    def program(self, channel_id: str) -> str:
        """The media playlist of a channel that is not live: the slate, then the live."""
        return self.url(f"/live/{channel_id}/program.m3u8")

    def slate(self, channel_id: str, sequence: int) -> str:
        return self.url(f"/live/{channel_id}/slate/{sequence}.ts")

    def variant(self, channel_id: str, key: str, bandwidth: int) -> str:
        token = self.signer.seal(
            VARIANT_PURPOSE, {"c": channel_id, "v": key, "b": bandwidth}, VARIANT_TOKEN_TTL
        )
        return self.url(f"/live/{channel_id}/p/{token}.m3u8")

    def media(self, channel_id: str, payload: dict[str, Any], upstream_url: str) -> str:
        kind = str(payload.get("k", "segment"))
        token = self._media_token(channel_id, payload)
        return self.url(f"/live/{channel_id}/s/{token}.{media_extension(upstream_url, kind)}")

    def audio_segment(self, channel_id: str, payload: dict[str, Any]) -> str:
        """The audio of the muxed segment `payload` names, as an MPEG-TS segment."""
        return self.url(f"/live/{channel_id}/a/{self._media_token(channel_id, payload)}.ts")

    def muxed_segment(self, channel_id: str, payload: dict[str, Any]) -> str:
        """The video segment `payload` names muxed with its audio (`payload["a"]`)."""
        return self.url(f"/live/{channel_id}/m/{self._media_token(channel_id, payload)}.ts")

    def _media_token(self, channel_id: str, payload: dict[str, Any]) -> str:
        # Deterministic, with an expiry rounded to a window: every instance sharing
        # SECRET_KEY and the resolution gives a segment the same link, so a player whose
        # playlist refreshes land on different replicas sees no change (hls.js stops on one).
        window = MEDIA_TOKEN_TTL // 2
        expires = (int(time.time()) // window + 3) * window
        return self.signer.seal(MEDIA_PURPOSE, {**payload, "c": channel_id}, 0, expires=expires)


def media_extension(upstream_url: str, kind: str) -> str:
    path = urlsplit(upstream_url).path
    match = _EXT.search(path.rsplit("/", 1)[-1])
    return match.group(1).lower() if match else _DEFAULT_EXT.get(kind, "ts")


def open_variant(signer: Signer, channel_id: str, token: str) -> dict[str, Any]:
    payload = signer.open(VARIANT_PURPOSE, token)
    _same_channel(payload, channel_id)
    return payload


def open_media(signer: Signer, channel_id: str, token: str) -> dict[str, Any]:
    payload = signer.open(MEDIA_PURPOSE, token)
    _same_channel(payload, channel_id)
    return payload


def _same_channel(payload: dict[str, Any], channel_id: str) -> None:
    if payload.get("c") != channel_id:
        raise Forbidden("This link is not valid", code="invalid_token")
