"""Thread-safe knobs of the test origin: URL signing, fault switches, request counters.

Tests change these from their own thread while the origin's event loop reads them, so
every piece of mutable state sits behind a lock and is only held for a dictionary
operation. This module deliberately does no I/O: the server applies what it decides.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_URL_LIFETIME = 3600.0


class Signer:
    """Signs paths googlevideo-style: `expire` (unix seconds) and an HMAC `sig` over
    path + expire + a generation number, so `expire_all()` can revoke every URL."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._secret = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._generation = 0
        self._lifetime = DEFAULT_URL_LIFETIME

    def set_lifetime(self, seconds: float) -> None:
        with self._lock:
            self._lifetime = seconds

    def expire_all(self) -> None:
        with self._lock:
            self._generation += 1

    def query(self, path: str, expire: int | None = None) -> str:
        """`expire=..&sig=..` for `path`; valid for at least the current lifetime
        (expire is rounded up to a whole second, as googlevideo's is a whole second),
        or until `expire` when given (URLs listed in a playlist share its expiry)."""
        with self._lock:
            generation, lifetime = self._generation, self._lifetime
        if expire is None:
            expire = math.ceil(self._clock() + lifetime)
        return f"expire={expire}&sig={self._digest(path, str(expire), generation)}"

    def verify(self, path: str, expire: str | None, sig: str | None) -> bool:
        if expire is None or sig is None or not expire.isdigit():
            return False
        with self._lock:
            generation = self._generation
        if self._clock() >= int(expire):
            return False
        return hmac.compare_digest(sig, self._digest(path, expire, generation))

    def _digest(self, path: str, expire: str, generation: int) -> str:
        message = f"{path}\n{expire}\n{generation}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request: wait, answer with an error status, or cut the body."""

    latency: float = 0.0
    fail_status: int | None = None
    drop_after: int | None = None
    stall_after: int | None = None


@dataclass
class _Shot:
    prefix: str
    value: int
    remaining: int


class Faults:
    """Fault switches keyed by path prefix. One-shot faults (`fail`, `drop_after`,
    `stall_after`) are used up by the first `times` matching requests; latency stays
    until cleared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drops: list[_Shot] = []
        self._stalls: list[_Shot] = []
        self._failures: list[_Shot] = []
        self._latency: dict[str, float] = {}

    def drop_after(self, prefix: str, nbytes: int, times: int = 1) -> None:
        with self._lock:
            self._drops.append(_Shot(prefix, nbytes, times))

    def stall_after(self, prefix: str, nbytes: int, times: int = 1) -> None:
        with self._lock:
            self._stalls.append(_Shot(prefix, nbytes, times))

    def fail(self, prefix: str, status: int = 500, times: int = 1) -> None:
        with self._lock:
            self._failures.append(_Shot(prefix, status, times))

    def add_latency(self, prefix: str, seconds: float) -> None:
        with self._lock:
            self._latency[prefix] = seconds

    def clear(self) -> None:
        with self._lock:
            self._drops.clear()
            self._stalls.clear()
            self._failures.clear()
            self._latency.clear()

    def plan(self, path: str) -> FaultPlan:
        """Decide (and use up) the faults for a request to `path`."""
        with self._lock:
            latency = sum(s for prefix, s in self._latency.items() if path.startswith(prefix))
            fail_status = _take(self._failures, path)
            drop = _take(self._drops, path) if fail_status is None else None
            stall = _take(self._stalls, path) if fail_status is None and drop is None else None
        return FaultPlan(
            latency=latency, fail_status=fail_status, drop_after=drop, stall_after=stall
        )


def _take(shots: list[_Shot], path: str) -> int | None:
    for shot in shots:
        if path.startswith(shot.prefix):
            shot.remaining -= 1
            if shot.remaining <= 0:
                shots.remove(shot)
            return shot.value
    return None


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    range: str | None
    user_agent: str | None = None
    accept_encoding: str | None = None


class RequestLog:
    """Every request the origin saw, counted by path (query string left out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._counts[record.path] += 1
            self._records.append(record)

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(n for path, n in self._counts.items() if path.startswith(prefix))

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._records.clear()
