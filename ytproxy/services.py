"""The long-lived parts of one app, built in the lifespan and reached by handlers.

`Services` holds the settings and every client the app owns: the aiohttp session
(one per app, honouring `GLOBAL_PROXY`), the cache, the extractor and its thread
pool, the metrics registry, the token signer, the templates, and the component of
each job (live channels, analyse tasks, downloads). `services(request)` is the one
typed accessor handlers use.

It does not open or close anything itself; `app.lifespan` does, in order.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import aiohttp
from starlette.requests import HTTPConnection

from .cache import Cache
from .extractor import Extractor
from .metrics import Metrics
from .netguard import AddressPolicy, guarded_connector, redirect_limit
from .settings import Settings
from .signing import Signer
from .web import Templates

if TYPE_CHECKING:
    from .analyse.runner import TaskRunner
    from .download.transfers import Transfers
    from .live.service import LiveService
    from .system import Probes


@dataclasses.dataclass
class Services:
    settings: Settings
    metrics: Metrics
    cache: Cache
    http: aiohttp.ClientSession
    extractor: Extractor
    signer: Signer
    templates: Templates
    probes: Probes
    policy: AddressPolicy
    # The jobs' components need the services above, so they are attached after.
    live: LiveService = dataclasses.field(init=False)
    analyse: TaskRunner = dataclasses.field(init=False)
    transfers: Transfers = dataclasses.field(init=False)


def services(conn: HTTPConnection) -> Services:
    found: Services = conn.app.state.services
    return found


def open_http_session(settings: Settings) -> aiohttp.ClientSession:
    """The app's one outbound HTTP session; all relay traffic goes through the proxy.

    Its connector refuses private addresses at connect time (`netguard`), on every
    redirect hop, of which there may be at most `netguard.MAX_REDIRECTS`."""
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=30)
    policy = AddressPolicy.from_settings(settings)
    proxy = settings.global_proxy
    return aiohttp.ClientSession(
        connector=guarded_connector(settings, policy),
        timeout=timeout,
        proxy=None if proxy is None or proxy.startswith("socks") else proxy,
        trace_configs=[redirect_limit()],
    )
