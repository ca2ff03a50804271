"""The googlevideo-shaped live (path-style signed URLs, itags, program dates) through
the relay: fan-out to many viewers and no upstream URL in anything a client gets."""

from __future__ import annotations

import asyncio
import functools
import re
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.origin import Origin
from tests.players import uri_lines, watch

VID = "gvfanout001"


def _record(seen: set[int], sequence: int, body: bytes) -> None:
    assert body[:1] == b"\x47"  # MPEG-TS
    seen.add(sequence)


async def test_fifty_viewers_of_a_googlevideo_live_cause_one_fetch_per_segment(
    app_server, settings, channels_file: Path, origin: Origin
) -> None:
    origin.youtube.add_live(VID, handle="gv", flavour="muxed")
    channels_file.write_text(
        f'[[channel]]\nid = "gv"\nname = "GV"\nurl = "{origin.youtube.watch_url(VID)}"\n',
        encoding="utf-8",
    )
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        # Resolve once before the viewers arrive (as viewer-0, so no extra viewer).
        client.get("/live/gv.m3u8", headers={"User-Agent": "viewer-0"})
    seen: dict[int, set[int]] = defaultdict(set)
    await asyncio.gather(
        *(
            watch(
                server.url("/live/gv.m3u8"),
                f"viewer-{n}",
                n % 2,
                20.0,
                functools.partial(_record, seen[n % 2]),
                start_with=2,
            )
            for n in range(50)
        )
    )
    assert server.live.viewers.count("gv") == 50
    fetches = {itag: origin.youtube.segment_fetches(VID, itag) for itag in (91, 92)}
    # The master lists the variants lowest bandwidth first: 91 (144p), then 92 (240p).
    for index, itag in enumerate((91, 92)):
        assert len(seen[index]) >= 8, seen
        assert fetches[itag] == dict.fromkeys(seen[index], 1), (itag, fetches[itag], seen[index])
    assert origin.youtube.extractions(VID) == 1


def test_nothing_a_client_gets_names_googlevideo_or_the_origin(
    app_server, settings, channels_file: Path, origin: Origin
) -> None:
    origin.youtube.add_live(VID, handle="gv", flavour="demuxed")
    channels_file.write_text(
        f'[[channel]]\nid = "gv"\nname = "GV"\nurl = "{origin.youtube.watch_url(VID)}"\n',
        encoding="utf-8",
    )
    server = app_server(settings)
    leaks = re.compile(
        rf"{re.escape(urlsplit(origin.url('/')).netloc)}|/videoplayback/|/api/manifest/|/itag/|/sig/|/expire/"
    )
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        bodies = [client.get(path) for path in ("/playlist.m3u", "/api/channels", "/api/stream/gv")]
        master = client.get("/live/gv.m3u8")
        bodies.append(master)
        assert "TYPE=AUDIO" in master.text and 'AUDIO="' in master.text
        for media_url in re.findall(r'URI="([^"]+)"', master.text) + uri_lines(master.text):
            media = client.get(media_url)
            bodies.append(media)
            for segment_url in uri_lines(media.text)[-2:]:
                segment = client.get(segment_url)
                assert segment.status_code == 200
                bodies.append(segment)
    for response in bodies:
        text = response.text if "mpegurl" in response.headers.get("content-type", "") else ""
        text += response.text if "json" in response.headers.get("content-type", "") else ""
        assert not leaks.search(text), (str(response.url), leaks.search(text))
        assert not leaks.search(str(dict(response.headers))), str(response.url)
