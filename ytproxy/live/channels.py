"""The channels file: `channels.toml` loaded, validated, and reloaded when it changes.

`load_channels(path)` reads `[[channel]]` tables (`id`, `name`, `url`, optional `group`,
`logo`, `description`, `enabled`, `number` (the channel number players show),
`max_height` (a quality cap), `audio_only` / `radio` (audio entries), and for channels
running several lives at once `pick` and `expand`: see `streams.py`) and raises
`ChannelsError`, one line naming the file and the problem, on the first one: the file
missing, unreadable, not a regular file, not UTF-8 or not TOML; or, naming the channel
and the field, a missing or mistyped field, an unknown field (a typo such as `enable`
would otherwise be silently ignored), a duplicate `id`, an `id` that is not a URL slug,
a URL that is not http(s), a control character in a text field, or a `pick` that is too
long or not a usable regex. Every failure is a `ChannelsError`, so callers need catch
nothing else.

`ChannelBook` holds the current list. It looks at the file's modification time at most
once a second and reloads when it changed: an edit takes effect without a restart. Any
failure after start-up (a broken edit, the file removed or made unreadable) is logged
once and the previous list kept, so a typo or an editor's save-by-rename does not take
every channel down, and no request ever fails because of the file. Only start-up stops
on a bad file (`python app.py` refuses to start, with one line); a missing file at the
book's first load is an empty list with a warning, for apps built without one.

Names and groups are stored on one line (whitespace collapsed); writers of other
formats (the M3U) still escape what is special to them.

It does not resolve channels or know whether they are live; `resolver.py` does.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import stat
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Used with fullmatch: `$` would also match before a trailing newline.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# C0 and C1 controls other than tab and line breaks, which are whitespace to collapse.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_FIELDS = {
    "id",
    "name",
    "url",
    "group",
    "logo",
    "description",
    "enabled",
    "pick",
    "expand",
    "number",
    "max_height",
    "audio_only",
    "radio",
}
# `pick` is matched against titles YouTube controls: a short pattern, without a
# quantified group that itself repeats (`(a+)+`), cannot backtrack for long.
PICK_MAX_LENGTH = 100
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")
_CHECK_INTERVAL = 1.0

# A file's stamp: (inode, mtime in ns, size), or why it could not be looked at.
_Stamp = tuple[int, int, int] | str
_MISSING = "missing"


class ChannelsError(ValueError):
    """The channels file cannot be used; the one-line message names the file and the
    problem, and the channel and the field when it is one channel's."""


@dataclasses.dataclass(frozen=True)
class Channel:
    id: str
    name: str
    url: str
    group: str = ""
    logo: str = ""
    description: str = ""
    enabled: bool = True
    # A case-insensitive substring of the live's title, or a regex written `/.../`.
    pick: str = ""
    # Each current live of the channel's `/streams` tab is its own channel (streams.py).
    expand: bool = False
    # The channel number players show (`tvg-chno`); None: its place in the file.
    number: int | None = None
    # Variants taller than this are never offered nor fetched (LIVE_MAX_HEIGHT too).
    max_height: int | None = None
    # The channel is a radio station: its M3U entry is the audio alone.
    audio_only: bool = False
    # A second M3U entry plays the channel's audio alone (`radio="true"`).
    radio: bool = False


def pick_pattern(pick: str) -> re.Pattern[str] | None:
    """The pattern `pick` stands for (None for no pick); `re.error` if it is not one."""
    if not pick:
        return None
    if len(pick) > 2 and pick.startswith("/") and pick.endswith("/"):
        return re.compile(pick[1:-1], re.IGNORECASE)
    return re.compile(re.escape(pick), re.IGNORECASE)


def load_channels(path: Path) -> list[Channel]:
    """Parse and validate the channels file; `ChannelsError` on the first problem."""
    data = _read(path)
    try:
        # utf-8-sig: Windows editors may add a byte-order mark, which TOML does not allow.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ChannelsError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChannelsError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ChannelsError(f"{path}: not valid TOML: nested too deeply") from None
    return parse_channels(document, source=str(path))


