"""Cookies uploaded from the browser: the Netscape `cookies.txt` format, checked,
filtered and stored.

`read_upload(data, extra_domains)` turns an uploaded file into the text that is stored,
or raises `BadRequest` (`invalid_cookies`, `cookies_no_youtube`) naming the first bad
line by number, never by content. It accepts what browser extensions export: UTF-8
(a BOM too), CRLF or LF, the `# Netscape HTTP Cookie File` header or none (yt-dlp
needs it, so the stored file always gets it), `#HttpOnly_` lines, and for each cookie
exactly 7 tab-separated fields (domain, subdomains flag, path, secure flag, expiry as
a Unix time or empty for a session cookie, name, value). At most `MAX_UPLOAD` bytes
and `MAX_COOKIES` cookies.

Domains: only cookies for YouTube and Google (`youtube.com`, `google.com`, Google's
country domains, `youtu.be`, `youtube-nocookie.com`) are kept, plus those of
`COOKIES_EXTRA_DOMAINS`. Cookies for any other domain are *dropped* (and counted in
the answer), not refused: "export all cookies" is the easy button in most extensions,
and the gateway has no business keeping a user's other logins. An upload left with
no cookie at all is refused.

`store(path, text)` writes atomically (a temporary file in the same directory, fsync,
`os.replace`, then the directory fsynced) with mode 0600; `remove(path)` deletes.
`describe(text)` summarises a file for answers and `/diagnostics`: counts, domains,
whether YouTube's login cookies are there. Nothing here returns or logs a cookie's
value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import BadRequest, PayloadTooLarge

MAX_UPLOAD = 1024 * 1024
MAX_COOKIES = 5000
MAX_LINE = 8192
HEADER = "# Netscape HTTP Cookie File"
HTTPONLY = "#HttpOnly_"
# Cookies YouTube sets on a signed-in session; yt-dlp sends them as its login.
LOGIN_COOKIES = frozenset(
    {
        "SAPISID",
        "__Secure-1PAPISID",
        "__Secure-3PAPISID",
        "__Secure-1PSID",
        "__Secure-3PSID",
        "LOGIN_INFO",
        "SID",
        "HSID",
        "SSID",
        "APISID",
    }
)
_YOUTUBE_DOMAINS = re.compile(
    r"(?:^|\.)(?:youtube\.com|youtube-nocookie\.com|youtu\.be|google\.com"
    r"|google\.[a-z]{2}|google\.(?:co|com)\.[a-z]{2})$"
)
_DOMAIN = re.compile(r"[A-Za-z0-9_.-]{1,253}")
_EXPIRY = re.compile(r"[0-9]{0,20}(?:\.[0-9]+)?")
_MAX_DOMAINS_SHOWN = 30


@dataclasses.dataclass
class Summary:
    """What may be said about a cookies file: never a value."""

    cookies: int = 0
    domains: list[str] = dataclasses.field(default_factory=list)
    login_cookies: list[str] = dataclasses.field(default_factory=list)
    expired: int = 0
    dropped: int = 0

    @property
    def signed_in(self) -> bool:
        return bool(self.login_cookies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cookies": self.cookies,
            "domains": self.domains,
            "signed_in": self.signed_in,
            "login_cookies": self.login_cookies,
            "expired": self.expired,
            "dropped": self.dropped,
        }


@dataclasses.dataclass(frozen=True)
class _Line:
    number: int
    text: str
    domain: str
    name: str
    expires: float


def is_youtube_domain(domain: str) -> bool:
    return _YOUTUBE_DOMAINS.search(domain) is not None


def read_upload(data: bytes, extra_domains: tuple[str, ...] = ()) -> tuple[str, Summary]:
    """The text to store for an uploaded file, and its summary; `BadRequest` if unfit."""
    if len(data) > MAX_UPLOAD:
        raise PayloadTooLarge(f"A cookies file may be at most {MAX_UPLOAD} bytes")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise _invalid("The file is not UTF-8 text: export cookies.txt again") from None
    if text.lstrip()[:1] in ("[", "{"):
        raise _invalid(
            "This is a JSON export; the gateway (like yt-dlp) needs the Netscape "
            "cookies.txt format (first line: # Netscape HTTP Cookie File)"
        )
    lines, bad = _parse(text)
    if bad:
        number, reason = bad[0]
        raise _invalid(
            f"{len(bad)} line(s) are not Netscape cookies; the first is line {number}: "
            f"{reason}. Export the file again rather than editing it"
        )
    if len(lines) > MAX_COOKIES:
        raise _invalid(f"More than {MAX_COOKIES} cookies; export only YouTube's")
    kept = [line for line in lines if _wanted(line.domain, extra_domains)]
    if not kept:
        raise BadRequest(
            f"No cookie for YouTube or Google in the file ({len(lines)} for other domains); "
            "export the cookies of youtube.com while signed in",
            code="cookies_no_youtube",
        )
    summary = _summarise(kept)
    summary.dropped = len(lines) - len(kept)
    body = "".join(line.text + "\n" for line in kept)
    return f"{HEADER}\n# Uploaded to ytproxy; only these domains were kept.\n\n{body}", summary


def describe(text: str) -> Summary:
    """The summary of a stored (or operator-provided) file; bad lines are skipped."""
    lines, _ = _parse(text.removeprefix("\ufeff"))
    return _summarise(lines)


def store(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by this user only."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".cookies-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def remove(path: Path) -> bool:
    """Delete `path`; False when there was nothing to delete."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_directory(path.parent)
    return True


