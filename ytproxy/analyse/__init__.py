"""Job two, first half: analyse a video URL as a background task.

`POST /v1/analyze` registers a task and returns at once; `GET /v1/tasks/{id}` reports
its progress and, when it completes, the video's metadata and every format grouped as
muxed / video only / audio only, with download links.

- `ytproxy/urlguard.py` (shared with the image relay): which URLs may be fetched
  (http(s), length, no private addresses);
- `tasks.py`: one task's state, progress and cache record;
- `runner.py`: the registry, semaphore, bounded queue, timeouts, joining, shutdown;
- `formats.py`: yt-dlp's info dict → the public result and its recommendations;
- `degraded.py`: the result's `warnings` when YouTube answered with less (PO token,
  SABR, JS challenges, only format 18, `available_at`);
- `endpoints.py`: the two HTTP endpoints (JSON for curl, fragments for HTMX).

Playlists and channel pages are refused with `playlist_not_supported` (the extractor
runs yt-dlp with `noplaylist` and rejects what still comes back as a playlist): one
task analyses one video. A person who wants several videos submits each watch URL.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from . import endpoints


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/analyze", endpoints.analyze, methods=["POST"], name="analyze"),
        # `path`, so that any id under /v1/tasks/ (slashes too) is answered task_not_found.
        Route(
            "/v1/tasks/{task_id:path}", endpoints.task_status, methods=["GET"], name="task_status"
        ),
    ]
