"""The shared clients of one app, built in the lifespan and reached by handlers.

`Core` is frozen: the settings and the clients every part of the app may use (the
aiohttp session, one per app, honouring `GLOBAL_PROXY`; the download relay's piece
client, when there is no `GLOBAL_PROXY`; the cache; the extractor and its thread pool;
the metrics registry; the token signer; the address policy; the templates; the probes
of external programs). Each job package builds its own service from the few of these
it needs (`app.lifespan`), and publishes it in the lifespan state beside `core`;
`core(request)` is the typed accessor for this one.

`Readiness` is the one mutable piece of that state: whether start-up has finished and
shutdown has not begun (`/ready`).

Nothing here opens or closes anything; `app.lifespan` does, in order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
from starlette.requests import HTTPConnection

from .cache import Cache
from .extractor import Extractor
from .metrics import Metrics
from .netguard import AddressPolicy, guarded_connector, redirect_limit
from .pieces import PieceClient
from .probes import Probes
from .settings import Settings
from .signing import Signer
from .upstream import CONNECT_TIMEOUT, READ_BUFFER, READ_TIMEOUT
from .web import Templates


@dataclasses.dataclass(frozen=True)
class Core:
    settings: Settings
    metrics: Metrics
    cache: Cache
    http: aiohttp.ClientSession
    pieces: PieceClient | None
    extractor: Extractor
    signer: Signer
    policy: AddressPolicy
    templates: Templates
    probes: Probes


def core(conn: HTTPConnection) -> Core:
    found: Core = conn.scope["state"]["core"]
    return found


@dataclasses.dataclass
class Readiness:
    ready: bool = False


def readiness(conn: HTTPConnection) -> Readiness:
    """Start-up's progress; not ready when the lifespan has not run at all."""
    state: dict[str, Any] = conn.scope.get("state") or {}
    found = state.get("readiness")
    return found if isinstance(found, Readiness) else Readiness()


def open_http_session(settings: Settings, policy: AddressPolicy) -> aiohttp.ClientSession:
    """The app's one outbound HTTP session; all relay traffic goes through the proxy.

    Its connector refuses the addresses `policy` refuses at connect time (`netguard`),
    on every redirect hop, of which there may be at most `netguard.MAX_REDIRECTS`."""
    timeout = aiohttp.ClientTimeout(
        total=None, connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
    )
    proxy = settings.global_proxy
    return aiohttp.ClientSession(
        connector=guarded_connector(settings, policy),
        timeout=timeout,
        proxy=None if proxy is None or proxy.startswith("socks") else proxy,
        trace_configs=[redirect_limit()],
        read_bufsize=READ_BUFFER,
    )


def open_pieces(settings: Settings, policy: AddressPolicy) -> PieceClient | None:
    """The download relay's piece client (`pieces`), or None with `GLOBAL_PROXY`: it
    connects only directly, so through a proxy the session carries the pieces."""
    if settings.global_proxy is not None:
        return None
    return PieceClient(policy)
