"""The baseline relay: the least a Python relay does (`python -m bench.bare_relay PORT ORIGIN`).

Every GET is passed to ORIGIN (same path, the client's Range) through one aiohttp
`ClientSession` and copied back with `iter_chunked(256 KiB)`. No tokens, no sources,
no limits: what ytproxy's download relay is measured against in `bench.compare`.
"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

CHUNK = 256 * 1024


def build(origin: str) -> web.Application:
    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        headers = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
        async with request.app["session"].get(origin + request.path, headers=headers) as up:
            response = web.StreamResponse(status=up.status)
            for name in ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges"):
                if name in up.headers:
                    response.headers[name] = up.headers[name]
            try:
                await response.prepare(request)
                async for chunk in up.content.iter_chunked(CHUNK):
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionError:  # the client left (wrk, at the end of its run)
                pass
            return response

    app = web.Application()
    app.router.add_get("/{path:.*}", relay)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


if __name__ == "__main__":
    web.run_app(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), print=None,
                access_log=None)  # fmt: skip
