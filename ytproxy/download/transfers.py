"""The registry of active downloads (to be built in the download issue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services import Services


class Transfers:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def close(self) -> None:
        return None
