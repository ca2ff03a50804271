"""The live relay against the local origin: playlists, segments, failover, errors.

Each test starts the real app (uvicorn on a socket) with a channels file naming the
origin's live channels, and talks to it with httpx as a player would. The fixtures
`settings`, `app_server` and `channels_file` come from `tests.apps` (a pytest plugin,
see `addopts`); `live_app` here starts an app for some of the origin's channels.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.apps import AppServer, cycles_left_by_the_app
from tests.origin import Origin
from ytproxy.app import create_app
from ytproxy.live.channels import ChannelsError
from ytproxy.settings import Settings

MASTER_TYPE = "application/vnd.apple.mpegurl"


def write_channels(path: Path, origin: Origin, *names: str, extra: str = "") -> None:
    tables = [
        f'[[channel]]\nid = "{name}"\nname = "Channel {name}"\nurl = "{origin.channel_url(name)}"\n'
        f'group = "Tests"\n'
        for name in names
    ]
    path.write_text("\n".join(tables) + extra, encoding="utf-8")


@pytest.fixture(name="live_app")
def live_app_fixture(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
) -> Callable[..., AppServer]:
    def start(*names: str, **overrides: object) -> AppServer:
        write_channels(channels_file, origin, *(names or ("news",)))
        return app_server(settings, **overrides)

    return start


def uri_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_master_variant_and_segment_are_relayed_through_the_gateway(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    server = live_app("news")
    with httpx.Client(timeout=20) as client:
        master = client.get(server.url("/live/news.m3u8"))
        assert master.status_code == 200, master.text
        assert master.headers["content-type"] == MASTER_TYPE
        assert master.headers["cache-control"] == "no-cache"
        variants = uri_lines(master.text)
        assert len(variants) == 2
        assert all(v.startswith(server.base_url + "/live/news/p/") for v in variants)
        media = client.get(variants[0])
        assert media.status_code == 200, media.text
        assert media.headers["content-type"] == MASTER_TYPE
        segments = uri_lines(media.text)
        assert len(segments) == 5
        prefix = server.base_url + "/live/news/s/"
        assert all(s.startswith(prefix) and s.endswith(".ts") for s in segments)
        segment = client.get(segments[-1])
        assert segment.status_code == 200
        assert segment.headers["content-type"] == "video/mp2t"
        assert segment.content[:1] == b"\x47"
        for response in (master, media, segment):
            assert_no_origin(response, origin)


def forbidden_strings(origin: Origin) -> list[str]:
    port = origin.base_url.rsplit(":", 1)[1]
    return [origin.base_url, f"127.0.0.1:{port}", f"localhost:{port}", "/hls/", "expire="]


def assert_no_origin(response: httpx.Response, origin: Origin) -> None:
    body = response.content.decode("latin-1")
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    for needle in forbidden_strings(origin):
        assert needle not in body, f"{needle!r} in the body of {response.url}"
        assert needle not in headers, f"{needle!r} in the headers of {response.url}"


def segment_files(origin: Origin) -> set[bytes]:
    return {p.read_bytes() for v in origin.media.hls_variants for p in v.segments}


def test_playlists_and_segments_leave_no_reference_cycles(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    """As for downloads (`test_download_cleanup`): what a viewer's requests made is
    freed with them, over a kept-alive connection and over one per request."""
    server = live_app("news")

    def watch() -> None:
        with httpx.Client(timeout=20) as client:
            for variant in uri_lines(client.get(server.url("/live/news.m3u8")).text):
                for segment in uri_lines(client.get(variant).text)[-2:]:
                    assert client.get(segment).status_code == 200
                    assert httpx.get(segment, timeout=20).status_code == 200

    watch()  # warm-up: the resolution, the cached segments
    assert cycles_left_by_the_app(watch) == []


def test_relayed_segments_are_the_origin_bytes(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    server = live_app("news")
    files = segment_files(origin)
    with httpx.Client(timeout=20) as client:
        variants = uri_lines(client.get(server.url("/live/news.m3u8")).text)
        for variant in variants:
            segments = uri_lines(client.get(variant).text)
            for segment in segments[-2:]:
                response = client.get(segment)
                assert response.status_code == 200
                assert int(response.headers["content-length"]) == len(response.content)
                assert response.content in files


def test_no_response_contains_an_origin_url(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    server = live_app("news", "sports")
    origin.set_offline("sports")
    seen = 0
    with httpx.Client(timeout=20) as client:
        pages = [
            "/playlist.m3u",
            "/api/m3u",
            "/api/channels",
            "/api/stream/news",
            "/channels",
            "/live/news.m3u8",
            "/live/sports.m3u8",
            "/api/stream/sports",
            "/live/nope.m3u8",
        ]
        for path in pages:
            response = client.get(server.url(path), headers={"accept": "text/html"})
            assert response.status_code in (200, 404, 503)
            assert_no_origin(response, origin)
            seen += 1
        master = client.get(server.url("/live/news.m3u8"))
        for variant in uri_lines(master.text):
            media = client.get(variant)
            assert media.status_code == 200
            assert_no_origin(media, origin)
            for segment in uri_lines(media.text):
                response = client.get(segment)
                assert response.status_code == 200
                assert_no_origin(response, origin)
                seen += 1
        origin.expire_all()
        response = client.get(uri_lines(master.text)[0])
        assert response.status_code == 200
        assert_no_origin(response, origin)
    assert seen >= 19


async def test_a_hundred_concurrent_cold_requests_make_one_extraction(
    live_app: Callable[..., AppServer],
) -> None:
    server = live_app("news")
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(client.get(server.url("/live/news.m3u8")) for _ in range(100))
        )
    assert [r.status_code for r in responses] == [200] * 100
    assert server.core.extractor.calls == 1


async def test_cold_requests_on_two_instances_sharing_redis_make_one_extraction(
    origin: Origin,
    channels_file: Path,
    settings: Settings,
    app_server: Callable[..., AppServer],
    redis_url: str,
) -> None:
    write_channels(channels_file, origin, "news")
    servers = [app_server(settings, redis_url=redis_url) for _ in range(2)]
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(client.get(servers[i % 2].url("/live/news.m3u8")) for i in range(100))
        )
    assert [r.status_code for r in responses] == [200] * 100
    assert sum(s.core.extractor.calls for s in servers) == 1


def test_expired_upstream_urls_are_re_resolved_once_invisibly(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    server = live_app("news")
    files = segment_files(origin)
    with httpx.Client(timeout=20) as client:
        variants = uri_lines(client.get(server.url("/live/news.m3u8")).text)
        old_segments = uri_lines(client.get(variants[0]).text)
        assert server.core.extractor.calls == 1
        origin.expire_all()  # every URL the gateway holds now answers 403
        origin.reset_counts()
        # A segment listed before the expiry is found again by its sequence number.
        response = client.get(old_segments[-1])
        assert response.status_code == 200
        assert response.content in files
        refreshed = client.get(variants[0])
        assert refreshed.status_code == 200
        assert len(uri_lines(refreshed.text)) == 5
        for variant in variants:
            assert client.get(variant).status_code == 200
        assert server.core.extractor.calls == 2
        assert origin.count("/channel/news/live") == 1


def test_segment_tokens_tampered_expired_or_for_another_channel_are_403(
    live_app: Callable[..., AppServer],
) -> None:
    server = live_app("news", "sports")
    with httpx.Client(timeout=20) as client:
        variant = uri_lines(client.get(server.url("/live/news.m3u8")).text)[0]
        segment = uri_lines(client.get(variant).text)[-1]
        token = segment.rsplit("/", 1)[1].removesuffix(".ts")
        flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
        expired = server.core.signer.seal("live-media", {"c": "news", "u": "http://x/"}, -5)
        variant_token = variant.rsplit("/", 1)[1].removesuffix(".m3u8")
        cases = {
            f"/live/news/s/{flipped}.ts": "invalid_token",
            f"/live/news/s/{expired}.ts": "token_expired",
            f"/live/sports/s/{token}.ts": "invalid_token",
            f"/live/news/s/{variant_token}.ts": "invalid_token",  # a playlist token
            f"/live/news/p/{token}.m3u8": "invalid_token",  # a segment token
            "/live/news/s/garbage.ts": "invalid_token",
        }
        for path, code in cases.items():
            response = client.get(server.url(path))
            assert response.status_code == 403, path
            assert response.json()["error"]["code"] == code, path


def test_unknown_channel_is_404_json(live_app: Callable[..., AppServer]) -> None:
    server = live_app("news")
    with httpx.Client(timeout=20) as client:
        for path in ("/live/nope.m3u8", "/api/stream/nope"):
            response = client.get(server.url(path))
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "channel_not_found"
        response = client.post(server.url("/api/cache/invalidate/nope"))
        assert response.status_code == 404


def test_offline_channel_is_503_json_without_hammering_and_is_picked_up_when_live(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    server = live_app("news", live_slate=False)  # with the slate a player gets a playlist
    origin.set_offline("news")
    with httpx.Client(timeout=20) as client:
        for _ in range(3):
            response = client.get(server.url("/live/news.m3u8"))
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "channel_offline"
            assert "retry-after" in response.headers
        assert server.core.extractor.calls == 1  # the negative cache answered
        channels = client.get(server.url("/api/channels")).json()["channels"]
        assert channels[0]["status"] == "offline"
        origin.set_offline("news", False)
        assert client.post(server.url("/api/cache/invalidate/news")).status_code == 200
        response = client.get(server.url("/live/news.m3u8"))
        assert response.status_code == 200
        assert server.core.extractor.calls == 2


def test_over_the_viewer_limit_is_503(live_app: Callable[..., AppServer]) -> None:
    server = live_app("news", max_concurrent_streams=2)
    with httpx.Client(timeout=20) as client:
        for agent in ("player-a", "player-b", "player-a"):
            response = client.get(server.url("/live/news.m3u8"), headers={"user-agent": agent})
            assert response.status_code == 200
        refused = client.get(server.url("/live/news.m3u8"), headers={"user-agent": "player-c"})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "too_many_viewers"
        metrics = client.get(server.url("/metrics")).text
        assert re.search(r"^active_streams 2\.0$", metrics, re.M)


def test_transient_upstream_errors_and_dropped_bodies_are_retried(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    server = live_app("news", chunk_size=4096)
    files = segment_files(origin)
    with httpx.Client(timeout=30) as client:
        variant = uri_lines(client.get(server.url("/live/news.m3u8")).text)[0]
        origin.fail_once("/hls/news/", 503)
        segments = uri_lines(client.get(variant).text)
        origin.fail_once("/hls/news/low/seg/", 500, times=2)
        first = client.get(segments[-1])
        assert first.status_code == 200 and first.content in files
        origin.drop_after("/hls/news/low/seg/", 3000)
        second = client.get(segments[-2])
        assert second.status_code == 200 and second.content in files
        ranges = [r.range for r in origin.request_log if r.range]
        assert ranges == ["bytes=3000-"]


def test_playlists_and_m3u_carry_the_access_token(
    live_app: Callable[..., AppServer],
) -> None:
    token = "let-me-in-123"
    server = live_app("news", access_token=token, public_base_url="http://tv.example:8000")
    with httpx.Client(timeout=20) as client:
        assert client.get(server.url("/playlist.m3u")).status_code == 401
        m3u = client.get(server.url(f"/playlist.m3u?token={token}"))
        assert m3u.status_code == 200
        assert f"http://tv.example:8000/live/news.m3u8?token={token}" in m3u.text
        master = client.get(server.url(f"/live/news.m3u8?token={token}"))
        variants = uri_lines(master.text)
        assert variants and all(v.endswith(f"?token={token}") for v in variants)
        local = [v.replace("http://tv.example:8000", server.base_url) for v in variants]
        media = client.get(local[0])
        segments = uri_lines(media.text)
        assert segments and all(
            s.startswith("http://tv.example:8000/live/news/s/") and s.endswith(f".ts?token={token}")
            for s in segments
        )
        segment = client.get(segments[-1].replace("http://tv.example:8000", server.base_url))
        assert segment.status_code == 200


def test_api_channels_and_m3u_never_wait_on_ytdlp_and_stream_api_resolves(
    live_app: Callable[..., AppServer], channels_file: Path, origin: Origin
) -> None:
    server = live_app("news")
    with httpx.Client(timeout=20) as client:
        channels = client.get(server.url("/api/channels")).json()["channels"]
        assert [c["status"] for c in channels] == ["unknown"]
        assert client.get(server.url("/playlist.m3u")).status_code == 200
        assert server.core.extractor.calls == 0
        stream = client.get(server.url("/api/stream/news")).json()
        assert stream["status"] == "live"
        assert stream["url"] == server.url("/live/news.m3u8")
        assert stream["expires_at"] and stream["fetched_at"]
        assert [q["resolution"] for q in stream["quality"]] == ["160x90", "320x180"]
        assert client.get(server.url("/api/channels")).json()["channels"][0]["status"] == "live"
        # An edit of the channels file takes effect without a restart.
        write_channels(channels_file, origin, "news", "sports")
        server.live.book.reload_now()
        assert client.get(server.url("/live/sports.m3u8")).status_code == 200
        page = client.get(server.url("/channels"))
        assert page.status_code == 200 and "Channel sports" in page.text


async def test_a_bad_channels_file_stops_start_up_naming_channel_and_field(
    channels_file: Path, settings: Settings
) -> None:
    channels_file.write_text(
        '[[channel]]\nid = "ok"\nname = "OK"\nurl = "https://www.youtube.com/@ok/live"\n\n'
        '[[channel]]\nid = "bad"\nname = "Bad"\nurl = "youtube.com/@bad/live"\n',
        encoding="utf-8",
    )
    app = create_app(settings)
    with pytest.raises(ChannelsError, match=r"channel #2 'bad': field 'url'"):
        async with app.router.lifespan_context(app):
            pass


def _links_by_sequence(playlist: str) -> dict[int, str]:
    first = next(
        int(line.split(":", 1)[1])
        for line in playlist.splitlines()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:")
    )
    return {first + i: uri for i, uri in enumerate(uri_lines(playlist))}


def test_a_segment_keeps_its_gateway_link_across_refreshes_and_re_resolution(
    live_app: Callable[..., AppServer], origin: Origin
) -> None:
    # hls.js stops with "media sequence mismatch" when a segment's URI changes.
    server = live_app("steady")
    with httpx.Client(timeout=20) as client:
        variant = uri_lines(client.get(server.url("/live/steady.m3u8")).text)[0]
        before = _links_by_sequence(client.get(variant).text)
        origin.advance_live("steady", 4)
        origin.expire_all()  # the next refresh re-resolves: new upstream URLs
        time.sleep(1.2)  # past the shared playlist's short cache
        after_response = client.get(variant)
        assert after_response.status_code == 200, after_response.text
        after = _links_by_sequence(after_response.text)
        shared = set(before) & set(after)
        assert shared, (sorted(before), sorted(after))
        assert max(after) > max(before), "the window moved on"
        assert all(before[seq] == after[seq] for seq in shared)
        # And the old link still plays, mapped to the fresh upstream URL by sequence.
        oldest = before[min(shared)]
        assert client.get(oldest).content[:1] == b"\x47"


def test_two_instances_give_a_segment_the_same_link(
    live_app: Callable[..., AppServer], redis_url: str
) -> None:
    # Behind a load balancer a player's playlist refreshes may alternate replicas.
    first = live_app("shared", redis_url=redis_url)
    second = live_app("shared", redis_url=redis_url)
    with httpx.Client(timeout=20) as client:
        links = []
        for server in (first, second):
            variant = uri_lines(client.get(server.url("/live/shared.m3u8")).text)[0]
            playlist = client.get(variant).text
            by_sequence = _links_by_sequence(playlist)
            links.append({seq: uri.split("/live/", 1)[1] for seq, uri in by_sequence.items()})
    shared = set(links[0]) & set(links[1])
    assert shared
    assert all(links[0][seq] == links[1][seq] for seq in shared)
