"""The yt-dlp wrapper: real yt-dlp (generic extractor) against the local origin."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import pytest
from aiohttp import web
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

from tests.local_http import serving
from ytproxy.errors import ExtractionError
from ytproxy.extractor import Extractor, classify
from ytproxy.metrics import Metrics
from ytproxy.settings import Settings


@pytest.fixture
def extractor() -> Extractor:
    settings = Settings(
        secret_key="x" * 20, ytdlp_timeout=10, ytdlp_max_retries=2, allow_private_networks=True
    )
    built = Extractor(settings, Metrics())
    yield built
    built.close()


async def test_live_hls_channel_resolves_to_its_variants(extractor: Extractor, origin) -> None:
    info = await extractor.extract(origin.channel_url("news"), lane="live")
    assert info["is_live"] is True
    heights = sorted(f["height"] for f in info["formats"])
    assert heights == [90, 180]
    assert {f["protocol"] for f in info["formats"]} == {"m3u8_native"}
    assert all("/hls/news/master.m3u8" in f["manifest_url"] for f in info["formats"])


async def test_vod_mp4_resolves_to_one_http_format(extractor: Extractor, origin) -> None:
    info = await extractor.extract(origin.vod_url)
    [fmt] = info["formats"]
    assert fmt["protocol"] == "http"
    assert "/vod/video.mp4" in fmt["url"]


async def test_dash_manifest_resolves_to_video_only_and_audio_only_formats(
    extractor: Extractor, origin, media
) -> None:
    info = await extractor.extract(origin.dash_url)
    by_id = {f["format_id"]: f for f in info["formats"]}
    expected_video = {"160": 144, "133": 240, "278": 240}
    if media.has_av1:
        expected_video["394"] = 240
    for format_id, height in expected_video.items():
        assert by_id[format_id]["height"] == height
        assert by_id[format_id]["acodec"] == "none"
    assert by_id["278"]["vcodec"].startswith("vp09")
    assert by_id["140"]["acodec"].startswith("mp4a")
    assert by_id["251"]["acodec"] == "opus"
    assert by_id["140"]["vcodec"] == by_id["251"]["vcodec"] == "none"


async def test_results_are_sanitised_plain_data(extractor: Extractor, origin) -> None:
    info = await extractor.extract(origin.dash_url)
    # Unsanitised, `http_headers` are yt-dlp's HTTPHeaderDict (which json.dumps takes
    # as a dict, but pickling, msgpack and equality with plain dicts do not), and
    # `_version` is missing: only sanitize_info makes every container a dict or list.
    assert not_plain(info) == []
    assert info["_version"]["version"]


def not_plain(value: object, where: str = "info") -> list[str]:
    """Paths of the values in `value` that are not JSON's own types exactly."""
    if type(value) is dict:
        return [p for k, v in value.items() for p in not_plain(v, f"{where}.{k}")]
    if type(value) is list:
        return [p for i, v in enumerate(value) for p in not_plain(v, f"{where}[{i}]")]
    if value is None or type(value) in (str, int, float, bool):
        return []
    return [f"{where}: {type(value).__name__}"]


async def test_a_missing_page_fails_with_a_stable_code(extractor: Extractor, origin) -> None:
    with pytest.raises(ExtractionError) as caught:
        await extractor.extract(origin.url("/no/such/video"))
    assert caught.value.code == "video_unavailable"
    assert caught.value.status_code == 404


async def test_an_offline_channel_fails_without_retrying(extractor: Extractor, origin) -> None:
    origin.set_offline("off")
    with pytest.raises(ExtractionError):
        await extractor.extract(origin.channel_url("off"), lane="live")
    assert extractor.calls == 1


async def test_a_transient_failure_is_retried_with_backoff(extractor: Extractor, origin) -> None:
    origin.fail_once("/watch/vod", status=503)
    info = await extractor.extract(origin.vod_url)
    assert info["formats"]
    assert extractor.calls == 2


async def test_an_unreachable_host_is_a_network_error(extractor: Extractor) -> None:
    with pytest.raises(ExtractionError) as caught:
        await extractor.extract("http://127.0.0.1:9/video")
    assert caught.value.code == "network_error"
    assert extractor.calls == 3  # one call and two retries


async def test_live_lane_is_not_blocked_by_a_full_analyse_lane(origin) -> None:
    settings = Settings(
        secret_key="x" * 20,
        max_concurrent_ytdlp_requests=3,  # two for analyses, one kept for lives
        ytdlp_timeout=30,
        allow_private_networks=True,
    )
    extractor = Extractor(settings, Metrics())
    # Video pages held until released: the analyse lane stays full for as long as the
    # test needs, whatever the machine's speed.
    release = asyncio.Event()
    arrived: list[str] = []

    async def held_page(request: web.Request) -> web.Response:
        arrived.append(request.path)
        await release.wait()
        raise web.HTTPFound(origin.vod_url)

    app = web.Application()
    app.router.add_get("/held/{n}", held_page)
    async with serving(app, shutdown_timeout=1.0) as base:
        try:
            slow = [asyncio.create_task(extractor.extract(f"{base}/held/{n}")) for n in range(3)]
            assert await poll(lambda: len(arrived) == 2)  # both analyse slots taken
            live = await asyncio.wait_for(  # the deadline only guards against a hang
                extractor.extract(origin.channel_url("fast"), lane="live"), timeout=30
            )
            assert live["is_live"] is True
            assert len(arrived) == 2 and not any(task.done() for task in slow)
            release.set()
            assert all(info["formats"] for info in await asyncio.gather(*slow))
        finally:
            release.set()
            extractor.close()


