"""Playlists and their ZIP, end to end: the real app, real yt-dlp, the local origin's RSS
feed (`tests/origin/feeds.py`: four MP4 enclosures, one of which answers 404).

A feed URL becomes a `type: "playlist"` result with every entry, paged on the task;
an entry's URL analyses like any video; chosen entries download as one streamed ZIP
whose members are byte-identical to the direct downloads of the same formats, and
whose README.txt names the entry that could not be fetched.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.origin.feeds import FEED_TITLE, ITEMS, MISSING
from tests.test_analyse_origin import analyse
from ytproxy.analyse.tasks import Task


@pytest.fixture
def start_app(app_server, settings):
    return lambda **changes: app_server(settings, **changes)


def entries_by_title(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["title"]: e for e in result["entries"]}


def direct_download(client: httpx.Client, url: str) -> bytes:
    """The entry analysed on its own, its single-file format downloaded directly."""
    task = analyse(client, url)
    assert task["state"] == "completed", task["error"]
    link = task["result"]["recommended"]["best_muxed"]["download_url"]
    response = client.get(link)
    assert response.status_code == 200
    return response.content


def test_rss_feed_is_a_playlist_result_with_every_entry_and_pages(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.feeds.feed_url)
        assert task["state"] == "completed", task["error"]
        result = task["result"]
        two = client.get(f"/v1/tasks/{task['task_id']}", params={"page": 2, "per_page": 3})
        beyond = client.get(f"/v1/tasks/{task['task_id']}", params={"page": 3, "per_page": 3})
        bad = client.get(f"/v1/tasks/{task['task_id']}", params={"per_page": 101})
    assert result["type"] == "playlist"
    assert (result["title"], result["entry_count"], result["truncated"]) == (FEED_TITLE, 4, False)
    assert (result["page"], result["pages"], result["total"]) == (1, 1, 4)
    assert [e["title"] for e in result["entries"]] == [title for _, title, _ in ITEMS]
    assert [e["url"] for e in result["entries"]] == [origin.feeds.media_url(n) for n, _, _ in ITEMS]
    assert len({e["id"] for e in result["entries"]}) == 4
    first = result["entries"][0]
    assert first["duration"] == 4 and first["index"] == 1
    assert first["thumbnail_url"].startswith("/v1/image/")
    assert "formats" not in result
    page = two.json()["result"]
    assert (page["page"], page["pages"], page["per_page"], page["total"]) == (2, 2, 3, 4)
    assert [e["title"] for e in page["entries"]] == [ITEMS[3][1]]
    assert beyond.status_code == 400 and beyond.json()["error"]["code"] == "invalid_page"
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_page"


def test_playlist_max_entries_bounds_the_listing(start_app, origin) -> None:
    server = start_app(playlist_max_entries=3)
    with httpx.Client(base_url=server.base_url) as client:
        task = analyse(client, origin.feeds.big_feed_url(7))
    result = task["result"]
    assert [e["title"] for e in result["entries"]] == ["Clip 1", "Clip 2", "Clip 3"]
    assert (result["listed"], result["entry_count"], result["truncated"]) == (3, 7, True)


def test_an_entry_analysed_from_the_playlist_completes_as_a_video(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url) as client:
        playlist = analyse(client, origin.feeds.feed_url)["result"]
        entry = entries_by_title(playlist)["Second clip — zwei"]
        task = analyse(client, entry["url"])
    assert task["state"] == "completed", task["error"]
    assert task["result"]["type"] == "video"
    assert task["result"]["recommended"]["best_muxed"]["download_url"].startswith("/v1/download/")


def test_listing_moves_the_stage_and_progress_with_the_entries() -> None:
    task = Task(task_id="0" * 32, url="https://example.com/list", url_hash="x")
    task.start()
    task.advance("[download] Downloading playlist: The test feed")
    assert task.stage == "listing"
    seen = []
    for n in range(1, 5):
        task.advance(f"[download] Downloading item {n} of 4")
        seen.append(task.progress)
    assert seen == [25, 45, 65, 85]


def test_zip_of_chosen_entries_holds_the_direct_downloads_byte_for_byte(
    start_app, origin, tmp_path: Path
) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        task = analyse(client, origin.feeds.feed_url)
        by_title = entries_by_title(task["result"])
        chosen = [by_title["First clip"], by_title["Third clip"]]
        made = client.post(
            "/v1/zip", json={"task_id": task["task_id"], "entries": [e["id"] for e in chosen]}
        )
        assert made.status_code == 200, made.text
        assert made.json()["entries"] == 2
        response = client.get(made.json()["zip_url"])
        direct = [direct_download(client, e["url"]) for e in chosen]
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert ".zip" in response.headers["content-disposition"]
    path = tmp_path / "chosen.zip"
    path.write_bytes(response.content)
    check = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names == ["1 First clip.mp4", "2 Third clip.mp4"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
        assert [archive.read(n) for n in names] == direct
    assert direct[0] != direct[1]


def test_zip_skips_a_failing_entry_and_names_it_in_readme(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        task = analyse(client, origin.feeds.feed_url)
        made = client.post("/v1/zip", json={"task_id": task["task_id"], "page": 1})
        response = client.get(made.json()["zip_url"])
        downloads = client.get("/metrics").text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        readme = archive.read("README.txt").decode()
    assert names == [
        "1 First clip.mp4",
        "2 Second clip — zwei.mp4",
        "4 Third clip.mp4",
        "README.txt",
    ]
    assert "3 of 4" in readme and "3 A clip that is gone" in readme
    assert origin.feeds.media_url(MISSING) in readme
    assert 'downloads_total{mode="zip",outcome="completed"} 1.0' in downloads


def test_zip_is_one_download_for_the_per_client_slots(start_app, origin) -> None:
    server = start_app(max_downloads_per_client=1)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        task = analyse(client, origin.feeds.feed_url)
        made = client.post("/v1/zip", json={"task_id": task["task_id"], "page": 1}).json()
        second = analyse(client, origin.feeds.media_url("second"))
        link = second["result"]["recommended"]["best_muxed"]["download_url"]
        # The ZIP's first entry answers slowly: the ZIP is running meanwhile.
        origin.add_latency("/feeds/media/first", 5)
        with client.stream("GET", made["zip_url"]) as running:
            assert running.status_code == 200
            listing = client.get("/v1/transfers").json()
            refused = client.get(link)
    assert [t["mode"] for t in listing["transfers"]] == ["zip"]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_downloads_per_client"


def test_zip_requests_are_checked(start_app, origin) -> None:
    server = start_app()
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        playlist = analyse(client, origin.feeds.feed_url)
        video = analyse(client, origin.feeds.media_url("first"))
        answers = {
            "unknown_task": client.post("/v1/zip", json={"task_id": "f" * 32, "page": 1}),
            "not_playlist": client.post("/v1/zip", json={"task_id": video["task_id"], "page": 1}),
            "unknown_entry": client.post(
                "/v1/zip", json={"task_id": playlist["task_id"], "entries": ["nope"]}
            ),
            "nothing": client.post("/v1/zip", json={"task_id": playlist["task_id"]}),
            "forged": client.get("/v1/zip/not-a-token"),
        }
    codes = {k: (r.status_code, r.json()["error"]["code"]) for k, r in answers.items()}
    assert codes["unknown_task"] == (404, "task_not_found")
    assert codes["not_playlist"] == (422, "not_a_playlist")
    assert codes["unknown_entry"] == (400, "invalid_entries")
    assert codes["nothing"] == (400, "missing_field")
    assert codes["forged"][0] == 403
