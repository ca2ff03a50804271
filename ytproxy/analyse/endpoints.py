"""HTTP endpoints of the analyse job: submit a URL, poll a task.

- `POST /v1/analyze` (`analyze`): body `{"url": ...}` as JSON, or a form with a `url`
  field (urlencoded or multipart). Answers `202 {"task_id", "status_url"}` with a
  `Location` header as soon as the task is registered, before extraction starts; an
  HTMX request gets the `_task.html` progress fragment instead, also with 202.
- `GET /v1/tasks/{task_id}` (`task_status`): `{task_id, url, state, progress, stage,
  error, result}`; an HTMX request gets the fragment (progress, result card or error).
  Download links are made here, each time a result is served, so they always carry
  their full `LINK_TTL`. A playlist's result holds one page of its entries:
  `?page=N` (from 1) and `?per_page=M` (1–100, default 100) choose it (`invalid_page`).

Input errors (all 4xx, `{"error": {"code", "message"}}`): `payload_too_large` (413,
body over `MAX_BODY` bytes), `unsupported_content_type`, `invalid_json`,
`invalid_form`, `missing_field`, `invalid_url`, `url_too_long`, `unresolvable_host`,
`invalid_page` (400), `forbidden_address` (403), `rate_limited` and `queue_full` (429, with
`Retry-After`), `task_not_found` (404).

This module parses and renders; the rules live in `ytproxy/urlguard.py`, the work in
`runner.py`.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from ..captions import KINDS
from ..core import Core, core
from ..download.links import download_path, subtitle_path
from ..errors import BadRequest, NotFound, PayloadTooLarge, TooManyRequests
from ..images import image_path
from ..urlguard import check_url
from .playlists import PAGE_SIZE, page_count, page_of
from .runner import task_runner

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
# Deepest nesting of arrays and objects read from a client's JSON; the API needs 1.
MAX_JSON_DEPTH = 32
_JSON = "application/json"
_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_NO_STORE = {"Cache-Control": "no-store"}


async def analyze(request: Request) -> Response:
    svc = core(request)
    await _rate_limit(request, svc)
    submitted = await read_url(request)
    url = await check_url(
        submitted,
        policy=svc.policy,
        proxied=bool(svc.settings.global_proxy),
    )
    task_id = await task_runner(request).submit(url)
    status_url = request.url_for("task_status", task_id=task_id).path
    headers = {**_NO_STORE, "Location": status_url}
    if _is_htmx(request):
        status = await task_runner(request).status(task_id)
        if status is not None:
            # A cached URL completes at once: its result card needs its download links.
            if status["result"] is not None:
                status["result"] = served_result(svc, status["url"], status["result"])
            return _fragment(request, svc, status, 202, headers)
    return JSONResponse(
        {"task_id": task_id, "status_url": status_url}, status_code=202, headers=headers
    )


async def task_status(request: Request) -> Response:
    svc = core(request)
    status = await task_runner(request).status(request.path_params["task_id"])
    if status is None:
        raise NotFound("There is no task with this id (it may have expired)", code="task_not_found")
    if status["result"] is not None:
        page, per_page = _page_params(request)
        status["result"] = served_result(svc, status["url"], status["result"], page, per_page)
    if _is_htmx(request):
        return _fragment(request, svc, status, 200, _NO_STORE)
    return JSONResponse(status, headers=_NO_STORE)


async def read_url(request: Request) -> object:
    """The submitted `url` value (not yet validated) from a JSON or form body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _JSON and content_type not in _FORMS:
        raise BadRequest(
            "Send the URL as JSON (application/json) or as a form", code="unsupported_content_type"
        )
    body = await read_body(request)
    if content_type == _JSON:
        data = client_json(body)
        if not isinstance(data, dict):
            raise BadRequest('The body must be a JSON object: {"url": "..."}', code="invalid_json")
        value: object = data.get("url")
    else:
        value = await _form_field(request, body, "url")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRequest("The field `url` is required", code="missing_field")
    return value


def served_result(
    svc: Core, url: str, result: dict[str, Any], page: int = 1, per_page: int = PAGE_SIZE
) -> dict[str, Any]:
    """A result as a client gets it: a video's with its links, a playlist's one page."""
    if result.get("type") == "playlist":
        return playlist_page(svc, result, page, per_page)
    return with_links(svc, url, result)


