"""Job two, second half: stream a chosen format, or a merged pair, to the user.

    endpoints.py   the routes: links, a merge's inputs, the transfer list
    links.py       signed download and part tokens
    response.py    the streaming ASGI response: status first, disconnects, clean-up
    relay.py       one file in ranged pieces, resuming and re-extracting as needed
    fragments.py   HLS/DASH fragments relayed as one stream
    merge.py       video + audio muxed by ffmpeg on a pipe
    subtitles.py   a subtitle track as WebVTT or SRT (HLS renditions joined)
    archive.py     a playlist's chosen entries as one streamed ZIP
    upstream.py    a format's upstream URL, its requests and its renewal
    transfers.py   the registry of active downloads and its limit
    headers.py     Range, Content-Range, Content-Disposition, Content-Type

Nothing here writes to disk, and nothing holds more than a few `CHUNK_SIZE` blocks
per transfer, plus what the app's HTTP session buffers of an upstream body (at most
twice `ytproxy.upstream.READ_BUFFER`) before it stops reading the socket.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from . import archive, endpoints, subtitles


def routes() -> list[BaseRoute]:
    return [
        Route(
            "/v1/download/part/{token}",
            endpoints.download_part,
            methods=["GET", "HEAD"],
            name="download_part",
        ),
        Route(
            "/v1/download/subtitle/{token}",
            subtitles.subtitle,
            methods=["GET", "HEAD"],
            name="download_subtitle",
        ),
        Route("/v1/download/{token}", endpoints.download, methods=["GET", "HEAD"], name="download"),
        Route("/v1/transfers", endpoints.transfers_api, methods=["GET"], name="transfers"),
        Route("/v1/zip", archive.zip_create, methods=["POST"], name="zip_create"),
        Route(
            "/v1/zip/{token}", archive.zip_download, methods=["GET", "HEAD"], name="zip_download"
        ),
    ]
