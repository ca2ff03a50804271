"""The web UI in a real browser: Debian's Chromium driven by Playwright.

Each test starts the real app on an ephemeral port (`app_server`) and opens its pages in
a fresh browser context (`page`, from `tests.browser`), which fails the test on any
console error, uncaught exception, failed request or HTTP error the test did not
declare with `browser_log.allow(...)`.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.apps import AppServer
from tests.browser import BrowserLog
from tests.origin import Media, Origin
from ytproxy.settings import Settings

pytestmark = pytest.mark.browser

StartApp = Callable[..., AppServer]


def test_language_switch_changes_the_text_and_is_remembered(
    page: Page, app_server: StartApp, settings: Settings
) -> None:
    app = app_server(settings)
    page.goto(app.url("/"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Analyse a video")

    page.get_by_role("link", name="中文").click()
    expect(page).to_have_url(re.compile(r"/\?lang=zh$"))
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", level=1)).to_have_text("解析视频")
    expect(page.get_by_label("视频链接")).to_be_visible()

    page.goto(app.url("/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("解析视频")

    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto(app.url("/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Analyse a video")


def test_a_chinese_browser_gets_chinese_pages_without_asking(
    new_page: Callable[..., Page], app_server: StartApp, settings: Settings
) -> None:
    app = app_server(settings)
    page = new_page(locale="zh-CN")
    page.goto(app.url("/"))
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("navigation")).to_contain_text("解析")
    expect(page.locator("footer")).to_contain_text("你自己的 YouTube 网关")


def test_the_header_links_every_page_and_marks_the_current_one(
    page: Page, app_server: StartApp, settings: Settings
) -> None:
    app = app_server(settings)
    page.goto(app.url("/"))
    nav = page.get_by_role("navigation")
    expect(nav.get_by_role("link", name="Analyse", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    names = {route.name for route in app.app.routes if hasattr(route, "name")}
    if "channels" in names:
        nav.get_by_role("link", name="Live channels").click()
        expect(page).to_have_url(app.url("/channels"))
        expect(
            page.get_by_role("navigation").get_by_role("link", name="Live channels")
        ).to_have_attribute("aria-current", "page")


def test_the_start_page_fits_a_phone_and_works_from_the_keyboard(
    phone_page: Page, app_server: StartApp, settings: Settings
) -> None:
    app = app_server(settings)
    phone_page.set_viewport_size({"width": 375, "height": 740})
    phone_page.goto(app.url("/"))
    overflow = phone_page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than a 375px phone"

    phone_page.keyboard.press("Tab")
    expect(phone_page.locator(":focus")).to_have_text("Skip to content")
    phone_page.keyboard.press("Enter")
    expect(phone_page).to_have_url(re.compile(r"#main$"))
    url_field = phone_page.get_by_label("Video URL")
    expect(url_field).to_have_attribute("type", "url")
    url_field.focus()
    phone_page.keyboard.press("Tab")
    expect(phone_page.locator(":focus")).to_have_text("Analyse")


def test_an_unknown_page_explains_itself_in_plain_words(
    page: Page, browser_log: BrowserLog, app_server: StartApp, settings: Settings
) -> None:
    browser_log.allow(r"\b404\b")
    app = app_server(settings)
    response = page.goto(app.url("/no/such/page?lang=zh"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("出错了")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("此地址没有内容")
    expect(alert).to_have_attribute("data-code", "not_found")
    page.get_by_role("button", name="返回首页").click()
    expect(page).to_have_url(app.url("/"))


def test_with_an_access_token_the_login_page_guards_everything(
    page: Page, browser_log: BrowserLog, app_server: StartApp, settings: Settings
) -> None:
    browser_log.allow(r"\b401\b")  # the wrong token is answered 401 Unauthorized
    app = app_server(settings, access_token="family-secret")

    page.goto(app.url("/"))
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")

    page.get_by_label("Access token").fill("not the token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not right.")
    expect(page.get_by_label("Access token")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Access token").fill("family-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(app.url("/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Analyse a video")

    page.get_by_role("link", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(app.url("/"))
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_switching_language_on_the_login_page_keeps_where_to_go_next(
    page: Page, app_server: StartApp, settings: Settings
) -> None:
    app = app_server(settings, access_token="family-secret")
    page.goto(app.url("/channels"))
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fchannels$"))
    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("登录")
    page.get_by_label("访问令牌").fill("family-secret")
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(app.url("/channels"))
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


def _progress_recorder(page: Page) -> None:
    """Record every progress value (-1: indeterminate) the task fragment shows."""
    page.evaluate(
        """() => {
          window.progressSeen = [];
          const task = document.getElementById("task");
          new MutationObserver(() => {
            const bar = task.querySelector("progress");
            if (bar) window.progressSeen.push(bar.hasAttribute("value") ? bar.value : -1);
          }).observe(task, { childList: true, subtree: true });
        }"""
    )


def test_analysing_a_video_shows_progress_then_three_format_groups_and_downloads(
    page: Page, app_server: StartApp, settings: Settings, origin: Origin, media: Media
) -> None:
    # Slow the origin down so that the task is seen running, as it would be with YouTube.
    origin.add_latency("/watch/dash", 1.0)
    origin.add_latency("/dash/manifest.mpd", 1.5)
    app = app_server(settings)
    page.goto(app.url("/"))
    _progress_recorder(page)

    page.get_by_label("Video URL").fill(origin.dash_url)
    page.get_by_role("button", name="Analyse").click()
    expect(page.locator("#task progress")).to_be_visible()
    expect(page.locator("#task .task-stage")).not_to_be_empty()
    result = page.locator("#task .result")
    expect(result).to_be_visible(timeout=30_000)

    seen = page.evaluate("window.progressSeen")
    assert len(set(seen)) >= 2 and seen == sorted(seen), f"progress did not move: {seen}"
    expect(page.locator("#task .task")).to_have_attribute("data-state", "completed")

    for heading in ("Video with audio", "Video only", "Audio only"):
        expect(result.get_by_role("heading", name=heading)).to_be_visible()
    expect(result.locator('table[data-group="video_only"] tbody tr')).not_to_have_count(0)
    expect(result.locator('table[data-group="audio_only"] tbody tr')).not_to_have_count(0)
    rows = result.locator("table.formats tbody tr")
    for index in range(rows.count()):
        expect(rows.nth(index).get_by_role("link", name="Download")).to_be_visible()
        expect(rows.nth(index).get_by_role("button", name="Copy download link")).to_be_visible()
    expect(result.locator('[data-choice="best_mp4"]')).to_be_visible()

    # A single format arrives byte for byte.
    h264 = next(r for r in media.dash if r.id == "133")
    with page.expect_download() as download_info:
        result.locator('tr[data-format-id="133"]').get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.failure() is None
    body = Path(download.path()).read_bytes()
    assert len(body) == h264.size
    assert hashlib.sha256(body).digest() == hashlib.sha256(h264.path.read_bytes()).digest()

    # The recommended MP4 is a video+audio pair merged on the fly: ffprobe sees both.
    with page.expect_download(timeout=60_000) as download_info:
        result.locator('[data-choice="best_mp4"]').get_by_role("link", name="Download").click()
    merged = download_info.value
    assert merged.failure() is None
    assert merged.suggested_filename.endswith(".mp4")
    streams = _probe_streams(Path(merged.path()))
    assert {"video", "audio"} <= set(streams), streams


def _probe_streams(path: Path) -> list[str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [s["codec_type"] for s in json.loads(out)["streams"]]


def test_the_copy_button_puts_an_absolute_download_link_on_the_clipboard(
    new_page: Callable[..., Page], app_server: StartApp, settings: Settings, origin: Origin
) -> None:
    app = app_server(settings)
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    page.goto(app.url("/"))
    page.get_by_label("Video URL").fill(origin.dash_url)
    page.get_by_label("Video URL").press("Enter")
    row = page.locator('tr[data-format-id="133"]')
    expect(row).to_be_visible(timeout=30_000)
    copy = row.get_by_role("button", name="Copy download link")
    copy.click()
    expect(row.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    href = row.get_by_role("link", name="Download").get_attribute("href")
    assert href is not None and copied == app.url(href)


def test_a_video_that_cannot_be_read_shows_an_inline_error_in_plain_words(
    page: Page, app_server: StartApp, settings: Settings, origin: Origin
) -> None:
    app = app_server(settings)
    page.goto(app.url("/?lang=zh"))
    page.get_by_label("视频链接").fill(origin.url("/missing"))
    page.get_by_role("button", name="解析").click()
    alert = page.locator("#task").get_by_role("alert")
    expect(alert).to_be_visible(timeout=30_000)
    expect(alert).to_have_attribute("data-code", "video_unavailable")
    expect(alert).to_contain_text("解析失败")
    expect(alert).to_contain_text("该视频不可用")
    expect(page.locator("#task .task")).to_have_attribute("data-state", "failed")


def test_a_url_the_gateway_refuses_shows_an_inline_error_not_a_code(
    page: Page, browser_log: BrowserLog, app_server: StartApp, settings: Settings
) -> None:
    # The gateway answers 400: Chromium logs every 4xx response on the console.
    browser_log.allow(r"\b400\b")
    app = app_server(settings)
    page.goto(app.url("/"))
    page.get_by_label("Video URL").fill("ftp://example.com/video.mp4")
    page.get_by_role("button", name="Analyse").click()
    alert = page.locator("#task").get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_have_attribute("data-code", "invalid_url")
    expect(alert).to_contain_text("does not look like a video link")
    expect(page.get_by_role("button", name="Analyse")).to_be_enabled()


def test_the_channels_page_plays_a_channel_in_the_page_through_the_gateway(
    page: Page, app_server: StartApp, settings: Settings, origin: Origin, tmp_path: Path
) -> None:
    channels = tmp_path / "ui-channels.toml"
    channels.write_text(
        "[[channel]]\n"
        'id = "ui"\n'
        'name = "UI Test Channel"\n'
        f'url = "{origin.channel_url("ui")}"\n'
        'group = "Tests"\n'
        'description = "The origin\'s live stream"\n',
        encoding="utf-8",
    )
    app = app_server(settings, channels_file=channels)
    gateway_requests: list[str] = []
    origin_requests: list[str] = []
    page.on(
        "request",
        lambda r: (
            origin_requests if r.url.startswith(origin.base_url) else gateway_requests
        ).append(r.url),
    )
    page.goto(app.url("/channels"))
    card = page.locator("#channel-ui")
    expect(card.get_by_role("heading", name="UI Test Channel")).to_be_visible()
    expect(card).to_contain_text("Tests")
    expect(page.get_by_label("M3U playlist:")).to_have_value(app.url("/playlist.m3u"))
    page.get_by_text("Watch in VLC").click()
    expect(page.get_by_text("Open Network Stream")).to_be_visible()

    card.get_by_role("button", name="Play UI Test Channel").click()
    player = page.locator("#player")
    expect(player).to_be_visible()
    expect(player.get_by_role("heading")).to_contain_text("UI Test Channel")
    video = player.locator("video")
    page.wait_for_function(
        "document.querySelector('#player video').currentTime > 0.5", timeout=30_000
    )
    start = video.evaluate("v => v.currentTime")
    page.wait_for_function(
        f"document.querySelector('#player video').currentTime >= {start + 5}", timeout=30_000
    )
    assert not origin_requests, "the browser talked to the origin directly"
    assert any("/live/ui/s/" in url for url in gateway_requests)
    expect(player.locator("[data-player-error]")).to_be_hidden()

    # The list refreshes itself: the channel now shows as live with one viewer, and its
    # button still says it is the one playing.
    expect(card.locator(".status")).to_have_text("Live", timeout=30_000)
    expect(card.locator(".channel-facts")).to_contain_text("1")
    expect(card.get_by_role("button", name="Play UI Test Channel")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert video.evaluate("v => !v.paused")

    page.get_by_role("button", name="Close player").click()
    expect(player).to_be_hidden()


def test_the_result_and_the_channels_page_fit_a_phone(
    phone_page: Page, app_server: StartApp, settings: Settings, origin: Origin, tmp_path: Path
) -> None:
    channels = tmp_path / "phone-channels.toml"
    channels.write_text(
        '[[channel]]\nid = "phone"\nname = "A channel with a rather long name for a phone"\n'
        f'url = "{origin.channel_url("phone")}"\ngroup = "News"\n',
        encoding="utf-8",
    )
    app = app_server(settings, channels_file=channels)
    phone_page.set_viewport_size({"width": 375, "height": 740})
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"

    phone_page.goto(app.url("/"))
    phone_page.get_by_label("Video URL").fill(origin.dash_url)
    phone_page.get_by_role("button", name="Analyse").click()
    expect(phone_page.locator("#task .result")).to_be_visible(timeout=30_000)
    assert phone_page.evaluate(overflow) <= 0, "the result is wider than the phone"
    download = phone_page.locator('tr[data-format-id="133"]').get_by_role("link", name="Download")
    download.scroll_into_view_if_needed()
    expect(download).to_be_in_viewport()

    phone_page.goto(app.url("/channels"))
    play = phone_page.get_by_role("button", name=re.compile("^Play"))
    play.scroll_into_view_if_needed()
    expect(play).to_be_in_viewport()
    assert phone_page.evaluate(overflow) <= 0, "the channels page is wider than the phone"


def test_a_radio_entry_plays_in_the_channels_page(
    page: Page, app_server: StartApp, settings: Settings, origin: Origin, tmp_path: Path
) -> None:
    vid = "uiradio0001"
    origin.youtube.add_live(vid, handle="uiradio", flavour="muxed")
    channels = tmp_path / "radio-channels.toml"
    channels.write_text(
        f'[[channel]]\nid = "fm"\nname = "Radio Test"\nurl = "{origin.youtube.watch_url(vid)}"\n'
        "radio = true\n",
        encoding="utf-8",
    )
    app = app_server(settings, channels_file=channels)
    audio_requests: list[str] = []
    page.on("request", lambda r: audio_requests.append(r.url) if "/live/fm/a/" in r.url else None)
    page.goto(app.url("/channels"))
    card = page.locator("#channel-fm")
    card.get_by_role("button", name="Listen Radio Test").click()
    player = page.locator("#player")
    expect(player.get_by_role("heading")).to_contain_text("Radio Test (radio)")
    page.wait_for_function(
        "document.querySelector('#player video').currentTime > 0.5", timeout=30_000
    )
    start = player.locator("video").evaluate("v => v.currentTime")
    page.wait_for_function(
        f"document.querySelector('#player video').currentTime >= {start + 4}", timeout=30_000
    )
    assert audio_requests, "the page did not play the audio-only segments"
    expect(player.locator("[data-player-error]")).to_be_hidden()
