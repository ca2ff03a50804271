"""A demuxed live as one stream: its video and audio segments muxed per segment.

A demuxed live (video-only variants and an audio rendition, googlevideo numbering every
itag's segments alike) cannot be carried in a single media playlist, which is what the
program behind the slate (`program.py`) is. `MuxedSegments` makes the segments of such
a playlist: for a video segment it finds the audio rendition's segment of the same
media sequence (in the relayed audio playlist, waiting a moment when the audio
playlist has not listed it yet), takes both through the relay (the shared fetches the
master's viewers use too), and muxes them with `Remuxer.mux` (stream copy): once per
segment for every viewer, the result kept in the relay's segment buffer (bounded in
bytes, LRU, in memory only).

`video_keys` names the video variants of a demuxed resolution. It does not choose a
variant (`service.py`) nor write playlists.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import NotFound
from . import playlist
from .channels import Channel
from .fanout import Fetch
from .relay import LiveRelay, buffer_key, media_payload
from .remux import Remuxer
from .resolver import Resolution

# Looks at the audio playlist for a segment the video playlist already lists.
_AUDIO_LOOKS = 4


def video_keys(resolution: Resolution, offered: list[str]) -> list[str]:
    """The offered keys of the master's variants (`EXT-X-STREAM-INF`), not renditions."""
    keys = {url: key for key, url in resolution.variants.items()}
    found = [
        keys.get(uri.url)
        for uri in playlist.uris(resolution.master, resolution.base_url)
        if uri.tag == "EXT-X-STREAM-INF"
    ]
    return [key for key in found if key is not None and key in offered]


class MuxedSegments:
    """Video and audio segments of the same sequence, muxed once for every viewer."""

    def __init__(self, relay: LiveRelay, remuxer: Remuxer) -> None:
        self._relay = relay
        self._remuxer = remuxer

    def segment(self, channel: Channel, payload: dict[str, Any]) -> Fetch:
        """The shared fetch of the muxed segment: `payload` is the video segment's media
        token payload, with `a`, the audio rendition's key."""
        key = f"muxed|{buffer_key(payload)}|{payload.get('a', '')}"
        fetch, _ = self._relay.buffer.get(key, lambda f: self._mux(f, channel, payload))
        return fetch

    async def _mux(self, fetch: Fetch, channel: Channel, payload: dict[str, Any]) -> None:
        video = self._relay.media(channel, payload)
        audio = self._relay.media(channel, await self._audio_payload(channel, payload))
        muxed = await self._remuxer.mux(await video.body(), await audio.body())
        fetch.start("video/mp2t", len(muxed))
        fetch.feed(muxed)

    async def _audio_payload(self, channel: Channel, payload: dict[str, Any]) -> dict[str, Any]:
        """The media token payload of the audio segment of the same media sequence."""
        key, sequence = str(payload.get("a", "")), payload.get("s")
        for look in range(_AUDIO_LOOKS):
            current = await self._relay.media_playlist(channel, key)
            if current.resolution.stream_id != payload.get("i"):
                break
            for uri in playlist.uris(current.text, current.url):
                if uri.tag == playlist.SEGMENT and uri.sequence == sequence:
                    return {**media_payload(current.resolution, current.key, uri), "c": channel.id}
            newest = max(
                (
                    u.sequence
                    for u in playlist.uris(current.text, current.url)
                    if u.sequence is not None
                ),
                default=-1,
            )
            if not isinstance(sequence, int) or sequence < newest or look == _AUDIO_LOOKS - 1:
                break
            # Not listed yet: the audio playlist is a moment behind the video's.
            await asyncio.sleep(min(max(playlist.target_duration(current.text) / 2, 0.5), 3.0))
        raise NotFound("The segment's audio is not available", code="segment_gone")
