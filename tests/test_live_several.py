"""Several lives on one channel: a `/streams` tab with `pick`, or `expand`ed in the M3U.

The local YouTube imitation (`origin.youtube`) runs two lives on `@multi`; its
`/streams` tab is answered by the test plugin as yt-dlp's `YoutubeTabIE` would, as
flat entries with `live_status`. What is checked: which video the origin was asked
for, what the API and the M3U list, and what ffmpeg records through the gateway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Origin
from tests.players import ffmpeg_record, ffprobe_duration
from ytproxy.live.channels import ChannelsError, load_channels
from ytproxy.live.guide import guide_id
from ytproxy.live.streams import derived_id
from ytproxy.settings import Settings

RECORD_8S = ("-t", "8", "-map", "0:p:0", "-c", "copy", "-f", "mpegts")
MAIN, FINANCE = "newsmain001", "newsfinanc1"  # video ids have 11 characters


@pytest.fixture(name="multi")
def multi_fixture(
    origin: Origin, channels_file: Path, settings: Settings, app_server: Callable[..., AppServer]
) -> Callable[..., AppServer]:
    """Starts an app whose channel `multi` is the `/streams` tab, with `fields` added."""
    origin.youtube.add_live(MAIN, handle="multi", title="Main news", flavour="muxed")
    origin.youtube.add_live(FINANCE, handle="multi", title="Finance desk")

    def start(fields: str) -> AppServer:
        channels_file.write_text(
            f'[[channel]]\nid = "multi"\nname = "Multi news"\n'
            f'url = "{origin.youtube.streams_url("multi")}"\ngroup = "News"\n{fields}\n',
            encoding="utf-8",
        )
        return app_server(settings)

    return start


def described(server: AppServer, client: httpx.Client) -> dict[str, dict[str, object]]:
    response = client.get(server.url("/api/channels"))
    assert response.status_code == 200
    return {c["id"]: c for c in response.json()["channels"]}


def test_pick_plays_the_live_whose_title_matches(
    multi: Callable[..., AppServer], origin: Origin
) -> None:
    server = multi('pick = "finance"')
    with httpx.Client(timeout=30) as client:
        stream = client.get(server.url("/api/stream/multi"))
        assert stream.status_code == 200, stream.text
        assert stream.json()["status"] == "live"
        master = client.get(server.url("/live/multi.m3u8"))
        assert master.status_code == 200
        variant = next(line for line in master.text.splitlines() if line.startswith("http"))
        assert client.get(variant).status_code == 200
    assert origin.youtube.extractions(FINANCE) == 1
    assert origin.youtube.extractions(MAIN) == 0
    assert origin.youtube.count(FINANCE, kind="playlist") >= 1
    assert origin.youtube.count(MAIN, kind="playlist") == 0


def test_a_pick_regex_selects_by_pattern(multi: Callable[..., AppServer], origin: Origin) -> None:
    server = multi('pick = "/^main\\\\b/"')
    with httpx.Client(timeout=30) as client:
        assert client.get(server.url("/api/stream/multi")).status_code == 200
    assert origin.youtube.extractions(MAIN) == 1
    assert origin.youtube.extractions(FINANCE) == 0


def test_a_pick_matching_no_live_leaves_the_channel_offline_with_its_reason(
    multi: Callable[..., AppServer], origin: Origin
) -> None:
    server = multi('pick = "sports"')
    with httpx.Client(timeout=30) as client:
        stream = client.get(server.url("/api/stream/multi"))
        assert stream.status_code == 503
        assert stream.json()["error"]["code"] == "channel_offline"
        channel = described(server, client)["multi"]
    assert channel["status"] == "offline"
    assert channel["reason"] == "no_matching_live"
    assert origin.youtube.extractions() == 0


def test_a_streams_tab_with_only_upcoming_lives_is_upcoming_at_the_nearest_start(
    origin: Origin, channels_file: Path, settings: Settings, app_server: Callable[..., AppServer]
) -> None:
    later = origin.youtube.add_live("laterlive01", handle="later", starts_in=7200)
    sooner = origin.youtube.add_live("soonlive001", handle="later", starts_in=3600)
    assert later.start > sooner.start
    channels_file.write_text(
        f'[[channel]]\nid = "later"\nname = "Later"\n'
        f'url = "{origin.youtube.streams_url("later")}"\n',
        encoding="utf-8",
    )
    server = app_server(settings)
    with httpx.Client(timeout=30) as client:
        assert client.get(server.url("/api/stream/later")).status_code == 503
        channel = described(server, client)["later"]
    assert channel["status"] == "upcoming"
    starts_at = str(channel["starts_at"])
    assert starts_at[:16] == _iso(sooner.start)[:16]


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(timestamp)))


def m3u_entries(text: str) -> list[tuple[str, str, str]]:
    """(channel id, display name, URL) of each entry; its tvg-id is the guide's id."""
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        if line.startswith("#EXTINF"):
            tvg_id = re.search(r'tvg-id="([^"]*)"', line)
            channel_id = lines[index + 1].rsplit("/live/", 1)[1].split(".m3u8", 1)[0]
            assert tvg_id is not None and tvg_id.group(1) == guide_id(channel_id)
            found.append((channel_id, line.rsplit(",", 1)[1], lines[index + 1]))
    return found


