"""The project's exception tree: every error a client can see, with its status and code.

    YtproxyError                      500 internal_error
    ├── BadRequest                    400 (invalid_json, missing_field, invalid_url,
    │   │                                  invalid_host, ...)
    │   └── PayloadTooLarge           413 payload_too_large
    ├── Unauthorized                  401 auth_required
    ├── Forbidden                     403 (invalid_token, token_expired, forbidden_address,
    │                                      cross_site_request)
    ├── NotFound                      404 (not_found, channel_not_found, task_not_found, ...)
    ├── RangeNotSatisfiable           416 range_not_satisfiable
    ├── MisdirectedRequest            421 host_not_allowed
    ├── TooManyRequests               429 (queue_full, rate_limited, too_many_downloads,
    │                                      too_many_downloads_per_client, login_throttled)
    ├── ServiceUnavailable            503 (channel_offline, too_many_viewers, not_ready)
    ├── ExtractionError               422 / 404 / 403 / 504 / 502, by code (see below)
    └── UpstreamError                 502 upstream_error, 504 upstream_timeout

`ExtractionError` carries one of the stable codes that yt-dlp failures map to
(`extractor.py` does the mapping): unsupported_url, video_unavailable,
private_video, login_required, geo_blocked, live_not_started, playlist_not_supported,
upstream_timeout, network_error, extraction_failed.

Each error renders as `{"error": {"code", "message"}}` (see `web.error_response`).
Messages are written for people: they are shown in the web UI as they are.
This module defines errors; it does not log or render them.
"""

from __future__ import annotations

from typing import ClassVar


class YtproxyError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status_code = status or self.status
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, str], status: int | None = None) -> YtproxyError:
        """Rebuild an error that crossed a process boundary (cache, single-flight)."""
        return YtproxyError(
            data.get("message", "error"), code=data.get("code", "internal_error"), status=status
        )


class BadRequest(YtproxyError):
    status = 400
    default_code = "bad_request"


class PayloadTooLarge(BadRequest):
    status = 413
    default_code = "payload_too_large"


class Unauthorized(YtproxyError):
    status = 401
    default_code = "auth_required"


class Forbidden(YtproxyError):
    status = 403
    default_code = "forbidden"


class NotFound(YtproxyError):
    status = 404
    default_code = "not_found"


class RangeNotSatisfiable(YtproxyError):
    status = 416
    default_code = "range_not_satisfiable"

    def __init__(self, message: str, *, size: int | None) -> None:
        super().__init__(message)
        self.size = size


class MisdirectedRequest(YtproxyError):
    """The Host header names a host this gateway does not answer to (`ALLOWED_HOSTS`)."""

    status = 421
    default_code = "host_not_allowed"


class TooManyRequests(YtproxyError):
    status = 429
    default_code = "too_many_requests"


class ServiceUnavailable(YtproxyError):
    status = 503
    default_code = "unavailable"


EXTRACTION_STATUS: dict[str, int] = {
    "unsupported_url": 422,
    "playlist_not_supported": 422,
    "video_unavailable": 404,
    "private_video": 403,
    "login_required": 403,
    "geo_blocked": 451,
    "live_not_started": 409,
    "channel_not_live": 409,
    "upstream_timeout": 504,
    "network_error": 502,
    "extraction_failed": 502,
    "forbidden_address": 403,
}


class ExtractionError(YtproxyError):
    """yt-dlp could not get the video; `code` says why, in one of EXTRACTION_STATUS."""

    default_code = "extraction_failed"

    def __init__(self, message: str, *, code: str = "extraction_failed") -> None:
        super().__init__(message, code=code, status=EXTRACTION_STATUS.get(code, 502))

    @property
    def transient(self) -> bool:
        """Worth retrying: the network or the upstream may answer next time."""
        return self.code in {"upstream_timeout", "network_error"}


class UpstreamError(YtproxyError):
    status = 502
    default_code = "upstream_error"