async def poll(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Polls `predicate`; the deadline only guards against a hang."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_progress_events_carry_ytdlp_messages(extractor: Extractor, origin) -> None:
    events: list[str] = []
    await extractor.extract(origin.dash_url, on_event=events.append)
    assert any("Downloading" in e or "Extracting" in e for e in events)


def test_params_carry_proxy_cookies_pot_provider_and_js_runtime(tmp_path) -> None:
    cookies = tmp_path / "cookies.txt"
    settings = Settings(
        secret_key="x" * 20,
        global_proxy="socks5://127.0.0.1:1080",
        ytdlp_cookies_file=cookies,
        pot_provider_url="http://bgutil:4416",
        js_runtime="node",
        js_runtime_path="/usr/bin/node",
        ytdlp_timeout=12,
    )
    extractor = Extractor(settings, Metrics())
    try:
        params = extractor.params()
    finally:
        extractor.close()
    assert params["proxy"] == "socks5://127.0.0.1:1080"
    assert params["cookiefile"] == str(cookies)
    assert params["extractor_args"] == {
        "youtubepot-bgutilhttp": {"base_url": ["http://bgutil:4416"]}
    }
    assert params["js_runtimes"] == {"node": {"path": "/usr/bin/node"}}
    assert params["socket_timeout"] == 12


def _wrapped(error: BaseException, message: str) -> DownloadError:
    try:
        raise error
    except BaseException:
        return DownloadError(f"ERROR: {message}", sys.exc_info())


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (_wrapped(UnsupportedError("http://x"), "Unsupported URL: http://x"), "unsupported_url"),
        (_wrapped(GeoRestrictedError("blocked"), "[youtube] a: blocked"), "geo_blocked"),
        (
            _wrapped(
                ExtractorError("Private video. Sign in if you've been granted access"),
                "[youtube] abc: Private video. Sign in if you've been granted access",
            ),
            "private_video",
        ),
        (
            _wrapped(
                ExtractorError("Sign in to confirm you’re not a bot"),
                "[youtube] abc: Sign in to confirm you’re not a bot. Use --cookies",
            ),
            "login_required",
        ),
        (
            _wrapped(
                ExtractorError("Video unavailable"),
                "[youtube] abc: Video unavailable. This video has been removed",
            ),
            "video_unavailable",
        ),
        (
            _wrapped(
                ExtractorError("This live event will begin in 3 hours."),
                "[youtube] abc: This live event will begin in 3 hours.",
            ),
            "live_not_started",
        ),
        (
            _wrapped(ExtractorError("timed out"), "Unable to download webpage: timed out"),
            "upstream_timeout",
        ),
        (_wrapped(ExtractorError("odd"), "[youtube] abc: something odd"), "extraction_failed"),
    ],
)
def test_ytdlp_errors_map_to_stable_codes(error: DownloadError, code: str) -> None:
    mapped = classify(error)
    assert mapped.code == code
    assert "ERROR:" not in mapped.message
    assert "Traceback" not in mapped.message


async def test_the_cookies_file_is_read_but_never_written(origin, tmp_path) -> None:
    cookies = tmp_path / "cookies.txt"
    original = "# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tFALSE\t0\tname\tvalue\n"
    cookies.write_text(original)
    cookies.chmod(0o444)
    settings = Settings(
        secret_key="x" * 20,
        ytdlp_cookies_file=cookies,
        ytdlp_timeout=10,
        allow_private_networks=True,
    )
    extractor = Extractor(settings, Metrics())
    try:
        results = await asyncio.gather(*(extractor.extract(origin.vod_url) for _ in range(3)))
    finally:
        extractor.close()
    assert all(r["formats"] for r in results)
    assert cookies.read_text() == original
    assert not list(tmp_path.glob("ytproxy-cookies-*"))


async def test_an_unreadable_cookies_file_fails_with_a_clear_message(origin, tmp_path) -> None:
    settings = Settings(
        secret_key="x" * 20,
        ytdlp_cookies_file=tmp_path / "missing.txt",
        allow_private_networks=True,
    )
    extractor = Extractor(settings, Metrics())
    try:
        with pytest.raises(ExtractionError, match="YTDLP_COOKIES_FILE"):
            await extractor.extract(origin.vod_url)
    finally:
        extractor.close()


def test_concurrent_first_calls_load_the_pot_provider_plugin_once(tmp_path) -> None:
    # A fresh process: plugins are loaded by the first YoutubeDL(), which is the race.
    script = tmp_path / "race.py"
    script.write_text(
        "import asyncio\n"
        "from ytproxy.extractor import Extractor\n"
        "from ytproxy.metrics import Metrics\n"
        "from ytproxy.settings import Settings\n"
        "async def main():\n"
        "    s = Settings(secret_key='x' * 20, ytdlp_timeout=2, ytdlp_max_retries=0,\n"
        "                 max_concurrent_ytdlp_requests=8, allow_private_networks=True)\n"
        "    e = Extractor(s, Metrics())\n"
        "    await e.start()\n"
        "    await asyncio.gather(*(e.extract('http://127.0.0.1:9/v', lane='live')\n"
        "                           for _ in range(8)), return_exceptions=True)\n"
        "    e.close()\n"
        "asyncio.run(main())\n"
    )
    import subprocess
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "already registered" not in result.stderr
    assert "Error while importing" not in result.stderr
