"""Real players on googlevideo-shaped lives through the gateway (issue 11's acceptance).

The origin's YouTube imitation (`origin.youtube`) serves a demuxed live (a master with
one audio rendition, itag 233, and video-only variants 269 and 229) and a muxed one
(variants 91 and 92), with signed URLs that expire after 20 s here: a minute of playback
crosses at least two expiries, which the gateway absorbs by re-resolving.

ffmpeg and VLC record what they play; ffprobe measures the recording (one video and one
audio stream, a duration within 10 % of the wall time). Exit codes prove nothing: players
exit 0 on truncated media. VLC refuses root, so it runs as `nobody` through `setpriv`.
Each test takes a little over a minute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Origin
from tests.players import ffmpeg_record
from tests.test_live_relay import uri_lines
from ytproxy.settings import Settings

WALL = 60.0
URL_LIFETIME = 20.0
_MEDIA_URI = re.compile(r'URI="([^"]+)"')


def start_youtube_live(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
    video_id: str,
    flavour: str,
) -> AppServer:
    origin.youtube.add_live(video_id, handle="tv2026", flavour=flavour)  # type: ignore[arg-type]
    origin.youtube.set_url_lifetime(URL_LIFETIME)
    channels_file.write_text(
        f'[[channel]]\nid = "{video_id}"\nname = "Live {flavour}"\n'
        f'url = "{origin.youtube.watch_url(video_id)}"\n',
        encoding="utf-8",
    )
    return app_server(settings)


def probe_streams(path: Path) -> tuple[list[str], float]:
    """The codec types of the recording's streams, and its duration in seconds."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(out.stdout)
    kinds = sorted(s["codec_type"] for s in found["streams"])
    return kinds, float(found["format"]["duration"])


def played_seconds(path: Path) -> float:
    """How much media the recording holds: the shorter of its streams' summed packet
    durations. VLC's TS muxer writes the source timestamps as they are, so at the origin's
    DISCONTINUITY (its 30 s media loop wraps) they start again from zero and the format
    duration ffprobe reports covers only the stretch since the last reset."""
    totals: dict[str, float] = {}
    for kind in ("v", "a"):
        out = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-select_streams",
                f"{kind}:0",
                "-show_entries",
                "packet=duration_time",
                "-of",
                "csv=p=0",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        durations = [line.strip(",") for line in out.stdout.split()]
        totals[kind] = sum(float(d) for d in durations if d not in ("", "N/A"))
    return min(totals.values())


def stop(player: subprocess.Popen[str], first: signal.Signals) -> str:
    """Stop a player politely, then for good; its stderr."""
    player.send_signal(first)
    try:
        _, stderr = player.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        player.kill()
        _, stderr = player.communicate(timeout=20)
    return stderr


def ffmpeg_watch(url: str, out: Path) -> tuple[str, float]:
    """Record the first video and the first audio stream of a master for `WALL` seconds
    with stream copy; ffmpeg's stderr and the wall time the recording took."""
    started = time.monotonic()
    player = ffmpeg_record(url, out, before=("-live_start_index", "-1"), maps=("0:v:0", "0:a:0"))
    time.sleep(WALL)
    stderr = stop(player, signal.SIGINT)  # ffmpeg finishes the file on SIGINT
    return stderr, time.monotonic() - started


def origin_traces(text: str, origin: Origin) -> list[str]:
    needles = (
        origin.base_url.removeprefix("http://"),
        "/videoplayback/",
        "/api/manifest/",
        "googlevideo",
    )
    return [line for line in text.splitlines() if any(n in line for n in needles)]


def served_playlists(master_url: str) -> dict[str, str]:
    """The master and every playlist it lists (variants and renditions), as served."""
    with httpx.Client(timeout=30) as client:
        master = client.get(master_url)
        assert master.status_code == 200, master.text
        bodies = {master_url: master.text}
        for uri in uri_lines(master.text) + _MEDIA_URI.findall(master.text):
            response = client.get(uri)
            assert response.status_code == 200, (uri, response.text)
            bodies[uri] = response.text
    return bodies


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("flavour", ["demuxed", "muxed"])
def test_ffmpeg_records_a_minute_of_the_live_across_url_expiries_and_no_origin_url_leaks(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
    tmp_path: Path,
    flavour: str,
) -> None:
    vid = {"demuxed": "demuxlive26", "muxed": "muxedlive26"}[flavour]
    server = start_youtube_live(origin, channels_file, settings, app_server, vid, flavour)
    master_url = server.url(f"/live/{vid}.m3u8")
    bodies = served_playlists(master_url)
    # The master and its media playlists: itags 91 and 92, or 269, 229 and audio 233.
    assert len(bodies) == {"muxed": 3, "demuxed": 4}[flavour], list(bodies)
    out = tmp_path / f"{flavour}.ts"
    stderr, elapsed = ffmpeg_watch(master_url, out)
    bodies.update(served_playlists(master_url))  # and once more, after the expiries
    for url, text in bodies.items():
        assert origin_traces(text, origin) == [], (url, text)
    kinds, recorded = probe_streams(out)
    print(f"recorded {recorded:.1f} s of {elapsed:.1f} s: {kinds}")
    assert kinds == ["audio", "video"], stderr
    assert abs(recorded - elapsed) <= 0.1 * elapsed, (recorded, elapsed, stderr)
    # 20 s URLs over a minute: resolved at least twice more after the first time.
    assert origin.youtube.extractions(vid) >= 3


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_vlc_records_a_minute_of_the_demuxed_live_across_url_expiries(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
    request: pytest.FixtureRequest,
) -> None:
    cvlc = shutil.which("cvlc")
    if cvlc is None:
        pytest.skip("cvlc is missing: `scripts/install-system-deps.sh test` installs vlc-bin")
    server = start_youtube_live(
        origin, channels_file, settings, app_server, "vlcdemux026", "demuxed"
    )
    # VLC refuses root: it runs as nobody, with a HOME and an output directory it can
    # write, outside pytest's tmp_path (whose parent only its owner may enter).
    shared = Path(tempfile.mkdtemp(prefix="ytproxy-vlc-"))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o755)
    home = shared / "home"
    outdir = shared / "out"
    for directory in (home, outdir):
        directory.mkdir()
        directory.chmod(0o777)
    out = outdir / "vlc.ts"
    command = [cvlc]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", cvlc]
    player = subprocess.Popen(
        [
            *command,
            "--intf",
            "dummy",
            "--no-video-title-show",
            "--vout=dummy",
            "--aout=dummy",
            "--sout-all",
            "--sout",
            f"#duplicate{{dst=display,dst=std{{access=file,mux=ts,dst={out}}}}}",
            server.url("/live/vlcdemux026.m3u8"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(home)},
    )
    # The clock starts at VLC's first written byte: as nobody it has no plugin cache and
    # takes a few seconds, on a loaded machine, before it opens the URL at all.
    deadline = time.monotonic() + 90
    while not (out.exists() and out.stat().st_size) and player.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    started = time.monotonic()
    time.sleep(WALL)
    stderr = stop(player, signal.SIGTERM)  # then SIGKILL, if it lingers
    elapsed = time.monotonic() - started
    assert out.exists() and out.stat().st_size, stderr[-4000:]
    kinds, _ = probe_streams(out)
    recorded = played_seconds(out)
    print(f"recorded {recorded:.1f} s of {elapsed:.1f} s: {kinds}")
    assert kinds == ["audio", "video"], stderr[-4000:]
    assert abs(recorded - elapsed) <= 0.1 * elapsed, (recorded, elapsed, stderr[-4000:])
    assert origin.youtube.extractions("vlcdemux026") >= 3
