"""Share to ytproxy, in Debian's Chromium: the web app manifest as the browser itself
parses it (CDP `Page.getAppManifest`), the service worker, the bookmarklet, and a link
arriving as `/?url=` or, as Android's share sheet sends it, inside `/?text=`."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import BrowserLog

pytestmark = pytest.mark.browser


def test_chromium_parses_the_manifest_without_errors_and_finds_the_share_target(
    page: Page, app_server, settings
) -> None:
    app = app_server(settings, access_token="share-test-token")
    # The manifest and the worker are open (browsers fetch the manifest without cookies).
    manifest = httpx.get(app.url("/manifest.webmanifest"))
    assert manifest.headers["content-type"] == "application/manifest+json"
    worker = httpx.get(app.url("/sw.js"))
    assert worker.status_code == 200 and worker.headers["service-worker-allowed"] == "/"
    assert 'addEventListener("fetch", () => {})' in worker.text  # pass-through
    assert "caches." not in worker.text and ".respondWith(" not in worker.text

    page.goto(app.url("/?token=share-test-token"))
    cdp = page.context.new_cdp_session(page)
    answer = cdp.send("Page.getAppManifest")
    assert answer["url"] == app.url("/manifest.webmanifest")
    assert answer["errors"] == []
    data = json.loads(answer["data"])
    assert data["share_target"] == {
        "action": "/",
        "method": "GET",
        "enctype": "application/x-www-form-urlencoded",
        "params": {"title": "title", "text": "text", "url": "url"},
    }
    parsed = answer.get("manifest")  # Chromium's parsed form, where the CDP has it
    if parsed is not None:
        assert parsed["shareTarget"]["action"] == app.url("/")
        assert parsed["display"].lower().endswith("standalone")
        assert {icon["sizes"] for icon in parsed["icons"]} == {"192x192", "512x512"}
    for icon in data["icons"]:
        fetched = httpx.get(app.url(icon["src"]), headers={"Authorization": "x"})
        assert fetched.headers["content-type"] == "image/png"
    registered = page.evaluate(
        "navigator.serviceWorker.ready.then((r) => new URL(r.scope).pathname)"
    )
    assert registered == "/"


def test_a_link_shared_in_text_fills_the_form_and_starts_the_analysis(
    page: Page, app_server, settings, origin
) -> None:
    app = app_server(settings)
    link = origin.subtitles.page_url
    page.goto(app.url("/?text=" + quote(f"Look at this: {link} (shared via an app)")))
    expect(page.get_by_label("Video URL")).to_have_value(link)
    expect(page.locator("#task")).to_contain_text("A subtitled video", timeout=30_000)
    expect(page).to_have_url(app.url("/"))  # a reload does not analyse again


def test_the_bookmarklet_sends_the_current_page_to_the_gateway(
    page: Page, browser_log: BrowserLog, app_server, settings, origin
) -> None:
    browser_log.allow(r"404.*/favicon\.ico")  # the test origin's page has no icon
    app = app_server(settings)
    page.goto(app.url("/?lang=zh"))
    page.locator("#share-help summary").click()
    bookmarklet = page.get_by_role("link", name="用 ytproxy 解析")
    href = bookmarklet.get_attribute("href")
    assert href == (
        f"javascript:location.href='{app.base_url}/?url='+encodeURIComponent(location.href)"
    )
    # What clicking the bookmark does on a video's page: run it there.
    page.goto(origin.subtitles.page_url)
    page.evaluate(href.removeprefix("javascript:"))
    expect(page).to_have_url(app.url("/"), timeout=15_000)
    expect(page.get_by_label("视频链接")).to_have_value(origin.subtitles.page_url)
    expect(page.locator("#task")).to_contain_text("A subtitled video", timeout=30_000)
    assert re.search(
        r"/\?url=", page.evaluate("performance.getEntriesByType('navigation')[0].name")
    )
