"""The YouTube imitation: googlevideo-shaped lives on the origin, read by the plugin.

Real yt-dlp, with `tests/plugins` on the path (pyproject's pytest `pythonpath`), loads the
`youtube:local` extractors and must give the info dicts its YouTube extractor gives for
lives: itag format ids, `manifest_url`, demuxed formats, `live_status`, its errors.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import yt_dlp
from yt_dlp.utils import DownloadError, UserNotLive

from tests.origin import Origin
from ytproxy.extractor import Extractor
from ytproxy.metrics import Metrics
from ytproxy.settings import Settings


def extract(url: str, **params: Any) -> dict[str, Any]:
    options = {"quiet": True, "no_warnings": True, **params}
    with yt_dlp.YoutubeDL(options) as ydl:
        info: dict[str, Any] = ydl.sanitize_info(ydl.extract_info(url, download=False))
    return info


def get(url: str) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.get(url)


def first_segment_url(playlist_url: str) -> str:
    playlist = m3u8.loads(get(playlist_url).text)
    return str(playlist.segments[-1].uri)


def probe(data: bytes, path: Path) -> set[str]:
    path.write_bytes(data)
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return {s["codec_type"] for s in json.loads(result.stdout)["streams"]}


def test_the_plugin_takes_local_youtube_urls_and_leaves_the_rest_to_generic(
    origin: Origin,
) -> None:
    origin.youtube.add_live("muxedlive01", handle="news")
    with yt_dlp.YoutubeDL({"quiet": True}) as ydl:
        local = ydl.get_info_extractor("YoutubeLocal")
        tab = ydl.get_info_extractor("YoutubeLocalTab")
        assert local.suitable(origin.youtube.watch_url("muxedlive01"))
        assert tab.suitable(origin.youtube.live_url("news"))
        assert tab.suitable(origin.youtube.streams_url("news"))
        assert not local.suitable(origin.channel_url("news"))
        assert not local.suitable("https://www.youtube.com/watch?v=muxedlive01")
    info = extract(origin.youtube.watch_url("muxedlive01"))
    assert info["extractor"] == "youtube:local"
    assert extract(origin.vod_url)["extractor"] == "generic"


def test_a_muxed_live_has_itag_formats_from_one_master(origin: Origin) -> None:
    origin.youtube.add_live("muxedlive01", handle="news", title="News live", starts_in=-120)
    info = extract(origin.youtube.watch_url("muxedlive01"))
    assert info["live_status"] == "is_live"
    assert info["is_live"] is True and info["was_live"] is False
    assert info["fulltitle"] == "News live"
    assert info["title"].startswith("News live 20")  # yt-dlp appends the date itself
    assert info["channel"] == info["uploader"] == "News"
    assert info["uploader_id"] == "@news"
    assert info["channel_id"] == origin.youtube.channel_id("news")
    assert info["webpage_url"] == "https://www.youtube.com/watch?v=muxedlive01"
    assert abs(info["release_timestamp"] - (time.time() - 120)) < 5
    by_id = {f["format_id"]: f for f in info["formats"]}
    assert sorted(by_id) == ["91", "92"]
    assert {f["protocol"] for f in by_id.values()} == {"m3u8_native"}
    assert (by_id["91"]["height"], by_id["92"]["height"]) == (144, 240)
    assert all(f["acodec"].startswith("mp4a") for f in by_id.values())
    [master] = {f["manifest_url"] for f in by_id.values()}
    assert "/api/manifest/hls_variant/" in master and master.endswith("/file/index.m3u8")
    assert "/itag/91/" in by_id["91"]["url"] and "/api/manifest/hls_playlist/" in by_id["91"]["url"]
    assert "available_at" not in by_id["91"]
    assert origin.youtube.extractions("muxedlive01") == 1


def test_a_demuxed_live_has_video_only_and_audio_only_formats(origin: Origin) -> None:
    origin.youtube.add_live("demuxlive01", flavour="demuxed")
    info = extract(origin.youtube.watch_url("demuxlive01"))
    by_id = {f["format_id"]: f for f in info["formats"]}
    assert sorted(by_id) == ["229", "233", "269"]
    assert by_id["269"]["acodec"] == by_id["229"]["acodec"] == "none"
    assert (by_id["269"]["height"], by_id["229"]["height"]) == (144, 240)
    assert by_id["233"]["vcodec"] == "none"
    assert by_id["233"]["format_note"] == "Default"
    # yt-dlp reads YouTube's HLS only through hlsManifestUrl: the demuxed master.
    [master] = {f["manifest_url"] for f in by_id.values()}
    assert "/demuxed/1/" in master


def test_every_rendition_segment_is_real_ts_with_the_right_streams(
    origin: Origin, tmp_path: Path
) -> None:
    origin.youtube.add_live("muxedlive01")
    origin.youtube.add_live("demuxlive01", flavour="demuxed")
    expected = {
        "91": {"video", "audio"},
        "92": {"video", "audio"},
        "269": {"video"},
        "229": {"video"},
        "233": {"audio"},
    }
    for video_id in ("muxedlive01", "demuxlive01"):
        for fmt in extract(origin.youtube.watch_url(video_id))["formats"]:
            segment = get(first_segment_url(fmt["url"]))
            assert segment.status_code == 200
            kinds = probe(segment.content, tmp_path / f"{fmt['format_id']}.ts")
            assert kinds == expected[fmt["format_id"]]


def test_media_playlists_carry_dates_and_a_sequence_from_the_clock(origin: Origin) -> None:
    origin.youtube.add_live("muxedlive01", starts_in=-40)
    fmt = extract(origin.youtube.watch_url("muxedlive01"))["formats"][0]
    text = get(fmt["url"]).text
    playlist = m3u8.loads(text)
    assert playlist.target_duration == 2
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:" in text
    assert len(playlist.segments) == 5
    assert all(s.program_date_time is not None for s in playlist.segments)
    newest = origin.youtube.newest_sequence("muxedlive01")
    assert playlist.media_sequence + 4 in (newest, newest - 1)
    assert newest >= 20  # 40 s of live plus the 10 s pre-roll, 2 s a segment
    assert all("/sq/" in s.uri and "/sig/" in s.uri for s in playlist.segments)


def test_a_tampered_or_expired_googlevideo_url_is_403(origin: Origin) -> None:
    origin.youtube.add_live("muxedlive01")
    fmt = extract(origin.youtube.watch_url("muxedlive01"))["formats"][0]
    segment = first_segment_url(fmt["url"])
    assert get(segment).status_code == 200
    assert get(segment.replace("/itag/91/", "/itag/92/")).status_code == 403
    assert get(fmt["url"].replace("/ei/", "/ei/x")).status_code == 403
    origin.youtube.set_url_lifetime(0)
    player = get(origin.url("/youtubei/v1/player?videoId=muxedlive01")).json()
    assert get(player["streamingData"]["hlsManifestUrl"]).status_code == 403


def test_segments_are_refused_n_seconds_after_each_resolution(origin: Origin) -> None:
    origin.youtube.add_live("muxedlive01")
    origin.youtube.reject_segments_after("muxedlive01", 1.0)
    fmt = extract(origin.youtube.watch_url("muxedlive01"))["formats"][0]
    segment = first_segment_url(fmt["url"])
    assert get(segment).status_code == 200
    time.sleep(1.3)
    assert get(segment).status_code == 403
    assert get(fmt["url"]).status_code == 200  # playlists keep working, expire is hours away
    fresh = extract(origin.youtube.watch_url("muxedlive01"))["formats"][0]
    assert get(first_segment_url(fresh["url"])).status_code == 200
    statuses = [r.status for r in origin.youtube.requests("muxedlive01", kind="segment")]
    assert statuses == [200, 403, 200]


def test_an_upcoming_live_raises_youtubes_message(origin: Origin) -> None:
    origin.youtube.add_live("upcoming001", starts_in=600)
    with pytest.raises(DownloadError, match=r"This live event will begin in 10 minutes"):
        extract(origin.youtube.watch_url("upcoming001"))


def test_an_upcoming_live_with_ignore_no_formats_error_has_its_release_time(
    origin: Origin,
) -> None:
    live = origin.youtube.add_live("upcoming001", starts_in=3 * 3600)
    info = extract(origin.youtube.watch_url("upcoming001"), ignore_no_formats_error=True)
    assert info["live_status"] == "is_upcoming"
    assert info["release_timestamp"] == int(live.start)
    assert info["formats"] == []
    assert info["is_live"] is False


def test_a_live_goes_from_upcoming_to_live_to_ended(origin: Origin) -> None:
    origin.youtube.add_live("cycle000001", starts_in=60)
    url = origin.youtube.watch_url("cycle000001")
    assert extract(url, ignore_no_formats_error=True)["live_status"] == "is_upcoming"
    origin.youtube.start_now("cycle000001")
    live = extract(url)
    assert live["live_status"] == "is_live"
    playlist = live["formats"][0]["url"]
    assert get(playlist).status_code == 200
    origin.youtube.end_now("cycle000001")
    assert origin.youtube.status("cycle000001") == "ended"
    assert get(playlist).status_code == 404
    ended = extract(url)
    assert ended["live_status"] == "was_live"
    assert ended["was_live"] is True and ended["is_live"] is False
    [vod] = ended["formats"]
    assert vod["format_id"] == "18" and vod["protocol"] == "http"
    assert abs(vod["available_at"] - time.time()) < 5


def test_an_ended_live_honours_available_at(origin: Origin) -> None:
    origin.youtube.add_live("ended000001", starts_in=-600, ends_in=-60)
    origin.youtube.set_available_at_delay("ended000001", 30)
    [vod] = extract(origin.youtube.watch_url("ended000001"))["formats"]
    assert vod["available_at"] >= time.time() + 25
    assert get(vod["url"]).status_code == 403


def test_a_channel_that_is_not_live_raises_user_not_live(origin: Origin) -> None:
    origin.youtube.add_live("longended01", handle="quiet", starts_in=-7200, ends_in=-3600)
    with pytest.raises(DownloadError, match="The channel is not currently live") as caught:
        extract(origin.youtube.live_url("quiet"))
    assert isinstance(caught.value.exc_info[1], UserNotLive)


def test_a_channel_live_url_resolves_to_its_current_live(origin: Origin) -> None:
    origin.youtube.add_live("chanlive001", handle="news")
    info = extract(origin.youtube.live_url("news"))
    assert info["id"] == "chanlive001"
    assert info["live_status"] == "is_live"
    assert info["original_url"] == origin.youtube.live_url("news")


def test_streams_lists_concurrent_lives_flat_and_resolved(origin: Origin) -> None:
    origin.youtube.add_live("firstlive01", handle="news", title="One", starts_in=-300)
    origin.youtube.add_live("secondlive1", handle="news", title="Two", flavour="demuxed")
    flat = extract(origin.youtube.streams_url("news"), extract_flat="in_playlist")
    assert flat["_type"] == "playlist"
    assert flat["id"] == origin.youtube.channel_id("news")
    assert flat["title"] == "News - Live"
    assert flat["uploader_id"] == "@news"
    entries = flat["entries"]
    assert [e["id"] for e in entries] == ["secondlive1", "firstlive01"]
    assert {e["_type"] for e in entries} == {"url"}
    assert {e["ie_key"] for e in entries} == {"YoutubeLocal"}
    assert {e["live_status"] for e in entries} == {"is_live"}
    assert entries[0]["url"] == origin.youtube.watch_url("secondlive1")
    full = extract(origin.youtube.streams_url("news"))
    assert [e["live_status"] for e in full["entries"]] == ["is_live", "is_live"]
    assert all(e["formats"] for e in full["entries"])


def test_counters_tell_itags_and_kinds_apart(origin: Origin) -> None:
    origin.youtube.add_live("muxedlive01")
    info = extract(origin.youtube.watch_url("muxedlive01"))
    low = next(f for f in info["formats"] if f["format_id"] == "91")
    segment = first_segment_url(low["url"])
    get(segment)
    get(segment)
    assert origin.youtube.count("muxedlive01", kind="master") == 1  # yt-dlp read the master
    assert origin.youtube.count("muxedlive01", itag=91, kind="playlist") == 1
    assert origin.youtube.count("muxedlive01", itag=92) == 0
    assert list(origin.youtube.segment_fetches("muxedlive01", 91).values()) == [2]
    assert origin.youtube.extractions() == 1


async def test_ytproxys_extractor_resolves_the_muxed_live(origin: Origin) -> None:
    origin.youtube.add_live("muxedlive01", handle="news")
    settings = Settings(
        secret_key="x" * 20, ytdlp_timeout=10, ytdlp_max_retries=0, allow_private_networks=True
    )
    extractor = Extractor(settings, Metrics())
    try:
        await extractor.start()
        info = await extractor.extract(origin.youtube.live_url("news"), lane="live")
    finally:
        extractor.close()
    assert info["live_status"] == "is_live"
    assert sorted(f["format_id"] for f in info["formats"]) == ["91", "92"]
    assert origin.youtube.extractions("muxedlive01") == 1