def _read(path: Path) -> bytes:
    try:
        # Checked before opening: opening a FIFO would block until a writer comes.
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ChannelsError(f"{path}: is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise ChannelsError(f"{path}: is not a regular file")
        return path.read_bytes()
    except FileNotFoundError:
        raise ChannelsError(f"{path}: does not exist") from None
    except OSError as exc:
        raise ChannelsError(f"{path}: cannot be read: {exc.strerror or exc}") from None


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
    for field in ("id", "name", "url", "group", "logo", "description", "pick"):
        if field in table and not isinstance(table[field], str):
            raise fail(field, "must be a string")
    if not ID_PATTERN.fullmatch(table["id"]):
        raise fail("id", "must be 1-64 letters, digits, - or _ (it is used in URLs)")
    for field in ("name", "group", "description", "pick"):
        if _CONTROL.search(table.get(field, "")):
            raise fail(field, "must not contain control characters")
    if not table["name"].strip():
        raise fail("name", "must not be empty")
    if not _is_http_url(table["url"]):
        raise fail("url", "must be an http(s) URL with a host")
    if table.get("logo") and not _is_http_url(table["logo"]):
        raise fail("logo", "must be an http(s) URL with a host")
    for field in ("enabled", "expand", "audio_only", "radio"):
        if field in table and not isinstance(table[field], bool):
            raise fail(field, "must be true or false")
    for field, low, high in (("number", 1, 99999), ("max_height", 90, 4320)):
        value = table.get(field)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
        ):
            raise fail(field, f"must be a whole number from {low} to {high}")
    pick = table.get("pick", "").strip()
    if len(pick) > PICK_MAX_LENGTH:
        raise fail("pick", f"must be at most {PICK_MAX_LENGTH} characters")
    if pick.startswith("/") and pick.endswith("/") and len(pick) > 2:
        if _NESTED_QUANTIFIER.search(pick):
            raise fail("pick", "a repeated group that itself repeats, such as (a+)+, is refused")
        try:
            pick_pattern(pick)
        except re.error as exc:
            raise fail("pick", f"not a valid regular expression: {exc}") from None
    return Channel(
        id=table["id"],
        name=" ".join(table["name"].split()),
        url=table["url"].strip(),
        group=" ".join(table.get("group", "").split()),
        logo=table.get("logo", "").strip(),
        description=table.get("description", "").strip(),
        enabled=table.get("enabled", True),
        pick=pick,
        expand=table.get("expand", False),
        number=table.get("number"),
        max_height=table.get("max_height"),
        audio_only=table.get("audio_only", False),
        radio=table.get("radio", False),
    )


def _is_http_url(value: str) -> bool:
    value = value.strip()
    # urlsplit silently drops tabs and newlines inside a URL; refuse them instead.
    if _URL_FORBIDDEN.search(value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


class ChannelBook:
    """The current channels, reloaded from the file when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._channels: dict[str, Channel] = {}
        self._stamp: _Stamp = _MISSING
        self._checked = 0.0

    def load(self) -> None:
        """First load, at start-up: a bad file raises `ChannelsError`."""
        stamp = self._file_stamp()
        if stamp == _MISSING:
            log.warning("channels file %s does not exist: no live channels yet", self.path)
            self._channels = {}
        else:
            self._channels = {c.id: c for c in load_channels(self.path)}
        self._stamp = stamp
        self._checked = time.monotonic()
        log.info("loaded %d channel(s) from %s", len(self._channels), self.path)

    def _file_stamp(self) -> _Stamp:
        """What changes when the file does: its identity, size and time, or why it has none.

        Never raises: a stat that fails gives a stamp too, so the failure is reported
        once, when it appears, not on every check.
        """
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return _MISSING
        except OSError as exc:
            return f"error: {exc.strerror or exc}"
        return found.st_ino, found.st_mtime_ns, found.st_size

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < _CHECK_INTERVAL:
            return
        self._checked = now
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
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
