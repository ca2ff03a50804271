"""The channels file: `channels.toml` loaded, validated, and reloaded when it changes.

`load_channels(path)` reads `[[channel]]` tables (`id`, `name`, `url`, optional `group`,
`logo`, `description`, `enabled`) and raises `ChannelsError` naming the channel and the
field on the first problem: a missing or mistyped field, an unknown field (a typo such
as `enable` would otherwise be silently ignored), a duplicate `id`, an `id` that is not
a URL slug, or a URL that is not http(s).

`ChannelBook` holds the current list. It looks at the file's modification time at most
once a second and reloads when it changed: an edit takes effect without a restart. A
broken edit is logged and the previous list kept, so a typo does not take every channel
down; only start-up stops on a bad file. A missing file is an empty list (with a
warning), so a fresh install starts and picks the file up once it is written.

It does not resolve channels or know whether they are live; `resolver.py` does.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_FIELDS = {"id", "name", "url", "group", "logo", "description", "enabled"}
_CHECK_INTERVAL = 1.0


class ChannelsError(ValueError):
    """The channels file cannot be used; the message names the channel and the field."""


@dataclasses.dataclass(frozen=True)
class Channel:
    id: str
    name: str
    url: str
    group: str = ""
    logo: str = ""
    description: str = ""
    enabled: bool = True


def load_channels(path: Path) -> list[Channel]:
    """Parse and validate the channels file; `ChannelsError` on the first problem."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ChannelsError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ChannelsError(f"{path}: cannot be read: {exc.strerror}") from None
    return parse_channels(document, source=str(path))


def parse_channels(document: dict[str, Any], *, source: str = "channels.toml") -> list[Channel]:
    unknown = set(document) - {"channel"}
    if unknown:
        raise ChannelsError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}")
    tables = document.get("channel", [])
    if not isinstance(tables, list):
        raise ChannelsError(f"{source}: `channel` must be an array of tables ([[channel]])")
    channels: list[Channel] = []
    seen: set[str] = set()
    for number, table in enumerate(tables, start=1):
        channel = _parse_one(table, number, source)
        if channel.id in seen:
            raise ChannelsError(
                f"{source}: channel #{number} {channel.id!r}: field 'id': duplicate"
            )
        seen.add(channel.id)
        channels.append(channel)
    return channels


def _parse_one(table: Any, number: int, source: str) -> Channel:
    if not isinstance(table, dict):
        raise ChannelsError(f"{source}: channel #{number}: must be a table")
    raw_id = table.get("id")
    label = f"{source}: channel #{number}" + (f" {raw_id!r}" if isinstance(raw_id, str) else "")

    def fail(field: str, problem: str) -> ChannelsError:
        return ChannelsError(f"{label}: field {field!r}: {problem}")

    for field in sorted(set(table) - _FIELDS):
        raise fail(field, "unknown field")
    for field in ("id", "name", "url"):
        if field not in table:
            raise fail(field, "missing")
    for field in ("id", "name", "url", "group", "logo", "description"):
        if field in table and not isinstance(table[field], str):
            raise fail(field, "must be a string")
    if not ID_PATTERN.match(table["id"]):
        raise fail("id", "must be 1-64 letters, digits, - or _ (it is used in URLs)")
    if not table["name"].strip():
        raise fail("name", "must not be empty")
    if not _is_http_url(table["url"]):
        raise fail("url", "must be an http(s) URL with a host")
    if table.get("logo") and not _is_http_url(table["logo"]):
        raise fail("logo", "must be an http(s) URL with a host")
    if "enabled" in table and not isinstance(table["enabled"], bool):
        raise fail("enabled", "must be true or false")
    return Channel(
        id=table["id"],
        name=" ".join(table["name"].split()),
        url=table["url"].strip(),
        group=" ".join(table.get("group", "").split()),
        logo=table.get("logo", "").strip(),
        description=table.get("description", "").strip(),
        enabled=table.get("enabled", True),
    )


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


class ChannelBook:
    """The current channels, reloaded from the file when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._channels: dict[str, Channel] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0

    def load(self) -> None:
        """First load, at start-up: a bad file raises `ChannelsError`."""
        stamp = self._file_stamp()
        if stamp is None:
            log.warning("channels file %s does not exist: no live channels yet", self.path)
            self._channels = {}
        else:
            self._channels = {c.id: c for c in load_channels(self.path)}
        self._stamp = stamp
        self._checked = time.monotonic()
        log.info("loaded %d channel(s) from %s", len(self._channels), self.path)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < _CHECK_INTERVAL:
            return
        self._checked = now
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            log.warning("channels file %s was removed: no live channels", self.path)
            self._channels = {}
            return
        try:
            channels = load_channels(self.path)
        except ChannelsError as exc:
            log.error("channels file not reloaded, keeping the previous list: %s", exc)
            return
        self._channels = {c.id: c for c in channels}
        log.info("reloaded %d channel(s) from %s", len(channels), self.path)

    def all(self) -> list[Channel]:
        self._maybe_reload()
        return list(self._channels.values())

    def enabled(self) -> list[Channel]:
        return [c for c in self.all() if c.enabled]

    def get(self, channel_id: str) -> Channel | None:
        self._maybe_reload()
        return self._channels.get(channel_id)

    def reload_now(self) -> None:
        """Check the file on the next access, whatever the interval (tests, invalidation)."""
        self._checked = 0.0
