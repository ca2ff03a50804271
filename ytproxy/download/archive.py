"""A playlist's chosen entries as one ZIP, built while it is sent.

- `POST /v1/zip` (`zip_create`): `{"task_id": ..., "entries": [ids]}`, or `"page": N`
  for every entry of a page (JSON, or a form with `task_id`, `entries` repeated and
  `page`). The task must be a completed playlist analysis; at most one page
  (`PAGE_SIZE`) of entries. The choice is kept in the cache for `LINK_TTL` under a
  random id, and the answer is `{"zip_url", "entries"}`, a signed link naming that
  id (a form post is redirected there with 303, so a browser downloads it).
- `GET|HEAD /v1/zip/{token}` (`zip_download`): the ZIP, one download for the
  per-client slot rules, its transfer listed with mode `zip`.

The archive is written by zipstream-ng: *stored* members (no compression: video does
not compress) with data descriptors, so no size or CRC is needed before a member's
bytes, and ZIP64 records where a member or the archive passes 4 GiB. Entries are
handled one after another: each is analysed when its turn comes (the cached sources
when there are any, else one extraction, shared with anyone else asking), its best
single-file format is chosen (`recommended.best_muxed`; with `ZIP_ALLOW_MERGE` a
video+audio pair when there is no single file), and its bytes come through the
ordinary download bodies (`RangedRelay` with its resume and re-extraction, the
fragment relay, or the ffmpeg merge), one `CHUNK_SIZE` block at a time, each passed
to the client before the next is read: nothing touches the disk and memory stays
flat whatever the archive's size. The ZIP has no `Content-Length` and no ranges.

An entry that cannot be analysed or opened is skipped; one whose upstream breaks off
for good ends short (its member stays well-formed, with the bytes that came). Either
way it is named, with the reason, in a `README.txt` written as the last member (only
when something is missing). While an entry is being analysed the client receives
nothing; the transfer is marked as working so the idle watchdog does not end it.

This module does not list playlists (`analyse/playlists.py`) or fetch bytes itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Message
from zipstream import ZIP_STORED, ZipStream

# The module, not its names: analyse.endpoints imports this package (its links).
from ..analyse import endpoints as analyse_api
from ..analyse.formats import build_result
from ..analyse.playlists import PAGE_SIZE, pick_entries
from ..analyse.runner import task_runner
from ..analyse.tasks import result_key
from ..core import Core, core
from ..errors import BadRequest, NotFound, YtproxyError
from ..sources import Sources, source_store, url_key
from ..urlguard import check_url
from .endpoints import merge_body, single_body
from .headers import Naming, content_disposition, safe_filename
from .response import Body, DownloadResponse, Head
from .transfers import Transfer, transfers

log = logging.getLogger(__name__)

PURPOSE = "zip"
README = "README.txt"
# How often a transfer busy analysing its next entry tells the watchdog so.
_WORKING_EVERY = 5.0


def zip_path(signer: Any, ttl: float, zip_id: str) -> str:
    return f"/v1/zip/{signer.seal(PURPOSE, {'z': zip_id}, ttl)}"


async def zip_create(request: Request) -> Response:
    svc = core(request)
    task_id, ids, page, is_form = await _read_choice(request)
    status = await task_runner(request).status(task_id)
    if status is None:
        raise NotFound("There is no task with this id (it may have expired)", code="task_not_found")
    result = status["result"]
    if status["state"] != "completed" or result is None:
        raise YtproxyError("The analysis has not completed", code="task_not_ready", status=409)
    if result.get("type") != "playlist":
        raise YtproxyError("This task is not a playlist", code="not_a_playlist", status=422)
    entries = pick_entries(result, ids, page)
    if not entries:
        raise BadRequest(
            "Choose entries of this playlist (their ids) or one of its pages",
            code="invalid_entries",
        )
    zip_id = secrets.token_hex(16)
    job = {
        "title": str(result.get("title") or "playlist"),
        "entries": [{"id": e["id"], "title": e["title"], "url": e["url"]} for e in entries],
    }
    await svc.cache.set(f"zip:{zip_id}", job, svc.settings.link_ttl)
    path = zip_path(svc.signer, svc.settings.link_ttl, zip_id)
    headers = {"Cache-Control": "no-store"}
    if is_form and request.headers.get("hx-request") != "true":
        return RedirectResponse(path, status_code=303, headers=headers)
    return JSONResponse({"zip_url": path, "entries": len(entries)}, headers=headers)


async def zip_download(request: Request) -> Response:
    svc, sources_of, registry = core(request), source_store(request), transfers(request)
    zip_id = str(svc.signer.open(PURPOSE, request.path_params["token"]).get("z", ""))
    job = await svc.cache.get(f"zip:{zip_id}") if zip_id else None
    if job is None:
        raise NotFound("This ZIP link has expired; choose the entries again", code="zip_expired")
    title, entries = str(job["title"]), list(job["entries"])
    head_only = request.method == "HEAD"
    client = request.client.host if request.client else "unknown"
    ids = [str(e["id"]) for e in entries]

    def make_body(transfer: Transfer) -> Body:
        return ZipArchive(request, svc, sources_of, title, entries, transfer)

    def begin() -> Transfer:
        if head_only:
            return registry.probe("zip", ids, title)
        return registry.begin("zip", ids, title, client=client)

    return DownloadResponse(request, make_body, begin)


class _Feed:
    """A member's data as zipstream-ng reads it (a plain iterator), one chunk at a
    time, put there by the async side just before it asks for the next piece."""

    def __init__(self) -> None:
        self.chunk: bytes | None = None
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.chunk is None:
            if self.done:
                raise StopIteration
            raise RuntimeError("the ZIP writer read ahead of the feed")
        chunk, self.chunk = self.chunk, None
        return chunk


class ZipArchive:
    mode = "zip"

    def __init__(
        self,
        request: Request,
        svc: Core,
        sources: Sources,
        title: str,
        entries: list[dict[str, Any]],
        transfer: Transfer,
    ) -> None:
        self._request = request
        self._svc = svc
        self._sources = sources
        self._title = title
        self._entries = entries
        self._transfer = transfer
        self._body: Body | None = None
        self._names: set[str] = set()
        self.missing: list[str] = []

    async def open(self) -> Head:
        return Head(
            200,
            {
                "Content-Type": "application/zip",
                "Content-Disposition": content_disposition(self._title, "zip"),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        archive = ZipStream(compress_type=ZIP_STORED)
        width = len(str(len(self._entries)))
        for number, entry in enumerate(self._entries, start=1):
            label = f"{number:0{width}d} {entry['title']}"
            try:
                body, head, ext = await self._keep_working(self._open_entry(entry, label))
            except (YtproxyError, aiohttp.ClientError, TimeoutError) as exc:
                self.missing.append(f"{label} — not included: {_reason(exc)}\n  {entry['url']}")
                log.info("zip %s: entry %s skipped: %s", self._transfer.id, entry["id"], exc)
                continue
            self._body = body
            try:
                async for piece in self._member(archive, body, head, self._name(label, ext)):
                    yield piece
            finally:
                self._body = None
                await body.aclose()
        if self.missing:
            archive.add(self._readme(), README)
            for piece in archive.all_files():
                yield piece
        for piece in archive.footer():
            yield piece

    async def aclose(self) -> None:
        if self._body is not None:
            await self._body.aclose()

    async def _member(
        self, archive: ZipStream, body: Body, head: Head, name: str
    ) -> AsyncIterator[bytes]:
        length = head.headers.get("Content-Length")
        size = int(length) if length is not None and length.isdigit() else None
        feed = _Feed()
        archive.add(feed, name, size=size)
        writer = archive.file()
        sent = 0
        problem: str | None = None
        try:
            async for chunk in body.chunks():
                feed.chunk = chunk
                sent += len(chunk)
                while feed.chunk is not None:  # the member's header comes first
                    yield next(writer)
        except (YtproxyError, aiohttp.ClientError, TimeoutError) as exc:
            problem = _reason(exc)
        if problem is None and size is not None and sent < size:
            problem = f"the upstream ended after {sent} of {size} bytes"
        if problem is not None:
            self.missing.append(f"{name} — incomplete: {problem}")
            log.info("zip %s: member %s incomplete: %s", self._transfer.id, name, problem)
        feed.done = True
        for piece in writer:  # the data descriptor (or, for an empty member, all of it)
            yield piece

    async def _keep_working(self, opening: Any) -> tuple[Body, Head, str]:
        """Await an entry's opening, telling the watchdog the transfer is busy."""
        job: asyncio.Task[tuple[Body, Head, str]] = asyncio.ensure_future(opening)
        try:
            while True:
                done, _ = await asyncio.wait({job}, timeout=_WORKING_EVERY)
                self._transfer.working()
                if done:
                    return job.result()
        finally:
            if not job.done():
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)

    async def _open_entry(self, entry: dict[str, Any], label: str) -> tuple[Body, Head, str]:
        svc = self._svc
        url = await check_url(
            entry["url"], policy=svc.policy, proxied=bool(svc.settings.global_proxy)
        )
        sources = await self._sources.load(url)
        cached = await svc.cache.get(result_key(url_key(url)))
        if not isinstance(cached, dict) or cached.get("type") != "video":
            cached = build_result({"formats": sources.get("formats") or []})
        format_ids, ext = _choose(cached["recommended"], svc.settings.zip_allow_merge)
        formats = []
        for format_id in format_ids:
            fmt = self._sources.find(sources, format_id)
            if fmt is None:
                raise NotFound(f"The video has no format {format_id!r}", code="format_not_found")
            formats.append(fmt)
        make: Callable[[Transfer], Body]
        if len(formats) == 1:
            naming = Naming(label, ext)

            def make(transfer: Transfer) -> Body:
                return single_body(svc, self._sources, url, formats[0], naming, None, False)

        else:
            make = merge_body(self._request, svc, url, formats, label, ext, False)
        body = make(self._transfer)
        try:
            head = await body.open()
        except BaseException:
            await body.aclose()
            raise
        return body, head, ext

    def _name(self, label: str, ext: str) -> str:
        name = safe_filename(label, ext)
        stem, dot, suffix = name.rpartition(".")
        counter = 2
        while name in self._names or name == README:
            name = f"{stem} ({counter}){dot}{suffix}"
            counter += 1
        self._names.add(name)
        return name

    def _readme(self) -> bytes:
        included = len(self._names)
        lines = [
            f"{self._title}",
            "",
            f"{included} of {len(self._entries)} chosen entries are in this archive.",
            "These are missing or incomplete:",
            "",
            *(f"- {line}" for line in self.missing),
            "",
        ]
        return "\n".join(lines).encode()


