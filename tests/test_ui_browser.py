"""The web UI in a real browser: Debian's Chromium driven by Playwright.

Each test starts the real app on an ephemeral port (`app_server`) and opens its pages in
a fresh browser context (`page`, from `tests.browser`), which fails the test on any
console error, uncaught exception, failed request or HTTP error the test did not
declare with `browser_log.allow(...)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.apps import AppServer
from tests.browser import BrowserLog
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
