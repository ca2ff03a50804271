"""A playlist in the web UI (Debian's Chromium driven by Playwright): the local origin's
RSS feed is listed with a checkbox per entry, an entry is analysed inline, and two
chosen entries download as one ZIP that `unzip -t` accepts and whose members are
byte-identical to the direct downloads of the same formats.
"""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.apps import AppServer
from tests.browser import BrowserLog
from tests.origin import Origin
from tests.test_analyse_origin import analyse
from ytproxy.settings import Settings

pytestmark = pytest.mark.browser

StartApp = Callable[..., AppServer]


def test_a_playlist_lists_its_entries_analyses_one_inline_and_zips_two(
    page: Page,
    app_server: StartApp,
    settings: Settings,
    origin: Origin,
    browser_log: BrowserLog,
    tmp_path: Path,
) -> None:
    # The feed's thumbnails do not exist: the gateway's image relay answers 502 for them.
    browser_log.allow(r"/v1/image/")
    app = app_server(settings)
    page.goto(app.url("/"))
    page.get_by_label("Video URL").fill(origin.feeds.feed_url)
    page.locator("#analyse-form").get_by_role("button", name="Analyse").click()
    playlist = page.locator("#task .playlist")
    expect(playlist).to_be_visible(timeout=30_000)
    expect(playlist.get_by_role("heading", name="The test feed")).to_be_visible()
    entries = playlist.locator("li.entry")
    expect(entries).to_have_count(4)
    expect(playlist.locator(".entry-count")).to_have_text("4")

    second = entries.filter(has_text="Second clip")
    second.get_by_role("button", name="Analyse").click()
    inline = second.locator(".entry-task .task")
    expect(inline).to_have_attribute("data-state", "completed", timeout=30_000)
    expect(inline.locator('[data-choice="best_muxed"]')).to_be_visible()

    chosen = ["First clip", "Third clip"]
    for title in chosen:
        entries.filter(has_text=title).get_by_role("checkbox").check()
    with page.expect_download(timeout=60_000) as download_info:
        playlist.get_by_role("button", name="Download selected (ZIP)").click()
    download = download_info.value
    assert download.failure() is None
    assert download.suggested_filename == "The test feed.zip"
    path = tmp_path / "chosen.zip"
    download.save_as(path)
    check = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    with httpx.Client(base_url=app.base_url, timeout=60) as client:
        direct = []
        for name in ("first", "third"):
            task = analyse(client, origin.feeds.media_url(name))
            link = task["result"]["recommended"]["best_muxed"]["download_url"]
            direct.append(client.get(link).content)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["1 First clip.mp4", "2 Third clip.mp4"]
        assert [archive.read(n) for n in archive.namelist()] == direct
