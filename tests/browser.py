"""Driving Debian's Chromium from tests, through Playwright's sync API.

A pytest plugin (`-p tests.browser` in `addopts`). It never downloads a browser: it
launches `/usr/bin/chromium` (override with `YTPROXY_CHROMIUM`), which the test setup
installs from Debian.

Fixtures:

- `browser` (function): a Chromium of the test's own (about a second to start).
- `browser_log` (function): what went wrong in the page — console errors, uncaught
  exceptions, failed requests (other than ones the browser cancelled itself) and HTTP
  error responses. A test that expects one says so
  with `browser_log.allow(r"regex")`; whatever is left fails the test after its body has
  run (a failure, not a teardown error).
- `page` (function): a fresh context (1280×800, English, downloads accepted) and page,
  wired to `browser_log`. `phone_page` is the same at 390×844 with touch.

Browser tests are plain (sync) functions marked `@pytest.mark.browser`: Playwright's
sync API runs its own event loop in a greenlet and refuses to run inside another one,
so they must not be `async def`. Servers they talk to (`app_server`, `origin`) run in
their own threads already. The browser lives for one test only: while Playwright's
sync loop is alive it counts as the thread's running loop, and pytest-asyncio could
not run the async tests that follow (hence no session-wide browser).

Launching Playwright's own browser builds, tracing and video are deliberately not
used: the first needs a download, the others are not worth their weight here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    Request,
    Response,
    sync_playwright,
)

CHROMIUM = os.environ.get("YTPROXY_CHROMIUM", "/usr/bin/chromium")
# We run as root in containers (hence no sandbox) and offline (hence nothing that phones
# home: component updates, sync, background networking, QUIC probes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Let the in-page player start without a user gesture in headless runs.
    "--autoplay-policy=no-user-gesture-required",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def new_context(browser: Browser, *, phone: bool = False, **options: Any) -> BrowserContext:
    """A context sized like a desktop (1280×800) or a phone (390×844)."""
    settings: dict[str, Any] = {
        "viewport": PHONE if phone else DESKTOP,
        "locale": "en-GB",
        "accept_downloads": True,
    }
    if phone:
        settings.update(device_scale_factor=2, is_mobile=True, has_touch=True)
    settings.update(options)
    return browser.new_context(**settings)


@dataclass
class BrowserLog:
    """Everything that went wrong in a test's pages, minus what the test expected."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect problems matching `pattern` (a regex searched in each message)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self.problems.append(f"console error: {message.text} ({where})")

    def _page_error(self, error: Error) -> None:
        self.problems.append(f"uncaught exception: {error.message}")

    def _request_failed(self, request: Request) -> None:
        # ERR_ABORTED is the browser cancelling a request itself (a navigation leaving
        # the page, a player dropping a segment it no longer needs), not a failure.
        if request.failure == "net::ERR_ABORTED":
            return
        self.problems.append(
            f"request failed: {request.method} {request.url} ({request.failure or '?'})"
        )

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(
                f"HTTP {response.status}: {response.request.method} {response.url}"
            )


_LOG_KEY = pytest.StashKey[BrowserLog]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # Checked here rather than in fixture teardown so that a page error fails the test
    # itself (reported as FAILED with the test's name) instead of erroring its teardown.
    result = yield
    log = item.stash.get(_LOG_KEY, None)
    if log is not None:
        unexpected = log.unexpected()
        if unexpected:
            raise AssertionError("the browser reported problems:\n  " + "\n  ".join(unexpected))
    return result


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = launch_chromium(playwright)
    yield launched
    launched.close()


@pytest.fixture
def browser_log(request: pytest.FixtureRequest) -> BrowserLog:
    log = BrowserLog()
    request.node.stash[_LOG_KEY] = log
    return log


@pytest.fixture
def new_page(browser: Browser, browser_log: BrowserLog) -> Iterator[Callable[..., Page]]:
    """A factory for more pages (each in its own context), all watched by `browser_log`."""
    contexts: list[BrowserContext] = []

    def open_page(*, phone: bool = False, **options: Any) -> Page:
        context = new_context(browser, phone=phone, **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        browser_log.watch(page)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    return new_page()


@pytest.fixture
def phone_page(new_page: Callable[..., Page]) -> Page:
    return new_page(phone=True)
