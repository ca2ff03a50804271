"""`make demo` in a real browser: what a reviewer with no internet would see.

The demo is started exactly as `scripts/demo.py` starts it (`Demo`, on a free port, in a
directory of the test's own), with its own origin and channels file; the test's session
origin is not used. Then Chromium plays a channel on the channels page and analyses the
video URL the demo prints.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from scripts.demo import Demo, DemoLinks

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoLinks]:
    with Demo(tmp_path_factory.mktemp("demo")) as links:
        yield links


def test_the_demo_prints_every_page_to_open(demo: DemoLinks) -> None:
    text = demo.describe()
    for url in (demo.channels, demo.home, demo.video, demo.playlist, demo.health):
        assert url in text
    assert demo.guide is None or demo.guide in text


def test_the_demo_plays_a_live_channel_in_the_page(page: Page, demo: DemoLinks) -> None:
    page.goto(demo.channels)
    card = page.locator("#channel-demo-news")
    expect(card.get_by_role("heading", name="Demo News (YouTube imitation)")).to_be_visible()
    card.get_by_role("button", name="Play Demo News (YouTube imitation)").click()
    page.wait_for_function(
        "document.querySelector('#player video').currentTime > 0.5", timeout=30_000
    )
    start = page.locator("#player video").evaluate("v => v.currentTime")
    page.wait_for_function(
        f"document.querySelector('#player video').currentTime >= {start + 4}", timeout=30_000
    )
    expect(page.locator("#player [data-player-error]")).to_be_hidden()


def test_the_demo_video_analyses_to_three_format_groups_and_downloads_merged(
    page: Page, demo: DemoLinks
) -> None:
    page.goto(demo.home)
    page.get_by_label("Video URL").fill(demo.video)
    page.get_by_role("button", name="Analyse").click()
    result = page.locator("#task .result")
    expect(result).to_be_visible(timeout=30_000)
    for heading in ("Video with audio", "Video only", "Audio only"):
        expect(result.get_by_role("heading", name=heading)).to_be_visible()
    best = result.locator('[data-choice="best_mp4"]')
    expect(best).to_be_visible()
    with page.expect_download(timeout=60_000) as download_info:
        best.get_by_role("link", name="Download").click()
    merged = download_info.value
    assert merged.failure() is None
    ffprobe = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json"]
    probe = subprocess.run(
        [*ffprobe, str(merged.path())],
        capture_output=True,
        text=True,
        check=True,
    )
    kinds = {stream["codec_type"] for stream in json.loads(probe.stdout)["streams"]}
    assert {"video", "audio"} <= kinds
