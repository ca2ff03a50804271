"""The settings page and `/v1/cookies`: cookies uploaded from the browser or curl.

- `GET /settings`: the page (what the cookies in use are: count, domains, age,
  signed in or not), with an upload form (HTMX `PUT /v1/cookies`, multipart) and a
  delete button. Without JavaScript the form posts to `POST /settings` instead.
- `GET /v1/cookies`: the same facts as JSON.
- `PUT /v1/cookies`: a `cookies.txt` as the raw body (`curl -T cookies.txt`) or as the
  `file` field of a multipart form; checked and stored by `cookies.py`, then used by
  yt-dlp from the next extraction on. Answers the facts, never the file.
- `DELETE /v1/cookies`: removes the file.

All of it answers `403 cookies_need_token` on a gateway without `ACCESS_TOKEN`: with
nobody to keep out, anyone who reaches the port could read what account the gateway
uses or replace its cookies with theirs. The file is written to `YTDLP_COOKIES_FILE`,
else `DATA_DIR/cookies.txt` (`Settings.cookies_target`). The access and cross-site
guards (`access.py`) already stand in front of every method here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from . import cookies
from .access import base_url
from .core import Core, core
from .errors import BadRequest, Forbidden, PayloadTooLarge, YtproxyError

log = logging.getLogger(__name__)

# A multipart body carries the file plus its boundaries and part headers.
_MULTIPART_SLACK = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


async def settings_page(request: Request) -> Response:
    svc = _guarded(request)
    notice: str | None = None
    if request.method == "POST":
        notice = await _form_action(request, svc)
        return RedirectResponse(f"{request.url.path}?done={notice}", status_code=303)
    done = request.query_params.get("done")
    if done in ("saved", "deleted"):
        notice = done
    context = {
        "state": await _state(svc),
        "notice": notice,
        "base": base_url(request, svc.settings.public_base_url),
    }
    return svc.templates.render(request, "settings.html", context, headers=_NO_STORE)


async def cookies_endpoint(request: Request) -> Response:
    svc = _guarded(request)
    if request.method == "PUT":
        summary = await _upload(svc, await _read_file(request))
        return await _answer(request, svc, "saved", summary)
    if request.method == "DELETE":
        await _delete(svc)
        return await _answer(request, svc, "deleted")
    return JSONResponse(await _state(svc), headers=_NO_STORE)


def _guarded(request: Request) -> Core:
    svc = core(request)
    if svc.settings.access_token is None:
        raise Forbidden(
            "Cookies can only be uploaded to a gateway with ACCESS_TOKEN set: without it, "
            "anyone who reaches it could replace or misuse them",
            code="cookies_need_token",
        )
    return svc


async def _state(svc: Core) -> dict[str, Any]:
    settings = svc.settings
    facts = await asyncio.to_thread(cookies.status, settings.cookies_file())
    facts["uploads_to"] = (
        "YTDLP_COOKIES_FILE" if settings.ytdlp_cookies_file is not None else "DATA_DIR"
    )
    return facts


async def _upload(svc: Core, data: bytes) -> cookies.Summary:
    settings = svc.settings
    text, summary = cookies.read_upload(data, settings.cookies_extra_domains)
    target = settings.cookies_target
    try:
        await asyncio.to_thread(cookies.store, target, text)
    except OSError as exc:
        log.warning("cannot write the uploaded cookies: %s", exc.strerror or type(exc).__name__)
        raise _not_writable(exc) from None
    log.info(
        "cookies uploaded: %d cookie(s) for %d domain(s), %d dropped, signed in: %s",
        summary.cookies,
        len(summary.domains),
        summary.dropped,
        summary.signed_in,
    )
    return summary


async def _delete(svc: Core) -> None:
    try:
        removed = await asyncio.to_thread(cookies.remove, svc.settings.cookies_target)
    except OSError as exc:
        raise _not_writable(exc) from None
    log.info("cookies deleted" if removed else "cookies: nothing to delete")


def _not_writable(exc: OSError) -> YtproxyError:
    return YtproxyError(
        f"The gateway cannot write its cookies file ({exc.strerror or 'error'}): put "
        "YTDLP_COOKIES_FILE (or DATA_DIR) on a writable volume",
        code="cookies_not_writable",
    )


async def _answer(
    request: Request, svc: Core, done: str, summary: cookies.Summary | None = None
) -> Response:
    state = await _state(svc)
    if request.headers.get("hx-request") == "true":
        return svc.templates.render(
            request, "_cookies.html", {"state": state, "notice": done}, headers=_NO_STORE
        )
    body: dict[str, Any] = {**state, "done": done}
    if summary is not None:
        body["dropped"] = summary.dropped
    return JSONResponse(body, headers=_NO_STORE)


async def _form_action(request: Request, svc: Core) -> str:
    """The no-JavaScript form: a `file` to upload, or `delete`."""
    body = await _read_body(request, cookies.MAX_UPLOAD + _MULTIPART_SLACK)
    fields = await _form(request, body)
    if "delete" in fields:
        await _delete(svc)
        return "deleted"
    await _upload(svc, _file_of(fields))
    return "saved"


async def _read_file(request: Request) -> bytes:
    """The cookies.txt of a PUT: the `file` field of a multipart form, or the body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        return await _read_body(request, cookies.MAX_UPLOAD)
    body = await _read_body(request, cookies.MAX_UPLOAD + _MULTIPART_SLACK)
    return _file_of(await _form(request, body))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large()
    return bytes(body)


async def _form(request: Request, body: bytes) -> dict[str, bytes | str]:
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=5)
    except (MultiPartException, ValueError, UnicodeDecodeError):
        raise BadRequest("The form could not be read", code="invalid_form") from None
    fields: dict[str, bytes | str] = {}
    try:
        for name, value in form.multi_items():
            fields[name] = await value.read() if isinstance(value, UploadFile) else value
    finally:
        await form.close()
    return fields


def _file_of(fields: dict[str, bytes | str]) -> bytes:
    value = fields.get("file")
    if isinstance(value, str):
        return value.encode()
    if not value:
        raise BadRequest("Choose a cookies.txt file to upload", code="missing_field")
    return value


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"A cookies file may be at most {cookies.MAX_UPLOAD} bytes")


def routes() -> list[BaseRoute]:
    return [
        Route("/settings", settings_page, methods=["GET", "POST"], name="settings"),
        Route("/v1/cookies", cookies_endpoint, methods=["GET", "PUT", "DELETE"], name="cookies"),
    ]
