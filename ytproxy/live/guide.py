"""The XMLTV guide of the M3U's channels (`/epg.xml`), from what the gateway knows.

`build_guide(entries, now)` is pure: it takes each channel of the lineup with its
cached state (`GuideEntry`: the cached `Resolution`, else the failure record with its
`status`, `starts_at` and `title`, else neither) and returns the XMLTV document, so it
is tested without a server. Per channel it gives a `<channel>` (its `guide_id`, which
the M3U also uses as `tvg-id`; the configured name and the channel number as display
names; the logo through the gateway) and programmes covering at least an hour before
`now` to a day after it, without gaps or overlaps:

- live: the current live (its title and trimmed description, from when yt-dlp says it
  began until the next full hour after `now` plus one, so the stop rolls forward);
- upcoming: "not started yet" until its `starts_at`, then the scheduled live for an hour;
- ended, offline, blocked, error, or never resolved: filler blocks saying so;
- after a live or a scheduled one: hourly blocks named after the channel, since YouTube
  publishes no schedule beyond that.

`GuideWarmer` is the one part with effects: it resolves, in the background and a few
at a time, channels with nothing cached, so the next guide knows them.

It does not ask yt-dlp anything while building, and it does not guess titles YouTube
has not given (a channel never resolved shows as offline until it is).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import re
import time
import xml.etree.ElementTree as ET
from typing import Any

from ..errors import YtproxyError
from ..flights import Flights
from .channels import Channel
from .info import DESCRIPTION_LIMIT, trimmed
from .resolver import Resolution, Resolver

log = logging.getLogger(__name__)

HOUR = 3600.0
BEFORE = HOUR  # the guide starts at least this long before now
AHEAD = 24 * HOUR  # and ends at least this long after it
SCHEDULED_LENGTH = HOUR  # an upcoming live's assumed length
GUIDE_DOMAIN = "ytproxy"
GENERATOR = "ytproxy"
OFFLINE = "Offline · 暂未直播"
ENDED = "Ended · 直播已结束"
NOT_STARTED = "直播未开始 · Not started yet"
DOCTYPE = b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n'
# Characters XML 1.0 does not allow, which titles from YouTube may still carry.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9-]")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def guide_id(channel_id: str) -> str:
    """The channel's id in the guide and the M3U's `tvg-id`, in RFC 2838's dotted form
    (`news.ytproxy`), which `tv_validate_file` requires. A derived id `news~1a2b3c4d`
    becomes `1a2b3c4d.news.ytproxy`; a label with other characters than letters,
    digits and `-` (an `_`) gets them replaced and a short hash of it, to stay unique."""
    labels = []
    for label in reversed(channel_id.split("~")):
        clean = _NOT_LABEL.sub("-", label)
        if clean != label or not clean:
            clean += "-" + hashlib.sha256(label.encode()).hexdigest()[:6]
        labels.append(clean)
    return ".".join([*labels, GUIDE_DOMAIN])


@dataclasses.dataclass(frozen=True)
class GuideEntry:
    """One channel of the lineup and what is cached about it."""

    number: int
    channel: Channel
    icon: str | None  # absolute URL through the gateway's image relay
    resolution: Resolution | None
    failure: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class Programme:
    start: float
    stop: float
    title: str
    description: str = ""


def build_guide(entries: list[GuideEntry], now: float) -> bytes:
    """The XMLTV document (UTF-8 bytes) of `entries`, as of `now` (Unix time)."""
    tv = ET.Element("tv", {"generator-info-name": GENERATOR})
    for entry in entries:
        channel = ET.SubElement(tv, "channel", {"id": guide_id(entry.channel.id)})
        _text(channel, "display-name", entry.channel.name)
        ET.SubElement(channel, "display-name").text = str(entry.number)
        if entry.icon:
            ET.SubElement(channel, "icon", {"src": entry.icon})
    for entry in entries:
        for programme in programmes(entry, now):
            element = ET.SubElement(
                tv,
                "programme",
                {
                    "start": xmltv_time(programme.start),
                    "stop": xmltv_time(programme.stop),
                    "channel": guide_id(entry.channel.id),
                },
            )
            _text(element, "title", programme.title)
            if programme.description:
                _text(element, "desc", programme.description)
    return DOCTYPE + ET.tostring(tv, encoding="unicode").encode("utf-8") + b"\n"


def programmes(entry: GuideEntry, now: float) -> list[Programme]:
    """The channel's programmes from before `now - BEFORE` to after `now + AHEAD`."""
    first = math.floor((now - BEFORE) / HOUR) * HOUR
    last = math.ceil((now + AHEAD) / HOUR) * HOUR
    rolling = math.floor(now / HOUR) * HOUR + 2 * HOUR  # the next full hour, plus one
    name = entry.channel.name
    resolution, failure = entry.resolution, entry.failure or {}
    status = "live" if resolution is not None else str(failure.get("status") or "unknown")
    starts_at = _time_or_none(failure.get("starts_at"))
    if resolution is not None:
        began = min(resolution.started_at or resolution.fetched_at, now)
        anchor = Programme(began, rolling, resolution.title or name, resolution.description)
        return [*_filler(first, began, OFFLINE), anchor, *_filler(rolling, last, name)]
    if status == "upcoming" and starts_at is not None:
        title = str(failure.get("title") or "") or name
        stop = max(starts_at + SCHEDULED_LENGTH, rolling if starts_at < now else 0.0)
        scheduled = Programme(starts_at, stop, title, _starts_note(starts_at))
        return [*_filler(first, starts_at, NOT_STARTED), scheduled, *_filler(stop, last, name)]
    if status == "upcoming":
        return _filler(first, last, NOT_STARTED, str(failure.get("title") or ""))
    if status == "ended":
        return _filler(first, last, ENDED, str(failure.get("title") or ""))
    return _filler(first, last, OFFLINE)


