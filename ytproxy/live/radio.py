"""Radio entries: a channel's audio alone, for `audio_only` channels and `radio` entries.

`/live/{id}/audio.m3u8` is a media playlist of the channel's audio. `audio_source`
chooses what it relays:

- a live with separate audio (a demuxed live: the master has `EXT-X-MEDIA:TYPE=AUDIO`,
  or an audio-only stream) relays that rendition's media playlist as it is, with the
  ordinary segment links: fan-out, failover and refresh are the video's;
- a muxed live relays its lowest-bandwidth variant (the audio is the same in every
  variant, and the video bytes are fetched upstream but never sent on), each segment
  pointing at `/live/{id}/a/{token}.ts`, whose `AudioSegments` takes the relayed
  segment (the shared fetch) and keeps its audio with `Remuxer.audio` (stream copy):
  once per segment for every listener, the result kept in the relay's segment buffer
  (bounded in bytes, LRU, in memory only) next to the segments it came from.

It assumes clear MPEG-TS segments, as YouTube's HLS lives have: a muxed stream of
encrypted or fMP4 segments cannot have its audio taken (ffmpeg fails, a 502). It does
not build the playlist's text or the slate (`service.py`, `program.py`).
"""

from __future__ import annotations

from typing import Any

from ..errors import ServiceUnavailable
from . import playlist
from .channels import Channel
from .fanout import Fetch
from .relay import LiveRelay, buffer_key
from .remux import Remuxer
from .resolver import Resolution

_AUDIO_CODECS = ("mp4a", "opus", "ac-3", "ec-3", "flac", "mp3")


def audio_source(resolution: Resolution, offered: list[str]) -> tuple[str, bool]:
    """`(key, direct)`: the media playlist the channel's audio comes from, and whether
    it is audio already (relayed as is) or muxed (its audio taken per segment).

    `offered` are the variant keys the channel's quality cap leaves.
    """
    keys = {url: key for key, url in resolution.variants.items()}
    found = playlist.uris(resolution.master, resolution.base_url)
    renditions = [
        uri
        for uri in found
        if uri.tag == "EXT-X-MEDIA" and uri.attributes.get("TYPE") == "AUDIO" and uri.url in keys
    ]
    if renditions:
        chosen = next((u for u in renditions if u.attributes.get("DEFAULT") == "YES"), None)
        return keys[(chosen or renditions[0]).url], True
    variants = [
        uri for uri in found if uri.tag == "EXT-X-STREAM-INF" and keys.get(uri.url) in offered
    ]
    if not variants:
        raise ServiceUnavailable("The channel has no playable stream", code="channel_offline")
    audio = [uri for uri in variants if _is_audio(uri.attributes)]
    lowest = min(audio or variants, key=lambda uri: resolution.bandwidths.get(keys[uri.url], 0))
    return keys[lowest.url], bool(audio)


def _is_audio(attributes: dict[str, str]) -> bool:
    """A variant whose CODECS are all audio codecs (an audio-only stream)."""
    codecs = [c.strip().lower() for c in attributes.get("CODECS", "").split(",") if c.strip()]
    return bool(codecs) and all(c.startswith(_AUDIO_CODECS) for c in codecs)


class AudioSegments:
    """The audio of muxed live segments, taken once per segment for every listener."""

    def __init__(self, relay: LiveRelay, remuxer: Remuxer) -> None:
        self._relay = relay
        self._remuxer = remuxer

    def segment(self, channel: Channel, payload: dict[str, Any]) -> Fetch:
        """The shared fetch of the audio of the segment `payload` names (a media token's)."""
        key = "audio|" + buffer_key(payload)
        fetch, _ = self._relay.buffer.get(key, lambda f: self._extract(f, channel, payload))
        return fetch

    async def _extract(self, fetch: Fetch, channel: Channel, payload: dict[str, Any]) -> None:
        source = self._relay.media(channel, payload)
        audio = await self._remuxer.audio(await source.body())
        fetch.start("video/mp2t", len(audio))
        fetch.feed(audio)
