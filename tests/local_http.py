"""`serving(app)`: a small aiohttp app on a free loopback port, on the test's own loop.

For tests whose upstream must misbehave in one precise way (trickle, hold, lie about
its length, redirect forever) that the shared origin (`tests/origin`) has no reason to
know. Yields the base URL; the app is cleaned up when the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(app: web.Application, **runner_options: Any) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
