"""`make demo`: the gateway working end to end with no internet at all.

It starts the test suite's local origin (`tests/origin`: ffmpeg-made live HLS, a VOD MP4,
a DASH video, and YouTube-shaped lives answered through the yt-dlp plugin in
`tests/plugins`) and the gateway beside it, with the channels of
`scripts/demo-channels.toml` pointed at that origin, then prints what to open: the
channels page (a live channel playing in the page), a video URL to analyse (every format
group, and a merged download), the IPTV playlist and the guide.

`Demo` is what both this script and `tests/test_demo.py` run. It is a demonstration, not
a way to deploy: the origin is a test double, private networks are allowed (the origin is
on 127.0.0.1), the secret key is random per run and nothing is kept afterwards.

    python scripts/demo.py [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "plugins"
CHANNELS_TEMPLATE = ROOT / "scripts" / "demo-channels.toml"

# The origin lives in tests/, and yt-dlp finds the YouTube imitation among the plugins
# on sys.path (`make demo` also puts both on PYTHONPATH, for any process it starts).
for _path in (str(ROOT), str(PLUGINS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import uvicorn  # noqa: E402

from tests.origin import Origin, generate_media  # noqa: E402
from ytproxy.app import create_app  # noqa: E402
from ytproxy.server import uvicorn_config  # noqa: E402
from ytproxy.settings import Settings  # noqa: E402


@dataclass(frozen=True)
class DemoLinks:
    """What to open, all on the gateway except `video` (the URL to paste)."""

    home: str
    channels: str
    video: str
    vod: str
    playlist: str
    guide: str | None
    health: str

    def describe(self) -> str:
        lines = [
            "ytproxy demo: the gateway and a local stand-in for YouTube, no internet needed.",
            "",
            f"  Live channels (press Play):  {self.channels}",
            f"  Analyse a video:             {self.home}",
            f"      paste this URL:          {self.video}",
            "      it lists video with audio, video only and audio only; the recommended",
            "      MP4 downloads as video and audio merged on the fly.",
            f"      or this single MP4:      {self.vod}",
            f"  IPTV playlist (VLC, Kodi):   {self.playlist}",
        ]
        if self.guide is not None:
            lines.append(f"  Programme guide (XMLTV):     {self.guide}")
        lines += [f"  Health:                      {self.health}", "", "Ctrl-C stops it."]
        return "\n".join(lines)


class Demo:
    """The origin, its lives, a channels file and the gateway, started and stopped together."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self._host = host
        self._port = port
        self.origin: Origin | None = None
        self.settings: Settings | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> DemoLinks:
        media = generate_media(self.directory / "media")
        origin = self.origin = Origin(media)
        origin.start()
        youtube = origin.youtube
        youtube.add_live(
            "demonews001", handle="demonews", title="Demo News", channel_name="Demo News"
        )
        youtube.add_live("demostudio1", handle="demostudio", title="Demo Studio", flavour="demuxed")
        youtube.add_live(
            "democoncert", handle="democoncert", title="Concert 演唱会", starts_in=3600
        )
        channels = self.directory / "channels.toml"
        channels.write_text(
            CHANNELS_TEMPLATE.read_text(encoding="utf-8").replace("{origin}", origin.base_url),
            encoding="utf-8",
        )
        sock = self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        port = sock.getsockname()[1]
        # Parsed like `python app.py` parses its environment, from a mapping of our own:
        # the operator's .env has no say in the demo.
        settings = self.settings = Settings.from_env(
            {
                "HOST": self._host,
                "PORT": str(port),
                "CHANNELS_FILE": str(channels),
                "ALLOW_PRIVATE_NETWORKS": "true",
                "SECRET_KEY": secrets.token_hex(32),
                "ANALYZE_RATE_LIMIT": "0",
            }
        )
        app = create_app(settings)
        server = self._server = uvicorn.Server(uvicorn_config(app, settings, graceful_shutdown=2))
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="demo-gateway", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start; see the log above")
            time.sleep(0.05)
        base = f"http://{self._host}:{port}"
        has_guide = any(getattr(route, "path", None) == "/epg.xml" for route in app.routes)
        return DemoLinks(
            home=f"{base}/",
            channels=f"{base}/channels",
            video=origin.dash_url,
            vod=origin.vod_url,
            playlist=f"{base}/playlist.m3u",
            guide=f"{base}/epg.xml" if has_guide else None,
            health=f"{base}/health",
        )

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()
        if self.origin is not None:
            self.origin.stop()
        self._server = self._thread = self._sock = self.origin = None

    def __enter__(self) -> DemoLinks:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p
    )

    from ytproxy.logs import configure_logging

    directory = Path(tempfile.mkdtemp(prefix="ytproxy-demo-"))
    try:
        print("Making the demo's media with ffmpeg (a few seconds)...", flush=True)
        demo = Demo(directory, host=args.host, port=args.port)
        with demo as links:
            assert demo.settings is not None
            configure_logging(demo.settings.replace(log_level="WARNING"))
            print(links.describe(), flush=True)
            print(f"\n(The demo's channels file: {directory / 'channels.toml'})", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nStopping.", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
