"""Images through the gateway: video thumbnails and channel logos.

The people this gateway serves cannot reach the sites that host these images
(YouTube's `i.ytimg.com` is as unreachable as googlevideo), so pages and the M3U point
at `/v1/image/<token>` instead. The token names the image URL (signed and opaque like
every relayed URL), so the route is not an open proxy. Tokens are deterministic and
renewed daily, so a browser's cache keeps working across page loads.

`image_relay` fetches through the app's session (`GLOBAL_PROXY` applies), refuses
private addresses unless `ALLOW_PRIVATE_NETWORKS` is set (an image URL comes from a
remote page, so it is as untrusted as a submitted one), accepts only `image/*`
answers of at most `MAX_IMAGE_BYTES`, and lets the browser cache the result for a day.

It does not resize, convert or keep images on the server.
"""

from __future__ import annotations

import logging
import math
import time

import aiohttp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .core import core
from .errors import UpstreamError
from .signing import Signer
from .urlguard import check_url

log = logging.getLogger(__name__)

PURPOSE = "image"
MAX_IMAGE_BYTES = 8 * 1024 * 1024
_DAY = 86400
_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=10)


def image_path(signer: Signer, url: str) -> str:
    """`/v1/image/<token>` for an image URL; the same all day, valid one to two days."""
    expires = (math.floor(time.time() / _DAY) + 2) * _DAY
    return f"/v1/image/{signer.seal(PURPOSE, {'u': url}, 0, expires=expires)}"


async def image_relay(request: Request) -> Response:
    svc = core(request)
    url = str(svc.signer.open(PURPOSE, request.path_params["token"]).get("u", ""))
    await check_url(
        url,
        policy=svc.policy,
        proxied=svc.settings.global_proxy is not None,
    )
    try:
        async with svc.http.get(
            url, timeout=_TIMEOUT, headers={"Accept": "image/*"}, allow_redirects=True
        ) as response:
            svc.metrics.upstream_requests.labels("image", str(response.status)).inc()
            if response.status != 200:
                raise _unavailable(f"the image host answered {response.status}")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if not content_type.startswith("image/"):
                raise _unavailable("the address is not an image")
            if (response.content_length or 0) > MAX_IMAGE_BYTES:
                raise _unavailable("the image is too large")
            body = bytearray()
            async for piece in response.content.iter_chunked(64 * 1024):
                body += piece
                if len(body) > MAX_IMAGE_BYTES:
                    raise _unavailable("the image is too large")
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("image fetch failed: %s", type(exc).__name__)
        raise _unavailable("the image host could not be reached") from None
    svc.metrics.relayed_bytes.labels("image").inc(len(body))
    return Response(
        bytes(body),
        media_type=content_type,
        headers={
            "Cache-Control": "private, max-age=86400",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


def _unavailable(reason: str) -> UpstreamError:
    return UpstreamError(f"The image is not available: {reason}", code="image_unavailable")


def routes() -> list[BaseRoute]:
    return [Route("/v1/image/{token}", image_relay, name="image")]