def _choose(recommended: dict[str, Any], allow_merge: bool) -> tuple[list[str], str]:
    """The format id(s) and container of an entry's download."""
    single = recommended.get("best_muxed")
    if single is not None:
        return list(single["format_ids"]), str(single.get("ext") or "mp4")
    pair = recommended.get("best_mp4") or recommended.get("best_overall")
    if allow_merge and pair is not None:
        return list(pair["format_ids"]), str(pair.get("ext") or "mkv")
    raise YtproxyError(
        "The video has no single-file format (merging is off on this gateway)",
        code="no_single_file",
        status=422,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, YtproxyError):
        return f"{exc.message} ({exc.code})"
    return type(exc).__name__


async def _read_choice(request: Request) -> tuple[str, list[str] | None, int | None, bool]:
    """(task id, entry ids or None, page or None, whether it came as a form)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await analyse_api.read_body(request)
    if content_type == "application/json":
        data = analyse_api.client_json(body)
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object", code="invalid_json")
        task_id, ids, page = data.get("task_id"), data.get("entries"), data.get("page")
        is_form = False
    elif content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=0, max_fields=PAGE_SIZE + 10)
        except (MultiPartException, ValueError, UnicodeDecodeError):
            raise BadRequest("The form could not be read", code="invalid_form") from None
        task_id, page = form.get("task_id"), form.get("page")
        listed = form.getlist("entries")
        await form.close()
        if any(isinstance(v, UploadFile) for v in [task_id, page, *listed]):
            raise BadRequest("Files are not accepted here", code="invalid_form")
        ids, is_form = (list(listed) or None), True
        if isinstance(page, str):
            page = int(page) if page.isdigit() else -1
    else:
        raise BadRequest(
            "Send the choice as JSON (application/json) or as a form",
            code="unsupported_content_type",
        )
    if not isinstance(task_id, str) or not task_id:
        raise BadRequest("The field `task_id` is required", code="missing_field")
    if page is not None:
        ids = None  # a page's button sends the page, whatever boxes are ticked
    if ids is None and page is None:
        raise BadRequest("Name `entries` (a list of ids) or a `page`", code="missing_field")
    if ids is not None and (
        not isinstance(ids, list)
        or not all(isinstance(i, str) for i in ids)
        or not 1 <= len(ids) <= PAGE_SIZE
    ):
        raise BadRequest(
            f"`entries` must be a list of 1 to {PAGE_SIZE} entry ids", code="invalid_entries"
        )
    if page is not None and (isinstance(page, bool) or not isinstance(page, int)):
        raise BadRequest("`page` must be a page number", code="invalid_entries")
    return task_id, ids, page, is_form
