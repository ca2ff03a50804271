"""HLS rewriting and the YouTube-specific resolution choices, on text and info dicts.

The info dicts are shaped like yt-dlp's documented output for a YouTube live
(formats 91-96, 300, 301 with `protocol: m3u8_native`, a shared `manifest_url` on
manifest.googlevideo.com, expiry in `/expire/<ts>/` path segments): the one part of
the live path the local origin cannot imitate.
"""

from __future__ import annotations

import pytest

from ytproxy.live import playlist
from ytproxy.live.info import NotLive, pick_stream
from ytproxy.live.playlist import Uri
from ytproxy.live.resolver import make_resolution, resolution_ttl, variant_key
from ytproxy.upstream import expiry_of

BASE = "https://up.example/hls/ch/index.m3u8?expire=1700000000&sig=abc"

MASTER = """#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-SESSION-KEY:METHOD=AES-128,URI="https://keys.example/session.key"
#EXT-X-SESSION-DATA:DATA-ID="com.example",URI="https://up.example/data.json"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="audio/en.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180,CODECS="avc1.4d400d,mp4a.40.2",AUDIO="aud"
low/index.m3u8?x=1
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=50000,URI="https://up.example/iframes.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360
https://up.example/high/index.m3u8
"""

MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:120
# a comment with https://up.example/leak
#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x00000000000000000000000000000001
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.000,
seg120.m4s
#EXT-X-PART:DURATION=1.0,URI="part121.0.m4s"
#EXTINF:4.000,
https://cdn.example/seg121.m4s?expire=1700000000
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part122.0.m4s"
#EXT-X-RENDITION-REPORT:URI="../other/index.m3u8",LAST-MSN=121
#EXT-X-KEY:METHOD=NONE
#EXTINF:4.0,
data:text/plain,abc
"""


def gateway(uri: Uri) -> str:
    return f"https://gw.example/{uri.tag}/{uri.index}/{uri.sequence}"


def test_rewrite_master_replaces_every_uri_form() -> None:
    out = playlist.rewrite(MASTER, BASE, gateway)
    assert "up.example" not in out and "keys.example" not in out
    assert 'URI="https://gw.example/EXT-X-SESSION-KEY/0/None"' in out
    assert 'URI="https://gw.example/EXT-X-MEDIA/1/None"' in out
    assert "https://gw.example/EXT-X-STREAM-INF/2/None" in out.splitlines()
    assert 'URI="https://gw.example/EXT-X-I-FRAME-STREAM-INF/3/None"' in out
    assert "https://gw.example/EXT-X-STREAM-INF/4/None" in out.splitlines()
    assert "SESSION-DATA" not in out  # a URI we do not relay is dropped, never passed on
    assert 'AUDIO="aud"' in out


def test_rewrite_media_resolves_relative_uris_and_numbers_segments() -> None:
    seen: list[Uri] = []

    def record(uri: Uri) -> str:
        seen.append(uri)
        return gateway(uri)

    out = playlist.rewrite(MEDIA, BASE, record)
    assert "up.example" not in out and "cdn.example" not in out
    assert "RENDITION-REPORT" not in out and "# a comment" not in out
    by_tag = {(u.tag, u.sequence): u.url for u in seen}
    assert by_tag[("EXT-X-KEY", None)] == "https://up.example/hls/ch/key.bin"
    assert by_tag[("EXT-X-MAP", None)] == "https://up.example/hls/ch/init.mp4"
    assert by_tag[("EXTINF", 120)] == "https://up.example/hls/ch/seg120.m4s"
    assert by_tag[("EXT-X-PART", 121)] == "https://up.example/hls/ch/part121.0.m4s"
    assert by_tag[("EXTINF", 121)] == "https://cdn.example/seg121.m4s?expire=1700000000"
    assert by_tag[("EXT-X-PRELOAD-HINT", 122)] == "https://up.example/hls/ch/part122.0.m4s"
    assert "data:text/plain,abc" in out  # no server named: left alone
    assert "#EXT-X-KEY:METHOD=NONE" in out
    assert "IV=0x00000000000000000000000000000001" in out
    durations = [u.duration for u in seen if u.tag == "EXTINF"]
    assert durations == [4.0, 4.0]


def test_rewrite_rejects_text_that_is_not_a_playlist() -> None:
    with pytest.raises(playlist.PlaylistError):
        playlist.rewrite("<html>nope</html>", BASE, gateway)


def test_target_duration_and_attributes() -> None:
    assert playlist.target_duration(MEDIA) == 4.0
    attrs = playlist.attributes('#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="a,b",RESOLUTION=2x3')
    assert attrs == {"BANDWIDTH": "1", "CODECS": "a,b", "RESOLUTION": "2x3"}


YT_MANIFEST = (
    "https://manifest.googlevideo.com/api/manifest/hls_variant/expire/1700021600/ei/abc/"
    "ip/203.0.113.7/id/XyZ123.1/source/yt_live_broadcast/file/index.m3u8"
)


def yt_playlist(itag: int, expire: int = 1700021600) -> str:
    return (
        f"https://manifest.googlevideo.com/api/manifest/hls_playlist/expire/{expire}/ei/abc/"
        f"ip/203.0.113.7/id/XyZ123.1/itag/{itag}/source/yt_live_broadcast/playlist/index.m3u8"
    )


YT_FORMATS = [
    # itag, width, height, tbr (kbit/s), vcodec
    (91, 256, 144, 290.0, "avc1.42c00b"),
    (92, 426, 240, 546.0, "avc1.4d4015"),
    (93, 640, 360, 1209.0, "avc1.4d401e"),
    (94, 854, 480, 1568.0, "avc1.4d401f"),
    (95, 1280, 720, 2969.0, "avc1.4d401f"),
    (96, 1920, 1080, 5420.0, "avc1.640028"),
    (300, 1280, 720, 4530.0, "avc1.4d4020"),
    (301, 1920, 1080, 6850.0, "avc1.64002a"),
]


def yt_live_info(**changes: object) -> dict[str, object]:
    info: dict[str, object] = {
        "id": "XyZ123",
        "title": "Live news",
        "extractor": "youtube",
        "is_live": True,
        "live_status": "is_live",
        "formats": [
            {
                "format_id": "sb0",
                "protocol": "mhtml",
                "url": "https://i.ytimg.com/sb/x",
                "vcodec": "none",
                "acodec": "none",
            },
        ]
        + [
            {
                "format_id": str(itag),
                "protocol": "m3u8_native",
                "url": yt_playlist(itag),
                "manifest_url": YT_MANIFEST,
                "width": width,
                "height": height,
                "tbr": tbr,
                "fps": 30 if itag < 300 else 60,
                "vcodec": vcodec,
                "acodec": "mp4a.40.2",
                "ext": "mp4",
            }
            for itag, width, height, tbr, vcodec in YT_FORMATS
        ],
    }
    info.update(changes)
    return info


def test_pick_stream_takes_the_youtube_hls_variant_manifest() -> None:
    choice = pick_stream(yt_live_info())
    assert choice.master_url == YT_MANIFEST
    assert choice.stream_id == "XyZ123"
    assert choice.expires_at == 1700021600
    assert len(choice.formats) == 8  # the storyboard is not a stream


def test_pick_stream_builds_a_master_when_formats_have_no_common_manifest() -> None:
    info = yt_live_info()
    for f in info["formats"]:  # type: ignore[attr-defined]
        f.pop("manifest_url", None)
    info["formats"][3]["url"] = yt_playlist(93, expire=1700010000)  # type: ignore[index]
    choice = pick_stream(info)
    assert choice.master_url is None
    assert choice.expires_at == 1700010000  # the earliest of all
    master = playlist.build_master(choice.formats)
    lines = master.splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[2] == (
        '#EXT-X-STREAM-INF:BANDWIDTH=290000,RESOLUTION=256x144,CODECS="avc1.42c00b,mp4a.40.2",'
        "FRAME-RATE=30.000"
    )
    resolution = make_resolution("ch", choice, master, "", 1700000000.0, cache_ttl=3600)
    assert sorted(resolution.variants) == sorted(f"i{itag}" for itag, *_ in YT_FORMATS)
    assert resolution.variants["i301"] == yt_playlist(301)
    assert resolution.bandwidths["i96"] == 5420000
    assert resolution.expires_at == 1700010000


@pytest.mark.parametrize(
    "changes",
    [
        {"live_status": "was_live", "is_live": False},
        {"live_status": "not_live", "is_live": False},
        {"live_status": "is_upcoming", "is_live": False},
        {"live_status": None, "is_live": False},
        {"formats": [{"format_id": "18", "protocol": "https", "url": "https://x.example/v"}]},
    ],
)
def test_pick_stream_refuses_what_is_not_a_live_hls_stream(changes: dict[str, object]) -> None:
    with pytest.raises(NotLive):
        pick_stream(yt_live_info(**changes))


def test_expiry_is_read_from_query_or_path() -> None:
    assert expiry_of("https://a.example/x?expire=1700000000&sig=1") == 1700000000
    assert expiry_of(YT_MANIFEST) == 1700021600
    assert expiry_of("https://a.example/videoplayback/expire/1700000123/itag/96/") == 1700000123
    assert expiry_of("https://a.example/x?sig=1") is None


def test_resolution_ttl_keeps_a_margin_before_expiry() -> None:
    now = 1_700_000_000.0
    assert resolution_ttl(3600, now, now + 6 * 3600) == 3600  # CACHE_TTL is shorter
    assert resolution_ttl(3600, now, now + 1800) == 1500  # 5 minutes of margin
    assert resolution_ttl(3600, now, now + 20) == 15  # a quarter of a short lifetime
    assert resolution_ttl(3600, now, now - 5) == 2  # already expired: a brief floor
    assert resolution_ttl(600, now, None) == 600


def test_variant_key_prefers_the_itag() -> None:
    assert variant_key(Uri(yt_playlist(95), "EXT-X-STREAM-INF", 7)) == "i95"
    assert variant_key(Uri("https://a.example/low/index.m3u8", "EXT-X-STREAM-INF", 3)) == "p3"
