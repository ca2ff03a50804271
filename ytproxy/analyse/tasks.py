"""One analysis task: its state, its progress, and the record that lives in the cache.

A task moves through `pending` → `running` → `completed` | `failed`, and within that
through the progress stages `queued` (0 %), `extracting` (5–85 %, advanced by each
line yt-dlp logs: pages, players, manifests), `listing` (a playlist's entries arriving:
yt-dlp's "Downloading item i of n" moves it to 5 + 80·i/n %, and each "Downloading
page" line to the next step), `classifying` (90 %) and `done` (100 %).

The record under `task:<id>` is what any instance answers a poll from. It names the
result by its cache key (`result:<url hash>`) rather than embedding it: many tasks
can share one result, and a result is stored once. Records carry a `heartbeat` that
the owning instance refreshes; a pending or running record whose heartbeat has gone
quiet belonged to an instance that died, and is reported as failed (`task_lost`).

This module holds data and arithmetic only; `runner.py` runs tasks and writes records.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from typing import Any, Literal

State = Literal["pending", "running", "completed", "failed"]
ACTIVE_STATES = frozenset({"pending", "running"})

# How often the owner refreshes its records, and when a silent record counts as lost.
HEARTBEAT_INTERVAL = 5.0
STALE_AFTER = 30.0

_TASK_ID = re.compile(r"[0-9a-f]{32}")  # fullmatch: `$` also matches before a final \n

# yt-dlp lines that mean a large step of the extraction is done.
_BIG_STEPS = ("manifest", "m3u8", "mpd", "player", "webpage", "api json", "formats")
# yt-dlp's lines while it lists a playlist (flat): the playlist opens, pages, entries.
_PLAYLIST = re.compile(r"downloading playlist:|: downloading \d+ items|downloading page \d+", re.I)
_ITEM = re.compile(r"downloading item (\d+) of (\d+)", re.I)


def new_task_id() -> str:
    return secrets.token_hex(16)


def valid_task_id(task_id: str) -> bool:
    return bool(_TASK_ID.fullmatch(task_id))


def task_key(task_id: str) -> str:
    return f"task:{task_id}"


def lease_key(url_hash: str) -> str:
    """The key that names the task analysing a URL right now (any instance)."""
    return f"task-by-url:{url_hash}"


def result_key(url_hash: str) -> str:
    return f"result:{url_hash}"


@dataclasses.dataclass
class Task:
    task_id: str
    url: str
    url_hash: str
    state: State = "pending"
    stage: str = "queued"
    progress: int = 0
    error: dict[str, str] | None = None
    result_key: str | None = None
    created: float = dataclasses.field(default_factory=time.time)
    heartbeat: float = dataclasses.field(default_factory=time.time)
    events: int = 0

    @property
    def finished(self) -> bool:
        return self.state not in ACTIVE_STATES

    def start(self) -> None:
        self.state, self.stage, self.progress = "running", "extracting", 5

    def advance(self, message: str) -> bool:
        """Account for one yt-dlp log line; True when the percentage moved."""
        if self.stage not in {"extracting", "listing"}:
            return False
        item = _ITEM.search(message)
        if item is not None or _PLAYLIST.search(message):
            self.stage = "listing"
        if item is not None:
            done, total = int(item.group(1)), max(1, int(item.group(2)))
            progress = 5 + int(80 * min(done, total) / total)
        else:
            lowered = message.lower()
            self.events += 3 if any(step in lowered for step in _BIG_STEPS) else 1
            # Approaches 85 % without reaching it: the number of lines is not known ahead.
            progress = 5 + int(80 * (1 - 0.85**self.events))
        if progress <= self.progress:
            return False
        self.progress = progress
        return True

    def classifying(self) -> None:
        self.stage, self.progress = "classifying", 90

    def complete(self, result_key: str) -> None:
        self.state, self.stage, self.progress = "completed", "done", 100
        self.result_key = result_key

    def fail(self, error: dict[str, str]) -> None:
        self.state, self.stage = "failed", "done"
        self.error = error

    def record(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "url": self.url,
            "url_hash": self.url_hash,
            "state": self.state,
            "stage": self.stage,
            "progress": self.progress,
            "error": self.error,
            "result_key": self.result_key,
            "created": self.created,
            "heartbeat": self.heartbeat,
        }


def is_stale(record: dict[str, Any], now: float | None = None) -> bool:
    """A pending or running record whose owner stopped refreshing it."""
    if record.get("state") not in ACTIVE_STATES:
        return False
    now = time.time() if now is None else now
    return now - float(record.get("heartbeat") or 0) > STALE_AFTER


def lost(record: dict[str, Any]) -> dict[str, Any]:
    """How a stale record is reported: failed, so that no poller waits for ever."""
    return {
        **record,
        "state": "failed",
        "stage": "done",
        "error": {
            "code": "task_lost",
            "message": "The server running this analysis stopped; submit the URL again",
        },
    }
