"""The XMLTV guide (`/epg.xml`, `/epg.xml.gz`) and the M3U header that names it.

Unit tests build guides from cached states with `guide.build_guide` (pure); the
others run the real app against the local imitation of YouTube (`origin.youtube`),
resolving channels through `/api/stream/<id>` as a player would. Every document is
checked with `tv_validate_file` from Debian's xmltv-util, given the DTD it ships
(it would otherwise download the DTD, and these machines are offline): it prints
"Validated ok." and exits 0, else it lists the errors and exits 1.
"""

from __future__ import annotations

import calendar
import gzip
import itertools
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps import AppServer
from tests.origin import Origin
from ytproxy.live.channels import Channel
from ytproxy.live.guide import (
    ENDED,
    NOT_STARTED,
    OFFLINE,
    GuideEntry,
    build_guide,
    guide_id,
    xmltv_time,
)
from ytproxy.live.info import NotLive, pick_stream
from ytproxy.live.resolver import Resolution

DTD = Path("/usr/share/xmltv/xmltv.dtd")
NOW = 1_800_000_000.0 + 1234.0  # not on a full hour
TOKEN = "guide-test-token-123"


def validate(document: bytes, tmp_path: Path) -> None:
    assert DTD.exists(), "tv_validate_file needs xmltv-util (scripts/install-system-deps.sh test)"
    path = tmp_path / "guide.xml"
    path.write_bytes(document)
    done = subprocess.run(
        ["tv_validate_file", "--dtd-file", str(DTD), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "Validated ok."), done.stdout + done.stderr


def programmes(document: bytes) -> dict[str, list[dict[str, Any]]]:
    """Programmes per channel id, in order: start, stop (Unix time), title, desc."""
    root = ET.fromstring(document)
    found: dict[str, list[dict[str, Any]]] = {c.attrib["id"]: [] for c in root.iter("channel")}
    for element in root.iter("programme"):
        found[element.attrib["channel"]].append(
            {
                "start": _unix(element.attrib["start"]),
                "stop": _unix(element.attrib["stop"]),
                "title": element.findtext("title"),
                "desc": element.findtext("desc"),
            }
        )
    return found


def _unix(value: str) -> float:
    assert re.fullmatch(r"\d{14} \+0000", value), value
    return float(calendar.timegm(time.strptime(value[:14], "%Y%m%d%H%M%S")))


def on_air(shows: list[dict[str, Any]], moment: float) -> dict[str, Any]:
    return next(s for s in shows if s["start"] <= moment < s["stop"])


def resolution(title: str, started_at: float | None, description: str = "") -> Resolution:
    return Resolution(
        channel="news",
        stream_id="abc",
        master="#EXTM3U\n",
        base_url="",
        variants={},
        bandwidths={},
        fetched_at=NOW - 100,
        expires_at=None,
        ttl=300.0,
        title=title,
        description=description,
        started_at=started_at,
    )


def entry(
    channel_id: str,
    number: int,
    *,
    live: Resolution | None = None,
    failure: dict[str, Any] | None = None,
    name: str | None = None,
) -> GuideEntry:
    channel = Channel(id=channel_id, name=name or f"Channel {channel_id}", url="https://x.example")
    icon = f"https://gw.example/v1/image/{channel_id}?token=t&x=1"
    return GuideEntry(number, channel, icon, live, failure)


def every_kind() -> list[GuideEntry]:
    return [
        entry("news", 1, live=resolution('Evening <news> & "weather"', NOW - 5400, "d " * 400)),
        entry("soon", 2, failure={"status": "upcoming", "starts_at": NOW + 3600, "title": "演出"}),
        entry("late", 3, failure={"status": "upcoming", "starts_at": NOW - 7200}),
        entry("nodate", 4, failure={"status": "upcoming", "starts_at": None}),
        entry("done", 5, failure={"status": "ended", "title": "Yesterday"}),
        entry("gone", 6, failure={"status": "offline"}),
        entry("stuck", 7, failure={"status": "blocked"}),
        entry("cold", 8),
        entry("far", 9, failure={"status": "upcoming", "starts_at": NOW + 3 * 86400}),
        entry("multi~1a2b3c4d", 10, live=resolution("", None), name="Multi · \x07bell"),
        entry("news_cn", 11, failure={"status": "error"}, name="新闻"),
    ]


def test_every_channel_has_programmes_from_an_hour_before_to_a_day_after_without_gaps() -> None:
    guide = programmes(build_guide(every_kind(), NOW))
    assert len(guide) == len(every_kind())
    for channel_id, shows in guide.items():
        assert shows, channel_id
        assert shows[0]["start"] <= NOW - 3600, channel_id
        assert shows[-1]["stop"] >= NOW + 86400, channel_id
        for before, after in itertools.pairwise(shows):
            assert before["stop"] == after["start"], (channel_id, before, after)
        assert all(s["start"] < s["stop"] and s["title"] for s in shows), channel_id


def test_a_live_shows_its_title_from_when_it_began_until_after_the_next_hour() -> None:
    guide = programmes(build_guide(every_kind(), NOW))
    current = on_air(guide["news.ytproxy"], NOW)
    assert current["title"] == 'Evening <news> & "weather"'
    assert current["start"] == NOW - 5400
    next_hour = (NOW // 3600 + 1) * 3600
    assert current["stop"] == next_hour + 3600  # rolls forward as the live goes on
    assert len(current["desc"]) <= 300
    # A live with no title or start from yt-dlp: the channel's name, from when resolved.
    untitled = on_air(guide["1a2b3c4d.multi.ytproxy"], NOW)
    assert untitled["title"] == "Multi · bell" and untitled["start"] == NOW - 100


def test_upcoming_lives_are_at_their_start_after_a_not_started_filler() -> None:
    guide = programmes(build_guide(every_kind(), NOW))
    soon = guide["soon.ytproxy"]
    scheduled = on_air(soon, NOW + 3600)
    assert scheduled["title"] == "演出" and scheduled["start"] == NOW + 3600
    assert on_air(soon, NOW)["title"] == NOT_STARTED
    assert on_air(soon, NOW + 3600 - 1)["title"] == NOT_STARTED
    # Late: the scheduled live stays on air until after the next hour.
    late = on_air(guide["late.ytproxy"], NOW)
    assert late["title"] == "Channel late" and late["start"] == NOW - 7200
    assert on_air(guide["nodate.ytproxy"], NOW)["title"] == NOT_STARTED
    assert {s["title"] for s in guide["far.ytproxy"] if s["start"] < NOW + 86400} == {NOT_STARTED}


def test_channels_not_live_get_filler_saying_so() -> None:
    guide = programmes(build_guide(every_kind(), NOW))
    assert {s["title"] for s in guide["done.ytproxy"]} == {ENDED}
    assert on_air(guide["done.ytproxy"], NOW)["desc"] == "Yesterday"
    for channel_id in ("gone", "stuck", "cold"):
        assert {s["title"] for s in guide[f"{channel_id}.ytproxy"]} == {OFFLINE}


def test_the_guide_is_valid_for_tv_validate_file(tmp_path: Path) -> None:
    document = build_guide(every_kind(), NOW)
    assert document.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n<tv '
    )
    validate(document, tmp_path)
    root = ET.fromstring(document)
    assert root.attrib["generator-info-name"] == "ytproxy"
    news = next(c for c in root.iter("channel") if c.attrib["id"] == "news.ytproxy")
    assert [d.text for d in news.iter("display-name")] == ["Channel news", "1"]
    icons = [i.attrib["src"] for i in news.iter("icon")]
    assert icons == ["https://gw.example/v1/image/news?token=t&x=1"]
    titles = {t.text: t.attrib["lang"] for t in root.iter("title")}
    assert titles["演出"] == "zh" and titles[OFFLINE] == "zh"
    assert xmltv_time(NOW) == "20270115082034 +0000"


def test_the_invalid_is_caught_by_tv_validate_file(tmp_path: Path) -> None:
    """The check above can fail: a programme without a title is refused."""
    document = build_guide([entry("gone", 1, failure={"status": "offline"})], NOW)
    broken = re.sub(rb"<title[^>]*>[^<]*</title>", b"", document, count=1)
    with pytest.raises(AssertionError, match="not valid according to the xmltv dtd"):
        validate(broken, tmp_path)


def test_guide_ids_are_dotted_distinct_and_stable() -> None:
    assert guide_id("news") == "news.ytproxy"
    assert guide_id("multi~1a2b3c4d") == "1a2b3c4d.multi.ytproxy"
    assert re.fullmatch(r"news-cn-[0-9a-f]{6}\.ytproxy", guide_id("news_cn"))
    ids = [guide_id(i) for i in ("news_cn", "news-cn", "news_cn~00ff00ff", "a", "A")]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[-a-zA-Z0-9]+(\.[-a-zA-Z0-9]+)+", i) for i in ids)


def test_the_live_title_description_and_start_come_from_yt_dlps_info() -> None:
    info = {
        "id": "abc",
        "live_status": "is_live",
        "title": "Evening news 2026-05-01 18:00",  # yt-dlp appends the date to lives
        "fulltitle": "Evening news",
        "description": "word " * 200,
        "release_timestamp": 1_700_000_000,
        "timestamp": 1_699_000_000,
        "formats": [{"url": "https://h.example/a.m3u8", "protocol": "m3u8_native"}],
    }
    choice = pick_stream(info)
    assert choice.title == "Evening news" and choice.started_at == 1_700_000_000
    assert len(choice.description) <= 300 and choice.description.endswith("\u2026")
    assert pick_stream({**info, "release_timestamp": None}).started_at == 1_699_000_000
    with pytest.raises(NotLive) as caught:
        pick_stream({**info, "live_status": "is_upcoming", "formats": []})
    assert caught.value.title == "Evening news" and caught.value.starts_at == 1_700_000_000
    # A resolution cached by the previous version (no title) is still read.
    old = {k: v for k, v in resolution("x", 1.0).to_json().items() if k != "title"}
    assert Resolution.from_cache(old) is not None


def write_channels(path: Path, channels: list[tuple[str, str, str]]) -> None:
    path.write_text(
        "".join(
            f'[[channel]]\nid = "{cid}"\nname = "{name}"\nurl = "{url}"\n'
            'logo = "https://img.example/logo.png"\n'
            for cid, name, url in channels
        ),
        encoding="utf-8",
    )


def test_the_guide_shows_the_live_the_upcoming_and_the_offline_channel(
    app_server: Callable[..., AppServer],
    settings,
    channels_file: Path,
    origin: Origin,
    tmp_path: Path,
) -> None:
    youtube = origin.youtube
    youtube.add_live("guidelive01", handle="g", title="Evening news", flavour="muxed")
    youtube.add_live("guidesoon01", handle="s", title="Concert 演唱会", starts_in=3600)
    youtube.add_live("guidegone01", handle="q", starts_in=-7200, ends_in=-3600)
    write_channels(
        channels_file,
        [
            ("evening", "Evening", youtube.watch_url("guidelive01")),
            ("soon", "Soon", youtube.watch_url("guidesoon01")),
            ("quiet", "Quiet", youtube.live_url("q")),
        ],
    )
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.get("/api/stream/evening").status_code == 200
        assert client.get("/api/stream/soon").json()["error"]["code"] == "channel_upcoming"
        assert client.get("/api/stream/quiet").json()["error"]["code"] == "channel_offline"
        starts_at = next(
            row["starts_at"]
            for row in client.get("/api/channels").json()["channels"]
            if row["id"] == "soon"
        )
        response = client.get("/epg.xml")
    now = time.time()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "max-age=300" in response.headers["cache-control"]
    validate(response.content, tmp_path)
    guide = programmes(response.content)
    assert set(guide) == {"evening.ytproxy", "soon.ytproxy", "quiet.ytproxy"}
    live = on_air(guide["evening.ytproxy"], now)
    assert live["title"] == "Evening news"
    assert live["desc"] == "A local imitation of a YouTube live (muxed)."
    assert now - 90 < live["start"] <= now - 30  # the live began 60 s before it was added
    start = calendar.timegm(time.strptime(starts_at, "%Y-%m-%dT%H:%M:%SZ"))
    scheduled = next(s for s in guide["soon.ytproxy"] if s["title"] == "Concert 演唱会")
    assert scheduled["start"] == start
    assert on_air(guide["soon.ytproxy"], now)["title"] == NOT_STARTED
    assert on_air(guide["quiet.ytproxy"], now)["title"] == OFFLINE


def test_the_m3u_names_the_guide_with_the_token_and_the_ids_match_tvg_id(
    app_server: Callable[..., AppServer],
    settings,
    channels_file: Path,
    origin: Origin,
    tmp_path: Path,
) -> None:
    origin.youtube.add_live("guidetvg001", handle="t", starts_in=7200)
    write_channels(
        channels_file,
        [
            ("one", "One", origin.youtube.watch_url("guidetvg001")),
            ("two_b", "Two", origin.youtube.live_url("t")),
        ],
    )
    server = app_server(settings, access_token=TOKEN)
    with httpx.Client(timeout=30) as client:
        m3u = client.get(server.url(f"/playlist.m3u?token={TOKEN}")).text
        header = m3u.splitlines()[0]
        found = re.fullmatch(r'#EXTM3U x-tvg-url="([^"]+)" url-tvg="([^"]+)"', header)
        assert found is not None, header
        guide_url = found.group(1)
        assert found.group(2) == guide_url == server.url(f"/epg.xml?token={TOKEN}")
        response = client.get(guide_url)
        assert response.status_code == 200
        assert client.get(server.url("/epg.xml")).status_code in (401, 403)
        gz = client.get(server.url(f"/epg.xml.gz?token={TOKEN}"))
        again = client.get(guide_url)
    assert gz.status_code == 200 and gz.headers["content-type"] in (
        "application/gzip",
        "application/x-gzip",
    )
    assert "content-encoding" not in gz.headers  # the file itself is gzip
    assert gzip.decompress(gz.content) in (response.content, again.content)
    validate(response.content, tmp_path)
    tvg_ids = re.findall(r'tvg-id="([^"]+)"', m3u)
    root = ET.fromstring(response.content)
    assert [c.attrib["id"] for c in root.iter("channel")] == tvg_ids
    assert tvg_ids == [guide_id("one"), guide_id("two_b")]
    assert {p.attrib["channel"] for p in root.iter("programme")} == set(tvg_ids)
    icons = [i.attrib["src"] for i in root.iter("icon")]
    assert len(icons) == 2
    for icon in icons:
        assert icon.startswith(server.url("/v1/image/")) and icon.endswith(f"?token={TOKEN}")


def test_building_the_guide_never_waits_on_yt_dlp_and_warms_the_channel_in_the_background(
    app_server: Callable[..., AppServer],
    settings,
    channels_file: Path,
    origin: Origin,
) -> None:
    vid = "guidecold01"
    origin.youtube.add_live(vid, handle="c", title="Morning show")
    write_channels(channels_file, [("cold", "Cold", origin.youtube.watch_url(vid))])
    origin.add_latency("/youtubei/", 3.0)  # a slow YouTube: an extraction takes > 3 s
    server = app_server(settings)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        first = client.get("/epg.xml")
        # The guide came back before YouTube answered the one extraction it started.
        assert origin.youtube.extractions(vid) == 0
        assert first.status_code == 200 and b"Morning show" not in first.content
        assert {s["title"] for s in programmes(first.content)["cold.ytproxy"]} == {OFFLINE}
        assert client.get("/epg.xml").status_code == 200  # no second extraction started
        server.call(server.live.warmer.settled)
        assert origin.youtube.extractions(vid) == 1
        second = client.get("/epg.xml")
    assert on_air(programmes(second.content)["cold.ytproxy"], time.time())["title"] == (
        "Morning show"
    )
    assert origin.youtube.extractions(vid) == 1
    assert origin.count("/youtubei/") == 1
