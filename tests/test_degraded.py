"""Degraded answers explained: yt-dlp's warnings and the formats' shape → warning codes.

The messages matched are the installed yt-dlp's own: where yt-dlp builds a message in a
method of its own, the test calls that method on a real `YoutubeIE` with the product's
logger (`_report_pot_format_skipped`); where the message is written inline, the test
reads the literal from yt-dlp's source and fails when that wording changes. The result
page (zh and en) shows each warning with what the operator can do, rendered by the app
for an ended YouTube-style live whose only format is 18 and is held back (`available_at`).
"""

from __future__ import annotations

import inspect
import threading
import time

import httpx
import pytest
import yt_dlp
from yt_dlp.extractor.youtube import _video
from yt_dlp.extractor.youtube.jsc import _director as jsc_director
from yt_dlp.extractor.youtube.pot import _director as pot_director

from tests.test_analyse_origin import analyse
from ytproxy.analyse.degraded import MESSAGES, code_for, warnings_for
from ytproxy.extractor import WARNINGS_KEY, _Logger

VIDEO_SOURCE = inspect.getsource(_video)


def _in_source(*fragments: str, source: str = VIDEO_SOURCE) -> str:
    """The fragments joined, after checking each is written so in yt-dlp's source."""
    for fragment in fragments:
        assert fragment in source, f"yt-dlp {yt_dlp.version.__version__} changed: {fragment!r}"
    return "".join(fragments)


def _youtube_warnings(call) -> list[str]:
    """What the product's logger keeps when a real YoutubeIE runs `call(ie)`."""
    logger = _Logger(None, threading.Event())
    with yt_dlp.YoutubeDL({"logger": logger, "quiet": True, "writesubtitles": True}) as ydl:
        call(_video.YoutubeIE(ydl))
    return logger.warnings


def test_gvs_po_token_missing_from_yt_dlps_own_report() -> None:
    [message] = _youtube_warnings(
        lambda ie: ie._report_pot_format_skipped("abcdefghijk", "tv_simply", "https")
    )
    assert "require a GVS PO Token which was not provided" in message
    assert code_for(message) == "po_token_missing"


def test_subtitles_po_token_missing_from_yt_dlps_own_report() -> None:
    [message] = _youtube_warnings(
        lambda ie: ie._report_pot_subtitles_skipped("abcdefghijk", "tv_simply")
    )
    assert code_for(message) == "po_token_missing"
    missing = _in_source(
        "There are missing subtitles languages because a PO token was not provided."
    )
    assert code_for(f"abcdefghijk: {missing} Subtitles for these languages are missing: de.") == (
        "po_token_missing"
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "po_token_missing",
            _in_source("Unable to fetch GVS PO Token for ")
            + "web client: Missing required Visitor Data.",
        ),
        (
            "po_token_failed",
            _in_source("Error fetching PO Token from ", source=inspect.getsource(pot_director))
            + "\"bgutil:http\" provider: PoTokenProviderError('Error reaching POST /get_pot')",
        ),
        (
            "sabr_only",
            "Some tv client https formats have been skipped as they are missing a URL. "
            + _in_source(
                "formats have been skipped as they are missing a URL. ",
                "YouTube may have enabled the SABR-only streaming experiment for ",
            ),
        ),
        (
            "js_runtime_failed",
            _in_source("No supported JavaScript runtime could be found. Only deno is enabled"),
        ),
        (
            "js_runtime_failed",
            _in_source("n challenge solving failed: Some formats may be missing. "),
        ),
        (
            "js_runtime_failed",
            _in_source("Signature solving failed: Some formats may be missing. "),
        ),
        (
            "js_runtime_failed",
            _in_source("Error solving ", source=inspect.getsource(jsc_director))
            + 'n challenge request using "deno" provider: timed out.',
        ),
    ],
)
def test_each_yt_dlp_message_maps_to_its_warning_code(code: str, message: str) -> None:
    assert code_for(message) == code


