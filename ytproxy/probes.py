"""External programs and local services the app depends on, probed once per app.

`Probes` finds the external programs once at start-up (ffmpeg, the JS runtime) and
pings the PO-token provider with a short cache; `/health` and the diagnostics page
read it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import shutil
import subprocess
import time
from typing import Any

import aiohttp

from .settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Program:
    found: bool
    name: str = ""
    path: str = ""
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Probes:
    """External programs and local services. Its session bypasses `GLOBAL_PROXY`: the
    PO-token provider runs next to the gateway, not behind the proxy."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http: aiohttp.ClientSession | None = None
        self.ffmpeg = Program(found=False, name="ffmpeg")
        self.js_runtime = Program(found=False, name=settings.js_runtime)
        self._pot: tuple[float, dict[str, Any]] | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        self.ffmpeg, self.js_runtime = await asyncio.gather(
            asyncio.to_thread(_find_ffmpeg), asyncio.to_thread(_find_js_runtime, self._settings)
        )
        if not self.ffmpeg.found:
            log.warning("ffmpeg not found: merged video+audio downloads will not work")
        if not self.js_runtime.found:
            log.warning(
                "JavaScript runtime %s not found: yt-dlp needs one for YouTube",
                self._settings.js_runtime,
            )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def pot_provider(self) -> dict[str, Any]:
        url = self._settings.pot_provider_url
        if not url or self._http is None:
            return {"configured": False}
        if self._pot is not None and time.monotonic() - self._pot[0] < 30:
            return self._pot[1]
        result: dict[str, Any] = {"configured": True, "url": url}
        try:
            async with self._http.get(f"{url}/ping") as response:
                result["reachable"] = response.status == 200
                if response.status == 200:
                    body = await response.json(content_type=None)
                    result["version"] = (
                        str(body.get("version", "")) if isinstance(body, dict) else ""
                    )
                else:
                    result["error"] = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            result["reachable"] = False
            result["error"] = type(exc).__name__
        self._pot = (time.monotonic(), result)
        return result


def _find_ffmpeg() -> Program:
    path = shutil.which("ffmpeg")
    if path is None:
        return Program(found=False, name="ffmpeg")
    return Program(found=True, name="ffmpeg", path=path, version=_version_of([path, "-version"]))


def _find_js_runtime(settings: Settings) -> Program:
    # yt-dlp's own detection, so /health says exactly what yt-dlp will find.
    from yt_dlp.globals import supported_js_runtimes

    runtime_cls = supported_js_runtimes.value.get(settings.js_runtime)
    info = runtime_cls(path=settings.js_runtime_path).info if runtime_cls else None
    if info is None:
        return Program(found=False, name=settings.js_runtime)
    return Program(
        found=bool(info.supported), name=info.name, path=info.path, version=str(info.version)
    )


def _version_of(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r"version\s+(\S+)", out.stdout)
    return match.group(1) if match else out.stdout.split("\n", 1)[0][:60]
