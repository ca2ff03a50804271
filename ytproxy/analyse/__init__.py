"""Job two, first half: analyse a video URL as a background task."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