@pytest.mark.parametrize(
    "message",
    [
        "Falling back on generic information extractor",
        "Some web client https formats are possibly damaged. They will be deprioritized",
        'Skipping client "ios" since it does not support cookies',
    ],
)
def test_other_warnings_are_not_degraded_answers(message: str) -> None:
    assert code_for(message) is None


def _youtube_info(*format_ids: str, **extra: object) -> dict[str, object]:
    formats = [
        {"format_id": "sb0", "vcodec": "none", "acodec": "none", "ext": "mhtml"},
        *({"format_id": f, "vcodec": "avc1", "acodec": "mp4a.40.2"} for f in format_ids),
    ]
    return {
        "webpage_url": "https://www.youtube.com/watch?v=abcdefghijk",
        "formats": formats,
        **extra,
    }


def test_only_format_18_is_a_warning_for_youtube_only() -> None:
    codes = [w["code"] for w in warnings_for(_youtube_info("18"), now=0)]
    assert codes == ["only_format_18"]
    assert warnings_for(_youtube_info("18", "137"), now=0) == []
    generic = {**_youtube_info("18"), "webpage_url": "https://example.org/v"}
    assert warnings_for(generic, now=0) == []


def test_available_at_in_the_future_is_a_warning_with_its_time() -> None:
    info = _youtube_info("18", "22")
    info["formats"][1]["available_at"] = 1_800_000_030  # type: ignore[index]
    [warning] = warnings_for(info, now=1_800_000_000)
    assert warning["code"] == "available_at_delay"
    assert "2027-01-15 08:00:30 UTC" in warning["message"]
    assert warnings_for(info, now=1_800_000_031) == []


def test_warnings_come_once_each_in_a_stable_order_with_the_operators_fix() -> None:
    info = _youtube_info(
        "18",
        **{
            WARNINGS_KEY: [
                "n challenge solving failed: Some formats may be missing.",
                "tv client https formats require a GVS PO Token which was not provided.",
                "web_safari client https formats require a GVS PO Token which was not provided",
            ]
        },
    )
    warnings = warnings_for(info, now=0)
    assert [w["code"] for w in warnings] == [
        "po_token_missing",
        "js_runtime_failed",
        "only_format_18",
    ]
    assert "POT_PROVIDER_URL" in warnings[0]["message"]
    assert all(w["message"] == MESSAGES[w["code"]] for w in warnings)


@pytest.fixture
def start_app(app_server, settings):
    return lambda **changes: app_server(settings, **changes)


def test_the_extractor_keeps_yt_dlps_warnings_for_the_result(start_app, origin) -> None:
    server = start_app()
    info = server.call(lambda: server.core.extractor.extract(origin.subtitles.page_url))
    assert "Falling back on generic information extractor" in info[WARNINGS_KEY]
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.subtitles.page_url)
    assert task["result"]["warnings"] == []


def test_the_result_page_explains_a_held_back_format_18_answer_in_both_languages(
    start_app, origin
) -> None:
    origin.youtube.add_live("degraded001", starts_in=-600, ends_in=-60)
    origin.youtube.set_available_at_delay("degraded001", 600)
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.youtube.watch_url("degraded001"))
        assert task["state"] == "completed", task["error"]
        pages = {
            lang: client.get(
                f"/v1/tasks/{task['task_id']}?lang={lang}", headers={"HX-Request": "true"}
            ).text
            for lang in ("en", "zh")
        }
    codes = [w["code"] for w in task["result"]["warnings"]]
    assert codes == ["only_format_18", "available_at_delay"]
    wait_until = time.gmtime(time.time() + 600)
    assert time.strftime("%Y-%m-%d", wait_until) in task["result"]["warnings"][1]["message"]
    expected = {
        "en": ("Only the 360p format 18 is available", "POT_PROVIDER_URL", "wait, then analyse"),
        "zh": ("只有 360p 的 18 号格式可用", "POT_PROVIDER_URL", "请稍候再重新解析"),
    }
    for lang, texts in expected.items():
        page = pages[lang]
        assert 'data-warning="only_format_18"' in page
        assert 'data-warning="available_at_delay"' in page
        for text in texts:
            assert text in page, (lang, text)
