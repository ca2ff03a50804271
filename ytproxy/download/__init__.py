"""Job two, second half: stream a chosen format, or a merged pair, to the user."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
