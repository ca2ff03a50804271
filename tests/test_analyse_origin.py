"""Analyses end to end: the real app, real yt-dlp, the local googlevideo-like origin.

Each test submits a URL over a real socket, polls the task and checks what lands in
each format group (ids, codec families, heights), the download links, the cache, the
HTMX fragments, the metrics, and yt-dlp's failures as stable error codes.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ytproxy.download.links import read_link


@pytest.fixture
def start_app(app_server, settings):
    return lambda **changes: app_server(settings, **changes)


def submit(client: httpx.Client, url: str) -> str:
    response = client.post("/v1/analyze", json={"url": url})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status_url"] == f"/v1/tasks/{body['task_id']}"
    assert response.headers["location"] == body["status_url"]
    return str(body["task_id"])


def wait(client: httpx.Client, task_id: str, limit: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        response = client.get(f"/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["state"] in {"completed", "failed"}:
            return body
        assert time.monotonic() < deadline, f"task still {body['state']} after {limit} s"
        time.sleep(0.05)


def analyse(client: httpx.Client, url: str) -> dict[str, Any]:
    return wait(client, submit(client, url))


def summary(result: dict[str, Any], group: str) -> list[tuple[Any, ...]]:
    return [
        (f["format_id"], f["video_codec"], f["audio_codec"], f["height"])
        for f in result["formats"][group]
    ]


def test_dash_manifest_is_grouped_with_codec_families_and_heights(start_app, origin, media) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.dash_url)
    assert (task["state"], task["stage"], task["progress"], task["error"]) == (
        "completed",
        "done",
        100,
        None,
    )
    assert task["url"] == origin.dash_url
    result = task["result"]
    av1 = [("394", "AV1", None, 240)] if media.has_av1 else []
    assert summary(result, "video_only") == [
        *av1,
        ("278", "VP9", None, 240),
        ("133", "H.264", None, 240),
        ("160", "H.264", None, 144),
    ]
    assert summary(result, "audio_only") == [
        ("251", None, "Opus", None),
        ("140", None, "AAC", None),
    ]
    assert result["formats"]["muxed"] == []
    labels = {f["format_id"]: f["resolution"] for f in result["formats"]["video_only"]}
    assert (labels["133"], labels["160"]) == ("240p", "144p")
    best_video = "394" if media.has_av1 else "278"
    mp4_video = "394" if media.has_av1 else "133"
    recommended = result["recommended"]
    assert recommended["best_muxed"] is None
    assert (recommended["best_mp4"]["format_ids"], recommended["best_mp4"]["ext"]) == (
        [mp4_video, "140"],
        "mp4",
    )
    assert (recommended["best_overall"]["format_ids"], recommended["best_overall"]["ext"]) == (
        [best_video, "251"],
        "webm",
    )
    # The page shown is the URL the user gave, not the signed manifest it redirected to.
    assert result["webpage_url"] == origin.dash_url


def test_every_served_format_and_pair_has_a_fresh_signed_download_link(start_app, origin) -> None:
    server = start_app()
    signer = server.core.signer
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.dash_url)
        again = client.get(f"/v1/tasks/{task['task_id']}").json()
    result = task["result"]
    for group in result["formats"].values():
        for fmt in group:
            link = read_link(signer, fmt["download_url"].removeprefix("/v1/download/"))
            assert (link["u"], link["f"], link["x"]) == (
                origin.dash_url,
                [fmt["format_id"]],
                fmt["ext"],
            )
    pair = result["recommended"]["best_overall"]
    link = read_link(signer, pair["download_url"].removeprefix("/v1/download/"))
    assert (link["f"], link["x"]) == (pair["format_ids"], "webm")
    # Links are made when served, so two polls carry two different tokens.
    assert (
        again["result"]["formats"]["audio_only"][0]["download_url"]
        != (result["formats"]["audio_only"][0]["download_url"])
    )


def test_vod_mp4_is_one_muxed_format(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.vod_url)
    assert task["state"] == "completed"
    result = task["result"]
    # A plain file link: yt-dlp's generic extractor does not read the codecs inside.
    assert [(f["format_id"], f["ext"]) for f in result["formats"]["muxed"]] == [("mp4", "mp4")]
    assert result["formats"]["video_only"] == result["formats"]["audio_only"] == []
    assert result["recommended"]["best_muxed"]["format_ids"] == ["mp4"]
    assert result["is_live"] is False


def test_live_hls_master_gives_muxed_variants_best_first(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.channel_url("analyse"))
    assert task["state"] == "completed"
    result = task["result"]
    assert result["is_live"] is True
    assert [(f[1], f[2], f[3]) for f in summary(result, "muxed")] == [
        ("H.264", "AAC", 180),
        ("H.264", "AAC", 90),
    ]
    assert [f["protocol"] for f in result["formats"]["muxed"]] == ["m3u8_native"] * 2
    assert [f["resolution"] for f in result["formats"]["muxed"]] == ["180p", "90p"]


def test_second_analysis_of_a_url_completes_at_once_from_the_cache(start_app, origin) -> None:
    server = start_app()
    metrics = server.core.metrics
    with httpx.Client(base_url=server.base_url) as client:
        first = analyse(client, origin.vod_url)
        calls = server.core.extractor.calls
        manifest_requests = origin.count("/watch/vod")
        # The same video with a tracking parameter and a fragment normalises to the same key.
        second_id = submit(client, origin.vod_url + "?utm_source=x#t=3")
        second = client.get(f"/v1/tasks/{second_id}").json()
    assert second_id != first["task_id"]
    assert (second["state"], second["progress"]) == ("completed", 100)
    assert second["result"]["formats"]["muxed"][0]["format_id"] == "mp4"
    assert server.core.extractor.calls == calls == 1
    assert origin.count("/watch/vod") == manifest_requests
    assert metrics.registry.get_sample_value("cache_hits_total", {"cache": "result"}) == 1
    assert metrics.cache_misses.labels("result")._value.get() == 1
    assert metrics.tasks.labels("completed")._value.get() == 2
    assert metrics.tasks.labels("pending")._value.get() == 1


def test_a_completed_analysis_stores_sources_for_the_download_relay(start_app, origin) -> None:

    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        analyse(client, origin.dash_url)
    sources = server.call(lambda: server.sources.load(origin.dash_url))
    assert server.core.extractor.calls == 1
    assert {f["format_id"] for f in sources["formats"]} >= {"133", "160", "278", "140", "251"}


def test_metrics_count_tasks_and_analysis_duration(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        analyse(client, origin.vod_url)
        analyse(client, origin.url("/missing"))
        text = client.get("/metrics").text
    assert 'analysis_tasks_total{state="completed"} 1.0' in text
    assert 'analysis_tasks_total{state="failed"} 1.0' in text
    assert 'analysis_tasks_active{state="running"} 0.0' in text
    assert "analysis_duration_seconds_count 2.0" in text
    assert 'cache_misses_total{cache="result"} 2.0' in text


@pytest.fixture
def playlist_page() -> Iterator[str]:
    """A page with two videos, which yt-dlp's generic extractor returns as a playlist."""
    html = (
        b"<html><head><title>two videos</title></head><body>"
        b'<video src="/a.mp4"></video><video src="/b.mp4"></video></body></html>'
    )

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/page"
    server.shutdown()
    server.server_close()


