"""Job one: live YouTube channels as an IPTV playlist, relayed through the gateway."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