def test_expand_lists_every_current_live_and_ffmpeg_plays_each(
    multi: Callable[..., AppServer], origin: Origin, tmp_path: Path
) -> None:
    server = multi("expand = true")
    with httpx.Client(timeout=30) as client:
        # The first look lists the channel itself and starts the listing in the background.
        first = m3u_entries(client.get(server.url("/playlist.m3u")).text)
        assert [e[0] for e in first] == ["multi"]
        server.call(server.live.listings.settled)
        entries = m3u_entries(client.get(server.url("/playlist.m3u")).text)
        channels = described(server, client)
    main_id, finance_id = derived_id("multi", MAIN), derived_id("multi", FINANCE)
    assert re.fullmatch(r"multi~[0-9a-f]{8}", main_id)
    assert sorted(e[0] for e in entries) == sorted([main_id, finance_id])
    names = {e[0]: e[1] for e in entries}
    assert names[main_id] == "Multi news · Main news"
    assert names[finance_id] == "Multi news · Finance desk"
    assert set(channels) == {main_id, finance_id}
    assert all(c["group"] == "News" for c in channels.values())
    assert origin.youtube.extractions() == 0  # listing the tab resolves no stream

    procs = {}
    for tvg_id, _, url in entries:
        assert url == server.url(f"/live/{tvg_id}.m3u8")
        out = tmp_path / f"{tvg_id}.ts"
        procs[tvg_id] = (
            ffmpeg_record(url, out, after=("-t", "8")),
            out,
        )
    for _tvg_id, (proc, out) in procs.items():
        proc.communicate(timeout=90)
        assert out.exists() and out.stat().st_size > 0
        assert ffprobe_duration(out) >= 7.0
    assert origin.youtube.count(MAIN, kind="segment") > 0
    assert origin.youtube.count(FINANCE, kind="segment") > 0


def test_an_unknown_derived_id_is_not_found_once_the_lives_are_listed(
    multi: Callable[..., AppServer],
) -> None:
    server = multi("expand = true")
    with httpx.Client(timeout=30) as client:
        client.get(server.url("/api/channels"))
        server.call(server.live.listings.settled)
        gone = client.get(server.url("/live/multi~00000000.m3u8"))
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "channel_not_found"


@pytest.mark.parametrize(
    ("pick", "problem"),
    [
        ('"/fin(ance/"', "not a valid regular expression"),
        ('"/(a+)+$/"', "repeated group"),
        ('"' + "x" * 101 + '"', "at most 100 characters"),
        ("1", "must be a string"),
    ],
)
def test_a_bad_pick_is_refused_at_load_naming_the_channel_and_field(
    tmp_path: Path, pick: str, problem: str
) -> None:
    path = tmp_path / "channels.toml"
    path.write_text(
        f'[[channel]]\nid = "multi"\nname = "Multi"\nurl = "https://example.org/@multi/streams"\n'
        f"pick = {pick}\n",
        encoding="utf-8",
    )
    with pytest.raises(ChannelsError) as raised:
        load_channels(path)
    message = str(raised.value)
    assert "'multi'" in message and "field 'pick'" in message and problem in message


def test_expand_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "channels.toml"
    path.write_text(
        '[[channel]]\nid = "multi"\nname = "Multi"\nurl = "https://example.org/@multi/streams"\n'
        'expand = "yes"\n',
        encoding="utf-8",
    )
    with pytest.raises(ChannelsError, match="field 'expand': must be true or false"):
        load_channels(path)
