"""Running the real app for tests: uvicorn on an ephemeral port, in its own thread.

Tests talk to it over a real socket (HTTPX's ASGI transport buffers whole bodies, so
streaming and disconnects can only be tested this way). `AppServer.call(coro_fn)`
runs a coroutine on the server's loop, for tests that look inside the app; `core`,
`live`, `tasks`, `transfers` and `sources` are the parts of its lifespan state.

Fixtures: `settings` (test defaults: a fixed SECRET_KEY, private networks allowed
because the origin is on 127.0.0.1, an empty channels file) and `app_server`, a
factory that starts an app from settings and stops it after the test.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from ytproxy.analyse.runner import TaskRunner
from ytproxy.app import create_app
from ytproxy.core import Core
from ytproxy.download.transfers import Transfers
from ytproxy.live.service import LiveService
from ytproxy.server import uvicorn_config
from ytproxy.settings import Settings
from ytproxy.sources import Sources

T = TypeVar("T")

TEST_SECRET = "test-secret-key-0123456789abcdef"


class AppServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # The server `python app.py` runs (ytproxy/server.py), head limit included.
        config = uvicorn_config(self.app, settings, graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"app-{self.port}", daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        finally:
            loop.close()

    def start(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the app failed to start; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError("the app did not start within 30 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    @property
    def state(self) -> dict[str, Any]:
        """The lifespan state (uvicorn keeps it for the requests it copies it into)."""
        state: dict[str, Any] = self._server.lifespan.state
        return state

    @property
    def core(self) -> Core:
        found: Core = self.state["core"]
        return found

    @property
    def live(self) -> LiveService:
        found: LiveService = self.state["live"]
        return found

    @property
    def tasks(self) -> TaskRunner:
        found: TaskRunner = self.state["tasks"]
        return found

    @property
    def transfers(self) -> Transfers:
        found: Transfers = self.state["transfers"]
        return found

    @property
    def sources(self) -> Sources:
        found: Sources = self.state["sources"]
        return found

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
        """Run `fn()` on the server's event loop and return its result."""
        assert self._loop is not None

        async def runner() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(timeout)

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def channels_file(tmp_path: Path) -> Path:
    path = tmp_path / "channels.toml"
    path.write_text("# no channels\n", encoding="utf-8")
    return path


ROOT = Path(__file__).resolve().parent.parent


def run_app_py(cwd: Path, **changes: str | None) -> subprocess.CompletedProcess[str]:
    """`python app.py` as an operator starts it, in `cwd` (no .env there), with the
    environment changed by `changes` (None removes a variable); it is expected to stop."""
    env = {k: v for k, v in os.environ.items() if k not in changes}
    env.update({k: v for k, v in changes.items() if v is not None})
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_settings(channels_file: Path, **changes: Any) -> Settings:
    """The test defaults: a fixed SECRET_KEY, private networks allowed (the origin is on
    127.0.0.1), short yt-dlp timeouts, no rate limit."""
    defaults: dict[str, Any] = {
        "secret_key": TEST_SECRET,
        "allow_private_networks": True,
        "channels_file": channels_file,
        "ytdlp_timeout": 10,
        "ytdlp_max_retries": 1,
        "analyze_rate_limit": 0,
    }
    return Settings(**{**defaults, **changes})


@pytest.fixture
def settings(channels_file: Path) -> Settings:
    return make_settings(channels_file)


@pytest.fixture
def app_server() -> Iterator[Callable[..., AppServer]]:
    started: list[AppServer] = []

    def start(settings: Settings, **changes: Any) -> AppServer:
        server = AppServer(settings.replace(**changes) if changes else settings).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


def cycles_left_by_the_app(run: Callable[[], None]) -> list[str]:
    """The types of the gateway's objects that `run` left in reference cycles (found by
    the garbage collector, saved and looked at): objects of ytproxy or uvicorn types,
    and tasks running their code. The test's clients and the origin make cycles of
    their own, which are not the gateway's. Call `run` once before, for what is made
    once (extractions, pools, caches)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        found = [thing for thing in gc.garbage if _made_by_the_app(thing)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return sorted({type(thing).__qualname__ for thing in found})


def _made_by_the_app(thing: object) -> bool:
    if isinstance(thing, asyncio.Task):
        code = getattr(thing.get_coro(), "cr_code", None)
        return code is not None and (
            "/ytproxy/" in code.co_filename or "uvicorn" in code.co_filename
        )
    module = type(thing).__module__ or ""
    return module.startswith(("ytproxy", "uvicorn"))