def _filler(start: float, stop: float, title: str, description: str = "") -> list[Programme]:
    """Blocks from `start` to `stop`, broken at full hours (players draw a grid)."""
    blocks = []
    while start < stop:
        end = min(math.floor(start / HOUR) * HOUR + HOUR, stop)
        blocks.append(Programme(start, end, title, description))
        start = end
    return blocks


def _starts_note(starts_at: float) -> str:
    return f"Scheduled · 预定开始 {xmltv_time(starts_at)[:12]} UTC"


def xmltv_time(moment: float) -> str:
    return time.strftime("%Y%m%d%H%M%S +0000", time.gmtime(int(moment)))


def _time_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _text(parent: ET.Element, tag: str, text: str) -> None:
    """A text element with a `lang`: `zh` when it has Chinese, Japanese or Korean
    characters, else `en` (YouTube does not say which language a title is in)."""
    clean = _NOT_XML.sub("", text)
    if tag == "desc":
        clean = trimmed(clean, DESCRIPTION_LIMIT)
    ET.SubElement(parent, tag, {"lang": "zh" if _CJK.search(clean) else "en"}).text = clean


class GuideWarmer:
    """Resolves channels with nothing cached in the background, a few at a time, each
    at most once per `interval`, so a guide asked for again knows them."""

    def __init__(self, resolver: Resolver, *, limit: int = 3, interval: float = 60.0) -> None:
        self._resolver = resolver
        self._limit = limit
        self._interval = interval
        self._tasks = Flights()
        self._started: dict[str, float] = {}

    def warm(self, channels: list[Channel]) -> None:
        now = time.monotonic()
        self._started = {k: t for k, t in self._started.items() if now - t < self._interval}
        for channel in channels:
            if len(self._tasks) >= self._limit:
                return
            if channel.id in self._tasks or channel.id in self._started:
                continue
            self._started[channel.id] = now
            self._tasks.start(channel.id, functools.partial(self._resolve, channel))

    async def _resolve(self, channel: Channel) -> None:
        try:
            await self._resolver.current(channel)
        except YtproxyError as exc:
            # The resolver has recorded the status the guide shows next time.
            log.debug("guide: channel %s is not live (%s)", channel.id, exc.code)
        except Exception:
            # A background task: its outer edge.
            log.exception("guide: resolving channel %s failed unexpectedly", channel.id)

    async def settled(self) -> None:
        """Wait for the resolutions under way (tests)."""
        await self._tasks.wait()

    async def close(self) -> None:
        await self._tasks.close()