def test_yt_dlp_failures_end_tasks_with_stable_codes(start_app, origin, playlist_page) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        missing = analyse(client, origin.url("/missing"))
        unsupported = analyse(client, server.url("/health"))
        playlist = analyse(client, playlist_page)
        refused = analyse(client, "http://127.0.0.1:9/closed-port")
    failures = {
        "missing": missing["error"]["code"],
        "unsupported": unsupported["error"]["code"],
        "refused": refused["error"]["code"],
    }
    assert failures == {
        "missing": "video_unavailable",
        "unsupported": "unsupported_url",
        "refused": "network_error",
    }
    # A page of several videos is a playlist now (tests/test_playlists.py), not a failure.
    assert playlist["state"] == "completed" and playlist["result"]["type"] == "playlist"
    assert [e["url"].rsplit("/", 1)[1] for e in playlist["result"]["entries"]] == [
        "a.mp4",
        "b.mp4",
    ]
    for task in (missing, unsupported, refused):
        assert (task["state"], task["stage"], task["result"]) == ("failed", "done", None)
        assert task["error"]["message"]


def test_htmx_submission_returns_a_fragment_that_polls_until_the_result_card(
    start_app, origin
) -> None:
    server = start_app()
    htmx = {"HX-Request": "true", "Accept": "text/html"}
    with (
        httpx.Client(base_url=server.base_url, headers=htmx) as client,
        httpx.Client(base_url=server.base_url) as api,
    ):
        response = client.post("/v1/analyze", data={"url": origin.dash_url})
        assert response.status_code == 202
        assert response.headers["content-type"].startswith("text/html")
        task_id = response.headers["location"].rsplit("/", 1)[1]
        fragment = response.text
        assert f'id="task-{task_id}"' in fragment
        wait(api, task_id)
        done = client.get(f"/v1/tasks/{task_id}").text
        failed_id = client.post("/v1/analyze", data={"url": origin.url("/missing")}).headers[
            "location"
        ]
        wait(api, failed_id.rsplit("/", 1)[1])
        failed = client.get(failed_id).text
    if 'data-state="completed"' not in fragment:
        assert f'hx-get="/v1/tasks/{task_id}"' in fragment
        assert "<progress" in fragment
    assert 'data-state="completed"' in done and "hx-get" not in done
    assert 'data-format-id="133"' in done and 'data-group="audio_only"' in done
    assert 'data-choice="best_mp4"' in done and "/v1/download/" in done
    assert 'data-state="failed"' in failed and 'data-code="video_unavailable"' in failed
    assert "hx-get" not in failed


def test_htmx_submission_of_a_cached_url_returns_the_result_card_with_links(
    start_app, origin
) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        analyse(client, origin.dash_url)
        response = client.post(
            "/v1/analyze", data={"url": origin.dash_url}, headers={"HX-Request": "true"}
        )
    assert response.status_code == 202
    assert 'data-state="completed"' in response.text
    assert "/v1/download/" in response.text and "hx-get" not in response.text


def test_start_page_form_posts_to_analyze_with_htmx(start_app) -> None:
    server = start_app()
    page = httpx.get(server.url("/"), headers={"Accept": "text/html"}).text
    assert 'hx-post="/v1/analyze"' in page and 'hx-target="#task"' in page
    assert "/static/app.js" in page
    script = httpx.get(server.url("/static/app.js"))
    assert script.status_code == 200 and "responseHandling" in script.text
