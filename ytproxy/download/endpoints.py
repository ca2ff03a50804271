"""The download endpoints: a link to a stream, a merge's inputs, the transfer list.

- `GET|HEAD /v1/download/{token}` (`download`): reads the signed link, finds the
  format(s) in the video's sources (cached, or extracted once), and answers with the
  body that fits: the ranged relay for a plain file, the fragment relay for HLS/DASH
  fragments, the ffmpeg merge for a video+audio pair.
- `GET|HEAD /v1/download/part/{token}` (`download_part`): one input of a running
  merge, read by ffmpeg over loopback through the ranged relay. Only served while
  that merge is active; it counts as part of it, not as a download of its own.
- `GET /v1/transfers` (`transfers`): the active downloads as JSON.

Everything that can be checked cheaply (token, format, protocol, ffmpeg, the limits)
is checked here and raised as a JSON error; the rest happens in `DownloadResponse`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core import Core, core
from ..errors import Forbidden, NotFound, ServiceUnavailable, YtproxyError
from ..settings import Settings
from ..sources import Sources, source_store
from ..web import scope_header
from .fragments import DASH_PROTOCOLS, HLS_PROTOCOLS, FragmentRelay, unsupported
from .headers import ByteRange, Naming, parse_range
from .links import part_path, read_link, read_part
from .merge import MergedStream, choose_container
from .relay import RangedRelay
from .response import Body, DownloadResponse
from .transfers import Transfer, Transfers, transfers
from .upstream import Upstream

_FILE_PROTOCOLS = frozenset({"http", "https"})


async def download(request: Request) -> Response:
    scope = request.scope
    svc, sources_of, registry = core(request), source_store(request), transfers(request)
    link = read_link(svc.signer, scope["path_params"]["token"])
    source_url = str(link.get("u") or "")
    format_ids = [str(f) for f in link.get("f") or []]
    if not source_url or not 1 <= len(format_ids) <= 2:
        raise Forbidden("This link is not valid", code="invalid_token")
    head_only = scope["method"] == "HEAD"
    client = scope["client"][0] if scope.get("client") else "unknown"
    if not head_only:
        # Checked again when the transfer registers; this spares a needless extraction.
        registry.admit(client)
    sources = await sources_of.load(source_url)
    formats = [_find(sources_of, sources, format_id) for format_id in format_ids]
    title = str(link.get("t") or sources.get("title") or "video")
    wanted = str(link.get("x") or "")
    if len(formats) == 1:
        fmt = formats[0]
        naming = Naming(title, wanted or str(fmt.get("ext") or "mp4"), _audio_only(fmt))
        byte_range = parse_range(scope_header(scope, b"range"))
        mode = mode_of(fmt)

        def one_format(transfer: Transfer) -> Body:
            return single_body(svc, sources_of, source_url, fmt, naming, byte_range, head_only)

        make_body: Callable[[Transfer], Body] = one_format
    else:
        mode = "merge"
        make_body = merge_body(request, svc, source_url, formats, title, wanted, head_only)
    begin = _begin(registry, mode, format_ids, title, client, head_only)
    return DownloadResponse(request, make_body, begin)


async def download_part(request: Request) -> Response:
    svc, sources_of, registry = core(request), source_store(request), transfers(request)
    part = read_part(svc.signer, request.path_params["token"])
    parent = registry.get(str(part.get("m")))
    if parent is None:
        raise NotFound("The merge this input belongs to has ended", code="transfer_not_found")
    source_url, format_id = str(part.get("u")), str(part.get("f"))
    fmt = _find(sources_of, await sources_of.load(source_url), format_id)
    mode_of(fmt)
    naming = Naming(parent.title, str(fmt.get("ext") or "bin"), _audio_only(fmt))
    byte_range = parse_range(scope_header(request.scope, b"range"))
    head_only = request.method == "HEAD"

    def make_body(transfer: Transfer) -> Body:
        return single_body(svc, sources_of, source_url, fmt, naming, byte_range, head_only)

    def begin() -> Transfer:
        return registry.begin("part", [format_id], parent.title, parent=parent.id)

    return DownloadResponse(request, make_body, begin)


async def transfers_api(request: Request) -> Response:
    registry = transfers(request)
    body = {"active": registry.count(), "limit": registry.limit, "transfers": registry.listing()}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _find(store: Sources, sources: dict[str, Any], format_id: str) -> dict[str, Any]:
    fmt = store.find(sources, format_id)
    if fmt is None:
        raise NotFound(f"The video has no format {format_id!r}", code="format_not_found")
    return fmt


def mode_of(fmt: dict[str, Any]) -> str:
    protocol = str(fmt.get("protocol") or "https")
    if protocol in _FILE_PROTOCOLS:
        return "single"
    if protocol in HLS_PROTOCOLS or protocol in DASH_PROTOCOLS:
        return "fragments"
    raise unsupported(f"Formats delivered by {protocol!r} cannot be downloaded here")


def _audio_only(fmt: dict[str, Any]) -> bool:
    return fmt.get("vcodec") == "none" and fmt.get("acodec") not in (None, "none")


def single_body(
    svc: Core,
    sources: Sources,
    source_url: str,
    fmt: dict[str, Any],
    naming: Naming,
    byte_range: ByteRange | None,
    head_only: bool,
) -> Body:
    upstream = Upstream(svc.http, svc.metrics, sources, source_url, fmt, pieces=svc.pieces)
    chunk = svc.settings.chunk_size
    if mode_of(fmt) == "fragments":
        return FragmentRelay(upstream, chunk_size=chunk, naming=naming, head_only=head_only)
    return RangedRelay(
        upstream,
        chunk_size=chunk,
        piece_size=svc.settings.download_piece_size,
        byte_range=byte_range,
        naming=naming,
        head_only=head_only,
    )


def merge_body(
    request: Request,
    svc: Core,
    source_url: str,
    formats: list[dict[str, Any]],
    title: str,
    wanted: str,
    head_only: bool,
) -> Callable[[Transfer], Body]:
    ffmpeg = svc.probes.ffmpeg
    if not ffmpeg.found:
        raise ServiceUnavailable(
            "ffmpeg is not installed on the server, so formats cannot be merged",
            code="ffmpeg_missing",
        )
    video, audio = _pair(formats)
    for fmt in (video, audio):
        mode_of(fmt)
    container = choose_container(video.get("vcodec"), audio.get("acodec"), wanted)
    naming = Naming(title, container)
    base = loopback_base(request, svc.settings)

    def make_body(transfer: Transfer) -> Body:
        inputs = [
            base + part_path(
                svc.signer, svc.settings.link_ttl, source_url=source_url,
                format_id=str(fmt["format_id"]), transfer=transfer.id,
            )
            for fmt in (video, audio)
        ]  # fmt: skip
        return MergedStream(
            ffmpeg=ffmpeg.path or "ffmpeg",
            inputs=inputs,
            container=container,
            naming=naming,
            chunk_size=svc.settings.chunk_size,
            transfer=transfer,
            head_only=head_only,
        )

    return make_body


def _pair(formats: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(video, audio) of a pair given in either order."""
    first, second = formats
    if first.get("vcodec") in (None, "none") and second.get("vcodec") not in (None, "none"):
        first, second = second, first
    if first.get("vcodec") in (None, "none") or second.get("acodec") in (None, "none"):
        raise YtproxyError(
            "A merge needs one format with video and one with audio",
            code="invalid_pair",
            status=422,
        )
    return first, second


def loopback_base(request: Request, settings: Settings) -> str:
    """This gateway's own address, as the request reached it (for ffmpeg's inputs)."""
    server = request.scope.get("server")
    host, port = (server[0], server[1]) if server and server[1] else (settings.host, settings.port)
    if host in {"", "0.0.0.0"}:  # noqa: S104 - a listening address, not a bind
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _begin(
    registry: Transfers,
    mode: str,
    format_ids: list[str],
    title: str,
    client: str,
    head_only: bool,
) -> Callable[[], Transfer]:
    if head_only:
        return lambda: registry.probe(mode, format_ids, title)
    return lambda: registry.begin(mode, format_ids, title, client=client)
