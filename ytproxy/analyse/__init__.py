"""Job two, first half: analyse a video URL as a background task.

`POST /v1/analyze` registers a task and returns at once; `GET /v1/tasks/{id}` reports
its progress and, when it completes, the video's metadata and every format grouped as
muxed / video only / audio only, with download links.

- `ytproxy/urlguard.py` (shared with the image relay): which URLs may be fetched
  (http(s), length, no private addresses);
- `tasks.py`: one task's state, progress and cache record;
- `runner.py`: the registry, semaphore, bounded queue, timeouts, joining, shutdown;
- `formats.py`: yt-dlp's info dict → the public result and its recommendations;
- `playlists.py`: a flat playlist listing → the playlist result, and its pages;
- `degraded.py`: the result's `warnings` when YouTube answered with less (PO token,
  SABR, JS challenges, only format 18, `available_at`);
- `endpoints.py`: the two HTTP endpoints (JSON for curl, fragments for HTMX).

A playlist or channel URL is listed, not refused: its result has `type: "playlist"`
and the entries (`playlists.py`), paged on the task (`?page=N`); each entry's URL is
analysed like any other, from the page or the API, and chosen entries download as
one ZIP (`ytproxy/download/archive.py`). A video's result has `type: "video"`. A watch
URL that also names a playlist (`&list=`) is the video (yt-dlp's `noplaylist`).
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