def status(path: Path | None, *, now: float | None = None) -> dict[str, Any]:
    """What `GET /v1/cookies` and the settings page say about the file in use."""
    if path is None or not path.is_file():
        return {"present": False}
    modified = path.stat().st_mtime
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        summary = describe(handle.read(MAX_UPLOAD * 5))
    age = max(0, int((now or time.time()) - modified))
    updated = dt.datetime.fromtimestamp(modified, dt.UTC).isoformat(timespec="seconds")
    return {
        "present": True,
        **summary.to_dict(),
        "updated_at": updated.replace("+00:00", "Z"),
        "age_seconds": age,
    }


def _parse(text: str) -> tuple[list[_Line], list[tuple[int, str]]]:
    lines: list[_Line] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if len(raw) > MAX_LINE:
            bad.append((number, f"longer than {MAX_LINE} characters"))
            continue
        line = raw.rstrip("\r")
        if not line.strip() or (line.startswith("#") and not line.startswith(HTTPONLY)):
            continue
        body = line.removeprefix(HTTPONLY)
        fields = body.split("\t")
        reason = _check(fields)
        if reason is not None:
            bad.append((number, reason))
            continue
        domain = fields[0].strip().lower().lstrip(".")
        expires = float(fields[4]) if fields[4].strip() else 0.0
        lines.append(_Line(number, line, domain, fields[5], expires))
    return lines, bad


def _check(fields: list[str]) -> str | None:
    if len(fields) != 7:
        if len(fields) == 1 and len(fields[0].split()) >= 7:
            return "its fields are separated by spaces, not tabs"
        return f"it has {len(fields)} tab-separated field(s), not 7"
    domain, subdomains, path, secure, expires, name, value = fields
    if not _DOMAIN.fullmatch(domain.strip()):
        return "the domain (1st field) is not a host name"
    if subdomains.upper() not in ("TRUE", "FALSE") or secure.upper() not in ("TRUE", "FALSE"):
        return "the 2nd and 4th fields must be TRUE or FALSE"
    if not path.startswith("/"):
        return "the path (3rd field) does not start with /"
    if not _EXPIRY.fullmatch(expires.strip()):
        return "the expiry (5th field) is not a Unix time"
    if not name or any(ord(c) < 32 or c in ";=" for c in name):
        return "the name (6th field) is empty or not a cookie name"
    if any(ord(c) < 32 and c != "\t" for c in value):
        return "the value (7th field) holds control characters"
    return None


def _wanted(domain: str, extra: tuple[str, ...]) -> bool:
    return is_youtube_domain(domain) or any(
        domain == allowed or domain.endswith("." + allowed) for allowed in extra
    )


def _summarise(lines: list[_Line]) -> Summary:
    now = time.time()
    domains = sorted({line.domain for line in lines})
    login = sorted(
        {
            line.name
            for line in lines
            if line.name in LOGIN_COOKIES and is_youtube_domain(line.domain)
        }
    )
    return Summary(
        cookies=len(lines),
        domains=domains[:_MAX_DOMAINS_SHOWN],
        login_cookies=login,
        expired=sum(1 for line in lines if 0 < line.expires < now),
    )


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_cookies")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
