"""`make screenshots`: PNGs of every page at desktop and phone widths, for review.

Starts the test origin (a local googlevideo imitation with ffmpeg-made media) and the
app on ephemeral ports, drives Debian's Chromium through each page — the start page,
a completed analysis of the origin's DASH video, an inline error, the live channels
page, diagnostics (when the app has it), the login page and an error page — and writes
`screenshots/<page>-<desktop|phone>[-zh].png` (the folder is git-ignored).

Run: `python -m tests.screenshots [--out DIR] [--only NAME ...]`. This is a review
aid, not a test: it asserts nothing beyond the pages loading, and prints what the
browser complained about instead of failing.

`--docs` instead writes the README's few small pictures into `docs/screenshots/`: the
analysis result and the channels page, desktop and phone, English, visible area only
at one pixel per CSS pixel (well under 150 KB each).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.apps import AppServer, make_settings
from tests.browser import BrowserLog, launch_chromium, new_context
from tests.origin import Origin, generate_media

Shot = Callable[[Page, AppServer], None]

CHANNELS = """\
[[channel]]
id = "news"
name = "Morning News"
url = "{live}"
group = "News"
description = "A live test stream from the local origin"

[[channel]]
id = "music"
name = "音乐现场"
url = "{music}"
group = "Music"

[[channel]]
id = "offline"
name = "Closed Studio"
url = "{offline}"
group = "News"
"""


def _start_page(page: Page, app: AppServer) -> None:
    page.goto(app.url("/"))


def _analyse(url: str) -> Shot:
    def shot(page: Page, app: AppServer) -> None:
        page.goto(app.url("/"))
        page.get_by_label(_url_label(page)).fill(url)
        page.locator("#analyse-form button[type=submit]").click()
        page.locator(".task:not([data-state=pending]):not([data-state=running])").wait_for(
            timeout=30_000
        )
        page.wait_for_load_state("networkidle")

    return shot


def _url_label(page: Page) -> str:
    return page.locator("label[for=url]").inner_text()


def _path(path: str) -> Shot:
    def shot(page: Page, app: AppServer) -> None:
        page.goto(app.url(path))
        page.wait_for_load_state("networkidle")

    return shot


def _channels(page: Page, app: AppServer) -> None:
    # Play the first channel for a few seconds: the page then shows the player, and the
    # channel as live with a viewer and its resolution times.
    page.goto(app.url("/channels"))
    for attempt in range(2):  # the second time the page knows the channel is live
        if attempt:
            page.reload()
        page.locator("button[data-play]").first.click()
        page.wait_for_function(
            "document.querySelector('#player video').currentTime > 3", timeout=30_000
        )
    page.evaluate("document.querySelector('#player video').pause()")
    page.evaluate("window.scrollTo(0, 0)")


def _wrong_login(page: Page, app: AppServer) -> None:
    page.goto(app.url("/"))
    page.locator("#token").fill("not the token")
    page.locator("form button[type=submit]").click()
    page.locator("#login-wrong").wait_for()


def _routes(app: AppServer) -> set[str]:
    return {str(getattr(route, "name", "")) for route in app.app.routes}


def _has_chinese_font() -> bool:
    try:
        found = subprocess.run(
            ["fc-list", ":lang=zh"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return True  # no fontconfig to ask; do not guess
    return bool(found.strip())


def take(browser: Browser, out: Path, name: str, app: AppServer, shot: Shot) -> list[str]:
    problems: list[str] = []
    for width, phone in (("desktop", False), ("phone", True)):
        for lang in ("en", "zh"):
            context = new_context(browser, phone=phone, locale="zh-CN" if lang == "zh" else "en-GB")
            context.set_default_timeout(20_000)
            log = BrowserLog()
            page = context.new_page()
            log.watch(page)
            suffix = "-zh" if lang == "zh" else ""
            target = out / f"{name}-{width}{suffix}.png"
            try:
                shot(page, app)
            except PlaywrightError as exc:
                # Still worth a picture: it shows where the page got stuck.
                problems.append(f"{name} {width} {lang}: {exc.message.splitlines()[0]}")
            try:
                page.screenshot(path=str(target), full_page=True)
                print(f"wrote {target}")
            finally:
                context.close()
            problems += [f"{name} {width} {lang}: {p}" for p in log.problems]
    return problems


DOCS = Path("docs/screenshots")


def take_docs(browser: Browser, app: AppServer, pages: dict[str, Shot]) -> None:
    """The README's pictures: the top of each page as a visitor first sees it."""
    DOCS.mkdir(parents=True, exist_ok=True)
    for name, shot in pages.items():
        for width, phone in (("desktop", False), ("phone", True)):
            context = new_context(browser, phone=phone, device_scale_factor=1)
            context.set_default_timeout(30_000)
            page = context.new_page()
            try:
                shot(page, app)
                if name == "result" and phone:
                    page.locator(".result").scroll_into_view_if_needed()
                    page.evaluate("window.scrollBy(0, -16)")
                page.wait_for_timeout(500)  # let background pictures decode
                target = DOCS / f"{name}-{width}.png"
                page.screenshot(path=str(target), scale="css")
                print(f"wrote {target} ({target.stat().st_size // 1024} KB)")
            finally:
                context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--only", nargs="*", help="page names to take (default: all)")
    parser.add_argument("--docs", action="store_true", help="write the README's pictures")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not _has_chinese_font():
        print(
            "warning: no Chinese font installed; the zh pictures will show boxes "
            "(apt-get install fonts-wqy-microhei)",
            file=sys.stderr,
        )

    with tempfile.TemporaryDirectory(prefix="ytproxy-shots-") as tmp:
        print("making test media…")
        media = generate_media(Path(tmp) / "media")
        with Origin(media) as origin:
            origin.set_offline("closed", True)
            channels = Path(tmp) / "channels.toml"
            channels.write_text(
                CHANNELS.format(
                    live=origin.channel_url("news"),
                    music=origin.channel_url("music"),
                    offline=origin.channel_url("closed"),
                ),
                encoding="utf-8",
            )
            settings = make_settings(channels)
            app = AppServer(settings).start()
            locked = AppServer(settings.replace(access_token="screenshots")).start()
            try:
                pages: list[tuple[str, AppServer, Shot]] = [
                    ("start", app, _start_page),
                    ("result", app, _analyse(origin.dash_url)),
                    ("bad-url", app, _analyse("http://127.0.0.1:1/watch?v=nothing")),
                    ("login", locked, _path("/login")),
                    ("login-wrong", locked, _wrong_login),
                    ("not-found", app, _path("/no/such/page")),
                ]
                names = _routes(app)
                if "channels" in names:
                    pages.append(("channels", app, _channels))
                if "diagnostics" in names:
                    pages.append(("diagnostics", app, _path("/diagnostics")))
                if args.only:
                    pages = [p for p in pages if p[0] in args.only]
                problems: list[str] = []
                with sync_playwright() as playwright:
                    browser = launch_chromium(playwright)
                    if args.docs:
                        wanted = {"result": _analyse(origin.dash_url), "channels": _channels}
                        take_docs(browser, app, wanted)
                    else:
                        for name, server, shot in pages:
                            problems += take(browser, out, name, server, shot)
                    browser.close()
            finally:
                locked.stop()
                app.stop()
    for problem in problems:
        print("browser:", problem, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
