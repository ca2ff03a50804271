"""The task runner's behaviour: accepting before extracting, joining, the bounded queue,
timeouts, progress, shutdown and lost tasks. Real app, real yt-dlp, the local origin;
slowness comes from the origin's latency switch, never from sleeping in the app."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from ytproxy.analyse.tasks import STALE_AFTER, task_key


@pytest.fixture
def start_app(app_server, settings):
    return lambda **changes: app_server(settings, **changes)


def post(client: httpx.Client, url: str) -> httpx.Response:
    return client.post("/v1/analyze", json={"url": url})


def submit(client: httpx.Client, url: str) -> str:
    response = post(client, url)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def poll(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait(client: httpx.Client, task_id: str, states: set[str], limit: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        body = poll(client, task_id)
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, f"task still {body['state']}"
        time.sleep(0.02)


def test_post_returns_before_extraction_starts(start_app, origin) -> None:
    server = start_app(max_concurrent_analyses=1)
    origin.add_latency("/watch/dash", 2.0)
    with httpx.Client(base_url=server.base_url) as client:
        first = submit(client, origin.dash_url)
        wait(client, first, {"running"})
        # The only slot is busy: this task cannot have started when its POST returns.
        second = submit(client, origin.vod_url)
        queued = poll(client, second)
        calls_at_return = server.core.extractor.calls
        done = wait(client, second, {"completed", "failed"})
    assert (queued["state"], queued["stage"], queued["progress"]) == ("pending", "queued", 0)
    assert queued["result"] is None and queued["error"] is None
    assert calls_at_return == 1
    assert done["state"] == "completed"
    assert server.core.extractor.calls == 2


def test_same_url_while_running_joins_the_task(start_app, origin) -> None:
    server = start_app()
    origin.add_latency("/watch/dash", 1.0)
    with httpx.Client(base_url=server.base_url) as client:
        ids = {submit(client, origin.dash_url) for _ in range(5)}
        # The same video, spelt differently, is the same task.
        ids.add(submit(client, origin.dash_url.replace("http://", "HTTP://") + "#x"))
        (task_id,) = ids
        done = wait(client, task_id, {"completed", "failed"})
    assert done["state"] == "completed"
    assert server.core.extractor.calls == 1
    assert origin.count("/watch/dash") == 1


def test_progress_moves_through_the_stages_in_order(start_app, origin) -> None:
    server = start_app()
    origin.add_latency("/dash/manifest.mpd", 1.0)
    seen: list[tuple[str, int]] = []
    with httpx.Client(base_url=server.base_url) as client:
        task_id = submit(client, origin.dash_url)
        while True:
            body = poll(client, task_id)
            if not seen or seen[-1] != (body["stage"], body["progress"]):
                seen.append((body["stage"], body["progress"]))
            if body["state"] in {"completed", "failed"}:
                break
            time.sleep(0.02)
    order = ["queued", "extracting", "classifying", "done"]
    stages = [stage for stage, _ in seen]
    assert stages == sorted(stages, key=order.index)
    progress = [value for _, value in seen]
    assert progress == sorted(progress)
    # While the manifest is held back, the webpage line has already moved the bar.
    assert any(stage == "extracting" and 5 < value < 90 for stage, value in seen)
    assert seen[-1] == ("done", 100)


def test_a_task_over_the_timeout_fails_with_upstream_timeout(start_app, origin) -> None:
    server = start_app(analyze_timeout=1.0)
    origin.add_latency("/watch/dash", 3.0)
    with httpx.Client(base_url=server.base_url) as client:
        body = wait(client, submit(client, origin.dash_url), {"completed", "failed"})
    assert body["state"] == "failed"
    assert body["error"]["code"] == "upstream_timeout"
    assert "1 s" in body["error"]["message"]


def test_full_queue_answers_429_and_shutdown_fails_every_unfinished_task(
    start_app, origin, redis_url
) -> None:
    first_app = start_app(redis_url=redis_url, max_concurrent_analyses=1, analyze_queue_size=1)
    origin.add_latency("/watch/", 5.0)
    with httpx.Client(base_url=first_app.base_url) as client:
        running = submit(client, origin.dash_url)
        wait(client, running, {"running"})
        pending = submit(client, origin.vod_url)
        refused = post(client, origin.dash_url + "?other=1")
        joined = post(client, origin.dash_url)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    # Joining a running task needs no queue place.
    assert joined.status_code == 202 and joined.json()["task_id"] == running

    first_app.stop()
    second_app = start_app(redis_url=redis_url)
    with httpx.Client(base_url=second_app.base_url) as client:
        after = {task_id: poll(client, task_id) for task_id in (running, pending)}
        # The leases were released: the URL can be analysed again at once.
        retried = post(client, origin.dash_url).json()["task_id"]
    for body in after.values():
        assert (body["state"], body["stage"]) == ("failed", "done")
        assert body["error"]["code"] == "cancelled"
    assert retried not in after


def test_a_task_whose_instance_died_is_reported_lost(start_app) -> None:
    server = start_app()
    task_id = "0123456789abcdef0123456789abcdef"
    record = {
        "task_id": task_id,
        "url": "https://example.com/v",
        "url_hash": "x",
        "state": "running",
        "stage": "extracting",
        "progress": 40,
        "error": None,
        "result_key": None,
        "created": time.time() - 600,
        "heartbeat": time.time() - STALE_AFTER - 5,
    }
    server.call(lambda: server.core.cache.set(task_key(task_id), record, 60))
    body = httpx.get(server.url(f"/v1/tasks/{task_id}")).json()
    assert (body["state"], body["error"]["code"], body["result"]) == ("failed", "task_lost", None)


def test_live_resolution_does_not_wait_behind_queued_analyses(start_app, origin) -> None:
    server = start_app(max_concurrent_ytdlp_requests=2, max_concurrent_analyses=1)
    origin.add_latency("/watch/", 6.0)
    with httpx.Client(base_url=server.base_url) as client:
        ids = [submit(client, f"{origin.dash_url}?n={n}") for n in range(3)]
        wait(client, ids[0], {"running"})
        info = server.call(
            lambda: server.core.extractor.extract(origin.channel_url("lane"), lane="live")
        )
        states = [poll(client, task_id)["state"] for task_id in ids]
    assert info["is_live"] is True
    # The channel resolved while the analyses still held their slot and their queue.
    assert states == ["running", "pending", "pending"]
