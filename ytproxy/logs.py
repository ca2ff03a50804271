"""Logging set-up: text or JSON lines on stderr, with secrets redacted.

`configure_logging(settings)` is called once by the entry point (not by
`create_app`, so tests keep pytest's own capture). A filter replaces the access
token, the secret key and any `token=` query value with `***` in every record,
including uvicorn's access log. It does not ship logs anywhere.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from .settings import Settings

_TOKEN_QUERY = re.compile(r"([?&](?:token|access_token)=)[^&\s\"']+", re.I)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _TOKEN_QUERY.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
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
