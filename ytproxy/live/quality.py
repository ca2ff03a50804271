"""Quality caps: which of a live's variants a channel offers.

`LIVE_MAX_HEIGHT` (for every channel) and a channel's `max_height` (the lower of the
two wins) keep variants taller than the cap out of the master a player gets, so they
are never asked for and never fetched: on a 2-core VPS with a metered line, a family
watching 480p costs a fraction of 1080p. A variant without a `RESOLUTION` is kept (its
height is unknown: audio, or an upstream that does not say); if every variant with a
height is over the cap, the lowest of them is kept, so a channel never ends up with
nothing to play.

It filters text and keys; it does not fetch, rewrite URIs or sign anything.
"""

from __future__ import annotations

import functools

from . import playlist
from .channels import Channel
from .resolver import Resolution

STREAM_TAGS = frozenset({"EXT-X-STREAM-INF", "EXT-X-I-FRAME-STREAM-INF"})


def cap_for(global_cap: int | None, channel: Channel) -> int | None:
    caps = [cap for cap in (global_cap, channel.max_height) if cap]
    return min(caps) if caps else None


def height_of(attributes: dict[str, str]) -> int | None:
    """The height in a `RESOLUTION=WxH` attribute, if it has one."""
    _, _, height = attributes.get("RESOLUTION", "").partition("x")
    return int(height) if height.isdigit() else None


@functools.lru_cache(maxsize=64)
def refused_urls(master: str, base_url: str, cap: int | None) -> frozenset[str]:
    """The variant URLs (absolute) over `cap` that the channel does not offer.

    Asked on every media-playlist request of a capped channel: the answer for a master
    (which changes only with a resolution) is kept rather than parsed again."""
    if cap is None:
        return frozenset()
    heights = {
        uri.url: height_of(uri.attributes)
        for uri in playlist.uris(master, base_url)
        if uri.tag in STREAM_TAGS
    }
    known = {url: height for url, height in heights.items() if height is not None}
    over = {url for url, height in known.items() if height > cap}
    if known and over == set(known):
        over.discard(min(known, key=lambda url: known[url]))
    return frozenset(over)


def offered_keys(resolution: Resolution, cap: int | None) -> list[str]:
    """The resolution's variant keys a player may be given (audio renditions included)."""
    refused = refused_urls(resolution.master, resolution.base_url, cap)
    return [key for key, url in resolution.variants.items() if url not in refused]


def capped_master(master: str, base_url: str, cap: int | None) -> str:
    """`master` without the variants over `cap`."""
    refused = refused_urls(master, base_url, cap)
    if not refused:
        return master
    return playlist.without(master, base_url, lambda uri: uri.url in refused)
