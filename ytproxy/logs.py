"""Logging set-up: text or JSON lines on stderr, with secrets redacted.

`configure_logging(settings)` is called once by the entry point (not by
`create_app`, so tests keep pytest's own capture). A filter on the handler redacts
every record, uvicorn's access log included, message and traceback alike:

- the access token and the secret key anywhere in the line, raw or percent-encoded
  (any of their characters, upper- or lower-case hex, once or twice encoded, `+` for
  a space);
- the value of a query parameter whose name, percent-decoded and case-folded, is one
  of `_SECRET_PARAMETERS` (`?tok%65n=`, `?TOKEN=`), also inside an encoded URL that is
  itself a parameter (`?url=https%3A...%3Ftoken%3D...`);
- the value of an `Authorization` or `Cookie` header written as `Name: value` or as a
  dict entry, should a header ever be logged.

It redacts by pattern, so a secret in some other shape (base64'd, split across
records) gets through; it does not ship logs anywhere.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any
from urllib.parse import unquote_plus

from .settings import Settings

REDACTED = "***"

# Compared with the percent-decoded, case-folded name, `-` read as `_`.
_SECRET_PARAMETERS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "secret_key",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "signature",
        "sig",
    }
)
# Separators and `=` raw, encoded once (`%26`) or twice (`%2526`); a name is any run of
# other characters and escapes that does not contain an encoded separator.
_SEP = r"(?:[?&;]|%(?:25)?(?:3[Ff]|26|3[Bb]))"
_EQ = r"(?:=|%(?:25)?3[Dd])"
_NAME = r"(?:(?!%(?:25)?(?:3[DdFfBb]|26))(?:%[0-9A-Fa-f]{2}|[^=&?;%\s\"'#<>]))+"
_VALUE = r"(?:(?!%(?:25)?26)[^&\s\"'#<>])*"
_PARAMETER = re.compile(f"({_SEP})({_NAME})({_EQ})({_VALUE})")
_HEADER = re.compile(
    r"""(\b(?:proxy-)?authorization|\b(?:set-)?cookie)(["']?\s*:\s*)"""
    r"""(?:(["'])(?:(?!\3).)*\3|[^\r\n]+)""",
    re.IGNORECASE,
)


def _secret_pattern(secret: str) -> str:
    """A pattern for `secret` with any of its characters written raw or percent-encoded."""
    parts = []
    for char in secret:
        hexes = [f"{byte:02X}" for byte in char.encode("utf-8")]
        forms = [
            re.escape(char),
            "(?i:" + "".join(f"%{h}" for h in hexes) + ")",
            "(?i:" + "".join(f"%25{h}" for h in hexes) + ")",
        ]
        if char == " ":
            forms.append(r"\+")
        parts.append("(?:" + "|".join(forms) + ")")
    return "".join(parts)


def _decoded_name(name: str) -> str:
    for _ in range(3):  # double encoding, and a little more
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.casefold().replace("-", "_")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        patterns = [_secret_pattern(s) for s in sorted({s for s in secrets if s}, key=len)[::-1]]
        self._secrets = re.compile("|".join(patterns)) if patterns else None

    def redact(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = _PARAMETER.sub(_redact_parameter, text)
        return _HEADER.sub(_redact_header, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse `exc_text` when it is set, so this is what they print.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _redact_parameter(match: re.Match[str]) -> str:
    separator, name, equals, value = match.groups()
    if _decoded_name(name) in _SECRET_PARAMETERS:
        value = REDACTED if value else value
    else:
        # The value may be an encoded URL with parameters of its own.
        value = _PARAMETER.sub(_redact_parameter, value)
    return f"{separator}{name}{equals}{value}"


def _redact_header(match: re.Match[str]) -> str:
    quote = match.group(3) or ""
    return f"{match.group(1)}{match.group(2)}{quote}{REDACTED}{quote}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:  # set, and redacted, by `RedactingFilter`
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter([settings.access_token or "", settings.secret_key]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # yt-dlp's own chatter is useful only when debugging.
    logging.getLogger("ytproxy.extractor").setLevel(
        logging.DEBUG if settings.log_level == "DEBUG" else logging.INFO
    )