def playlist_page(svc: Core, result: dict[str, Any], page: int, per_page: int) -> dict[str, Any]:
    """Page `page` of a playlist result, its thumbnails through the gateway."""
    if page > page_count(result, per_page):
        raise BadRequest(
            f"This playlist has {page_count(result, per_page)} pages", code="invalid_page"
        )
    served = page_of(result, page, per_page)
    served["thumbnail_url"] = (
        image_path(svc.signer, str(result["thumbnail"])) if result.get("thumbnail") else None
    )
    for entry in served["entries"]:
        entry["thumbnail_url"] = (
            image_path(svc.signer, str(entry["thumbnail"])) if entry.get("thumbnail") else None
        )
    return served


def _page_params(request: Request) -> tuple[int, int]:
    values = []
    for name, default, high in (("page", 1, 1_000_000), ("per_page", PAGE_SIZE, PAGE_SIZE)):
        raw = request.query_params.get(name, str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= high:
            raise BadRequest(
                f"`{name}` must be a whole number from 1 to {high}", code="invalid_page"
            )
        values.append(int(raw))
    return values[0], values[1]


def with_links(svc: Core, url: str, result: dict[str, Any]) -> dict[str, Any]:
    """A copy of `result` with a fresh `download_url` on every format and suggestion,
    `vtt_url` and `srt_url` on every downloadable subtitle track, and `thumbnail_url`,
    the thumbnail through the gateway."""
    served = copy.deepcopy(result)
    served["thumbnail_url"] = (
        image_path(svc.signer, str(result["thumbnail"])) if result.get("thumbnail") else None
    )
    signer, ttl, title = svc.signer, svc.settings.link_ttl, str(result.get("title") or "video")
    for group in served["formats"].values():
        for fmt in group:
            fmt["download_url"] = download_path(
                signer,
                ttl,
                source_url=url,
                format_ids=[fmt["format_id"]],
                title=title,
                ext=str(fmt.get("ext") or "mp4"),
            )
    for choice in served["recommended"].values():
        if choice is not None:
            choice["download_url"] = download_path(
                signer,
                ttl,
                source_url=url,
                format_ids=list(choice["format_ids"]),
                title=title,
                ext=str(choice["ext"] or "mp4"),
            )
    for kind in KINDS:
        for track in served.get(kind) or []:
            if track.get("downloadable"):
                for ext in ("vtt", "srt"):
                    track[f"{ext}_url"] = subtitle_path(
                        signer,
                        ttl,
                        source_url=url,
                        kind=kind,
                        code=str(track["code"]),
                        title=title,
                        ext=ext,
                    )
    return served


def client_json(body: bytes) -> object:
    """A client's JSON body, parsed; `invalid_json` (400) if it is not JSON or is nested
    deeper than `MAX_JSON_DEPTH`.

    `json.loads` recurses once per level, so 5,000 nested brackets (5 KB) were a
    RecursionError and a 500; the depth is checked first by a linear scan.
    """
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError:
        raise BadRequest("The body is not valid JSON", code="invalid_json") from None
    if _too_deep(text):
        raise BadRequest(
            f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep", code="invalid_json"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: cannot happen after the scan
        raise BadRequest("The body is not valid JSON", code="invalid_json") from None


def _too_deep(text: str) -> bool:
    """Whether arrays and objects in `text` nest deeper than `MAX_JSON_DEPTH`, read the
    way the JSON parser would read them (brackets in strings do not count)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False  # cannot nest deeper than it has brackets: most bodies stop here
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number", code="invalid_content_length")
        if int(declared) > MAX_BODY:
            raise _too_large()
    body = bytearray()
    # Chunked bodies have no Content-Length: count while reading, stop at the limit.
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _too_large()
    return bytes(body)


async def _form_field(request: Request, body: bytes, name: str) -> object:
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=0, max_fields=20)
    except (MultiPartException, ValueError, UnicodeDecodeError):
        raise BadRequest("The form could not be read", code="invalid_form") from None
    value = form.get(name)
    await form.close()
    if isinstance(value, UploadFile):
        raise BadRequest("`url` must be a text field, not a file", code="invalid_url")
    return value


async def _rate_limit(request: Request, svc: Core) -> None:
    limit = svc.settings.analyze_rate_limit
    if not limit:
        return
    client = request.client.host if request.client else "unknown"
    now = time.time()
    window = int(now // 60)
    count = await svc.cache.incr(f"rate:analyze:{client}:{window}", 60)
    if count > limit:
        raise TooManyRequests(
            f"More than {limit} analyses a minute from this address; wait a little",
            code="rate_limited",
            retry_after=max(1, 60 - int(now % 60)),
        )


def _fragment(
    request: Request, svc: Core, status: dict[str, Any], code: int, headers: dict[str, str]
) -> Response:
    return svc.templates.render(
        request, "_task.html", {"task": status}, status=code, headers=headers
    )


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"The body is larger than {MAX_BODY} bytes", code="payload_too_large")
