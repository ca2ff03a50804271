"""Degraded answers explained: what YouTube withheld, as stable warning codes.

YouTube often answers a server with less than a browser gets, and yt-dlp says so only
in warnings (which `extractor.py` collects per extraction, see `WARNINGS_KEY`) or in
the shape of the formats. `warnings_for(info, now)` turns both into
`[{"code", "message"}]` for the result, each code once, in this order:

- `po_token_missing`: formats or subtitles were skipped because no PO token was given;
- `po_token_failed`: the PO-token provider was asked and failed (unreachable, an
  error, a token it could not make);
- `sabr_only`: formats were skipped because YouTube offered them only over SABR;
- `js_runtime_failed`: no JavaScript runtime, or the `n`/signature challenge failed;
- `only_format_18`: of a YouTube video, only the 360p format 18 is left;
- `available_at_delay`: the formats may not be fetched before a time in the future
  (`available_at`; fetching earlier ends in 403 after a few seconds).

The patterns match the installed yt-dlp's wording (pinned by tests/test_degraded.py,
which reads the messages from yt-dlp's source). Messages are for the operator: they
say what to do (POT_PROVIDER_URL, cookies, a JavaScript runtime, updating yt-dlp).
The web UI shows its own zh/en text per code (`analyse.warning.*`).

This module is pure (the time is an argument) and only reads an info dict.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit

from ..extractor import WARNINGS_KEY

# Ordered: a message takes the first code whose pattern it matches.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # "... formats require a GVS PO Token which was not provided", "Some ... subtitles
    # require a PO Token which was not provided", "There are missing subtitles languages
    # because a PO token was not provided", "Unable to fetch GVS PO Token ...: Missing ..."
    (
        "po_token_missing",
        re.compile(
            r"PO Token which was not provided|because a PO token was not provided|"
            r"Unable to fetch (GVS|Player) PO Token",
            re.I,
        ),
    ),
    # The provider framework: "Error fetching PO Token from "bgutil:http" provider: ...",
    # "Unexpected error when fetching PO Token ...", and the bgutil plugin's own
    # "... make sure that the server is reachable at ...".
    (
        "po_token_failed",
        re.compile(
            r"(error|failed) (when )?fetching PO Token|PO Token (cache )?provider|"
            r"server is reachable at|Error reaching (GET /ping|POST /get_pot)",
            re.I,
        ),
    ),
    # "Some tv client https formats have been skipped as they are missing a URL.
    # YouTube may have enabled the SABR-only streaming experiment ..."
    ("sabr_only", re.compile(r"SABR|skipped as they are missing a URL", re.I)),
    # "No supported JavaScript runtime could be found", "n challenge solving failed",
    # "Signature solving failed", "Remote component(s) ... skipped ... JS challenges",
    # "Error solving n challenge request using "deno" provider".
    (
        "js_runtime_failed",
        re.compile(
            r"JavaScript runtime|n challenge solving failed|Signature solving failed|"
            r"JS challenge|Error solving \w+ challenge",
            re.I,
        ),
    ),
)

MESSAGES: dict[str, str] = {
    "po_token_missing": (
        "YouTube wanted a PO token and none was given, so some formats or subtitles are "
        "missing. Run a PO-token provider (bgutil) and set POT_PROVIDER_URL, or sign in "
        "with cookies (YTDLP_COOKIES_FILE)."
    ),
    "po_token_failed": (
        "The PO-token provider could not give a token, so formats may be missing or stop "
        "after 30-40 s with 403. Check that POT_PROVIDER_URL is reachable and up to date."
    ),
    "sabr_only": (
        "YouTube offered some formats only over SABR streaming, which cannot be downloaded. "
        "Try other player clients (YTDLP_EXTRACTOR_ARGS), cookies, or update yt-dlp."
    ),
    "js_runtime_failed": (
        "yt-dlp could not run YouTube's JavaScript challenges, so formats are missing. "
        "Install a JavaScript runtime (deno, or node) with yt-dlp-ejs and update yt-dlp."
    ),
    "only_format_18": (
        "YouTube gave only the 360p format 18 to this server. This usually means a missing "
        "PO token or a blocked address: set POT_PROVIDER_URL, add cookies, or update yt-dlp."
    ),
    "available_at_delay": (
        "YouTube holds the formats back until {when} UTC; a download before then fails "
        "with 403 after a few seconds. Try again after that time."
    ),
}

_YOUTUBE_HOSTS = frozenset({"youtube.com", "youtu.be", "m.youtube.com"})
_CODES = (*(code for code, _ in PATTERNS), "only_format_18", "available_at_delay")


def code_for(message: str) -> str | None:
    """The warning code of one yt-dlp warning, or None for one that is not about a
    degraded answer."""
    return next((code for code, pattern in PATTERNS if pattern.search(message)), None)


def warnings_for(info: dict[str, Any], now: float) -> list[dict[str, str]]:
    codes: set[str] = set()
    for message in info.get(WARNINGS_KEY) or []:
        code = code_for(str(message))
        if code is not None:
            codes.add(code)
    if _only_format_18(info):
        codes.add("only_format_18")
    available_at = _available_at(info)
    when = None
    if available_at is not None and available_at > now:
        codes.add("available_at_delay")
        when = dt.datetime.fromtimestamp(available_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return [
        {"code": code, "message": MESSAGES[code].format(when=when)}
        for code in _CODES
        if code in codes
    ]


def _only_format_18(info: dict[str, Any]) -> bool:
    if not _is_youtube(info) or info.get("is_live"):
        return False
    media = [
        str(f.get("format_id"))
        for f in info.get("formats") or []
        if f.get("vcodec") != "none" or f.get("acodec") != "none"
    ]
    # Storyboards have neither video nor audio and do not count.
    return bool(media) and {m.split("-")[0] for m in media} == {"18"}


def _is_youtube(info: dict[str, Any]) -> bool:
    host = (urlsplit(str(info.get("webpage_url") or "")).hostname or "").lower()
    return host in _YOUTUBE_HOSTS or host.endswith(".youtube.com")


def _available_at(info: dict[str, Any]) -> float | None:
    times = [
        f["available_at"]
        for f in info.get("formats") or []
        if isinstance(f.get("available_at"), int | float)
        and not isinstance(f["available_at"], bool)
    ]
    return max(times) if times else None
