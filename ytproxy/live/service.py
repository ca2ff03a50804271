"""The live-channels component (to be built in the live-channels issue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services import Services


class LiveService:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
