"""The HLS rewriter on the playlists that real servers send and test suites collect.

Each case is playlist text: variables (`EXT-X-DEFINE`), interstitial date ranges,
delta playlists, what comes before `#EXTM3U`, keys and links that must not become
gateway links, and lines built to make a careless parser slow. The rule under test
throughout: every upstream URL is either relayed or removed, never passed on.
"""

from __future__ import annotations

import pytest

from ytproxy.errors import UpstreamError
from ytproxy.live import playlist
from ytproxy.live.playlist import PlaylistError, Uri

BASE = "https://up.example/hls/ch/index.m3u8?token=t0k&cdn=cdn.example"


def gateway(uri: Uri) -> str:
    return f"https://gw.example/{uri.tag}/{uri.index}/{uri.sequence}"


def rewritten(text: str, base: str = BASE) -> tuple[str, list[Uri]]:
    seen: list[Uri] = []

    def record(uri: Uri) -> str:
        seen.append(uri)
        return gateway(uri)

    return playlist.rewrite(text, base, record), seen


DEFINED = """#EXTM3U
#EXT-X-VERSION:8
#EXT-X-DEFINE:NAME="host",VALUE="media.example"
#EXT-X-DEFINE:QUERYPARAM="token"
#EXT-X-DEFINE:NAME="lang",VALUE="en"
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-KEY:METHOD=AES-128,URI="https://{$host}/keys/{$lang}.key?t={$token}"
#EXT-X-MAP:URI="init-{$lang}.mp4"
#EXTINF:4.0,
https://{$host}/seg7.ts?t={$token}
#EXTINF:4.0,
seg8-{$lang}.ts
"""


def test_define_variables_are_substituted_before_uris_are_resolved() -> None:
    out, seen = rewritten(DEFINED)
    assert [(u.tag, u.url) for u in seen] == [
        ("EXT-X-KEY", "https://media.example/keys/en.key?t=t0k"),
        ("EXT-X-MAP", "https://up.example/hls/ch/init-en.mp4"),
        ("EXTINF", "https://media.example/seg7.ts?t=t0k"),
        ("EXTINF", "https://up.example/hls/ch/seg8-en.ts"),
    ]
    assert [u.sequence for u in seen if u.tag == "EXTINF"] == [7, 8]
    # Nothing refers to a variable any more, so the definitions (and the
    # QUERYPARAM's upstream token) are not passed on.
    assert "EXT-X-DEFINE" not in out and "{$" not in out and "t0k" not in out


def test_define_variables_are_substituted_in_attributes_that_are_not_uris() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-DEFINE:NAME="lang",VALUE="fr"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="audio-{$lang}",LANGUAGE="{$lang}",'
        'URI="audio/{$lang}.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO="a"\n'
        "video.m3u8\n"
    )
    out, seen = rewritten(text)
    assert seen[0].url == "https://up.example/hls/ch/audio/fr.m3u8"
    assert seen[0].attributes["LANGUAGE"] == "fr"
    assert 'NAME="audio-fr",LANGUAGE="fr",URI="https://gw.example/EXT-X-MEDIA/0/None"' in out


@pytest.mark.parametrize(
    ("definitions", "reference"),
    [
        ("", "host"),  # never defined
        ('#EXT-X-DEFINE:NAME="other",VALUE="x"\n', "host"),
        ('#EXT-X-DEFINE:NAME="host"\n', "host"),  # no VALUE: no value to use
        ('#EXT-X-DEFINE:QUERYPARAM="host"\n', "host"),  # not in the playlist's URL
        ('#EXT-X-DEFINE:IMPORT="host"\n', "host"),  # the master's variables are not given
    ],
)
def test_a_reference_to_an_undefined_variable_refuses_the_playlist(
    definitions: str, reference: str
) -> None:
    text = f"#EXTM3U\n{definitions}#EXTINF:4,\nhttps://{{${reference}}}/seg.ts\n"
    with pytest.raises(PlaylistError, match=r"undefined variable \{\$host\}"):
        rewritten(text)


def test_a_variable_is_undefined_before_its_definition() -> None:
    text = (
        "#EXTM3U\n#EXTINF:4,\nhttps://{$host}/a.ts\n"
        '#EXT-X-DEFINE:NAME="host",VALUE="media.example"\n#EXTINF:4,\nhttps://{$host}/b.ts\n'
    )
    with pytest.raises(PlaylistError, match="undefined variable"):
        playlist.uris(text, BASE)


def test_an_undefined_reference_in_a_quoted_attribute_refuses_the_playlist() -> None:
    text = '#EXTM3U\n#EXT-X-MAP:URI="https://{$host}/init.mp4"\n#EXTINF:4,\nseg.ts\n'
    with pytest.raises(PlaylistError, match="undefined variable"):
        rewritten(text)


def test_a_refused_playlist_is_an_upstream_error_for_the_client() -> None:
    with pytest.raises(UpstreamError) as refused:
        rewritten("#EXTM3U\n#EXTINF:4,\nhttps://{$host}/seg.ts\n")
    assert refused.value.status_code == 502


def test_imported_variables_come_from_the_master() -> None:
    master = (
        '#EXTM3U\n#EXT-X-DEFINE:NAME="host",VALUE="media.example"\n'
        '#EXT-X-DEFINE:QUERYPARAM="cdn"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n'
    )
    imported = playlist.variables(master, BASE)
    assert imported == {"host": "media.example", "cdn": "cdn.example"}
    media = (
        '#EXTM3U\n#EXT-X-DEFINE:IMPORT="host"\n#EXT-X-DEFINE:IMPORT="cdn"\n'
        "#EXTINF:4,\nhttps://{$host}/a.ts\n#EXTINF:4,\nhttps://{$cdn}/b.ts\n"
    )
    found = playlist.uris(media, "https://up.example/v.m3u8", imported=imported)
    assert [u.url for u in found] == ["https://media.example/a.ts", "https://cdn.example/b.ts"]


def test_check_refuses_a_certainly_undefined_variable_but_not_one_it_cannot_see() -> None:
    with pytest.raises(PlaylistError, match="undefined variable"):
        playlist.check("#EXTM3U\n#EXTINF:4,\nhttps://{$host}/seg.ts\n")
    # Without the playlist's URL or its master, these may well have values.
    playlist.check('#EXTM3U\n#EXT-X-DEFINE:QUERYPARAM="h"\n#EXTINF:4,\nhttps://{$h}/s.ts\n')
    playlist.check('#EXTM3U\n#EXT-X-DEFINE:IMPORT="h"\n#EXTINF:4,\nhttps://{$h}/s.ts\n')


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        ('#EXT-X-DEFINE:NAME="a",VALUE="1"\n#EXT-X-DEFINE:NAME="a",VALUE="2"\n', "twice"),
        ('#EXT-X-DEFINE:NAME="a b",VALUE="1"\n', "invalid name"),
        ('#EXT-X-DEFINE:VALUE="1"\n', "names no variable"),
        ('#EXT-X-DEFINE:QUERYPARAM="q"\n', "unusable value"),  # q=a"b in the URL
        ('#EXT-X-DEFINE:NAME="v",VALUE="1,2"\n#EXT-X-KEY:METHOD=AES-128,IV=0x{$v}\n', "comma"),
    ],
)
def test_an_invalid_definition_refuses_the_playlist(definitions: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        playlist.rewrite(f"#EXTM3U\n{definitions}#EXTINF:4,\nseg.ts\n", BASE + "&q=a%22b", gateway)


def test_text_that_only_looks_like_a_reference_is_left_as_it_is() -> None:
    found = playlist.uris("#EXTM3U\n#EXTINF:4,\nseg{$}{$a b}{$x.ts\n", BASE)
    assert [u.url for u in found] == ["https://up.example/hls/ch/seg{$}{$a b}{$x.ts"]


INTERSTITIALS = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z
#EXT-X-DATERANGE:ID="ad1",CLASS="com.apple.hls.interstitial",START-DATE="2026-01-01T00:00:04.000Z",DURATION=15,X-ASSET-URI="https://ads.example/ad1/master.m3u8",X-RESUME-OFFSET=0
#EXT-X-DATERANGE:ID="ad2",CLASS="com.apple.hls.interstitial",START-DATE="2026-01-01T00:00:08.000Z",X-ASSET-LIST="https://ads.example/list.json",X-RESTRICT="SKIP,JUMP"
#EXT-X-DATERANGE:ID="ch1",CLASS="com.example.chapter",START-DATE="2026-01-01T00:00:00.000Z",X-COM-EXAMPLE-LINK="https://up.example/about",X-COM-EXAMPLE-TITLE="Intro"
#EXTINF:4,
seg1.ts
"""


def test_interstitial_asset_links_are_removed_and_the_date_ranges_kept() -> None:
    out, seen = rewritten(INTERSTITIALS)
    assert "ads.example" not in out and "up.example" not in out
    assert [u.tag for u in seen] == ["EXTINF"]  # an ad server's asset is not relayed
    lines = [line for line in out.splitlines() if line.startswith("#EXT-X-DATERANGE")]
    assert lines == [
        '#EXT-X-DATERANGE:ID="ad1",CLASS="com.apple.hls.interstitial",'
        'START-DATE="2026-01-01T00:00:04.000Z",DURATION=15,X-RESUME-OFFSET=0',
        '#EXT-X-DATERANGE:ID="ad2",CLASS="com.apple.hls.interstitial",'
        'START-DATE="2026-01-01T00:00:08.000Z",X-RESTRICT="SKIP,JUMP"',
        '#EXT-X-DATERANGE:ID="ch1",CLASS="com.example.chapter",'
        'START-DATE="2026-01-01T00:00:00.000Z",X-COM-EXAMPLE-TITLE="Intro"',
    ]


def test_a_delta_playlist_numbers_segments_after_the_skipped_ones() -> None:
    text = (
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:4\n"
        "#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=24,PART-HOLD-BACK=3\n"
        "#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n"
        "#EXTINF:4,\nseg103.m4s\n#EXTINF:4,\nseg104.m4s\n"
        '#EXT-X-PART:DURATION=1,URI="part105.0.m4s"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part105.1.m4s"\n'
    )
    out, seen = rewritten(text)
    assert [(u.tag, u.sequence) for u in seen] == [
        ("EXTINF", 103),
        ("EXTINF", 104),
        ("EXT-X-PART", 105),
        ("EXT-X-PRELOAD-HINT", 105),
    ]
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=3" in out  # the player needs it to merge


@pytest.mark.parametrize(
    "before",
    [
        "\ufeff",
        "\n\n",
        "# generated by packager 1.2\n",
        "\ufeff\r\n# a comment with https://up.example/leak\r\n\r\n",
    ],
)
def test_a_bom_blank_lines_and_comments_before_extm3u_are_accepted(before: str) -> None:
    text = f"{before}#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg.ts\n"
    playlist.check(text)
    out, seen = rewritten(text)
    assert out.startswith("#EXTM3U\n") and "leak" not in out
    assert [u.url for u in seen] == ["https://up.example/hls/ch/seg.ts"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<html><body>Service unavailable</body></html>",
        "# only a comment\n",
        "#EXT-X-VERSION:3\n#EXTM3U\n#EXTINF:4,\nseg.ts\n",  # a tag first: not HLS
        "https://up.example/seg.ts\n#EXTM3U\n",
    ],
)
def test_text_that_is_not_hls_is_refused_as_such(text: str) -> None:
    with pytest.raises(PlaylistError, match=r"not an HLS playlist \(no #EXTM3U\)"):
        playlist.check(text)
    with pytest.raises(PlaylistError, match=r"not an HLS playlist \(no #EXTM3U\)"):
        rewritten(text)


@pytest.mark.parametrize(
    "key",
    [
        "#EXT-X-KEY:METHOD=NONE",
        '#EXT-X-KEY:METHOD=NONE,URI=""',
        '#EXT-X-KEY:METHOD=NONE,URI="https://keys.example/k.bin",IV=0x01',
    ],
)
def test_a_key_with_method_none_is_passed_on_without_a_uri(key: str) -> None:
    text = f'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k.bin"\n#EXTINF:4,\na.ts\n{key}\n'
    out, seen = rewritten(text + "#EXTINF:4,\nb.ts\n")
    assert [u.tag for u in seen] == ["EXT-X-KEY", "EXTINF", "EXTINF"]
    assert out.splitlines()[4] == "#EXT-X-KEY:METHOD=NONE"
    assert "keys.example" not in out


def test_empty_and_missing_uris_never_become_gateway_links() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-SESSION-KEY:METHOD=NONE,URI="https://keys.example/s.key"\n'
        '#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="en",INSTREAM-ID="CC1"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="main",DEFAULT=YES,URI=""\n'
        '#EXT-X-MAP:URI=""\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1000,CLOSED-CAPTIONS="cc",AUDIO="a"\n'
        "video.m3u8\n"
    )
    out, seen = rewritten(text)
    assert [u.tag for u in seen] == ["EXT-X-STREAM-INF"]
    assert "SESSION-KEY" not in out and "keys.example" not in out  # NONE is invalid there
    assert 'INSTREAM-ID="CC1"' in out
    assert 'NAME="main",DEFAULT=YES,URI=""' in out
    assert '#EXT-X-MAP:URI=""' in out


def test_only_the_uri_attribute_is_relayed_and_other_links_are_removed() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="s",NAME="see URI=",LANGUAGE="en",'
        'URI="subs/en.m3u8",X-COM-EXAMPLE-URI="https://up.example/x",URI="https://up.example/y"\n'
        '#EXT-X-MAP:KEYFORMATURI="https://up.example/z",URI="init.mp4"\n'
        '#EXT-X-CONTENT-STEERING:SERVER-URI="https://up.example/steer.json"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1,SUBTITLES="s"\n'
        "v.m3u8\n"
    )
    out, seen = rewritten(text)
    assert [(u.tag, u.url) for u in seen] == [
        ("EXT-X-MEDIA", "https://up.example/hls/ch/subs/en.m3u8"),
        ("EXT-X-MAP", "https://up.example/hls/ch/init.mp4"),
        ("EXT-X-STREAM-INF", "https://up.example/hls/ch/v.m3u8"),
    ]
    assert "up.example" not in out
    assert 'NAME="see URI=",LANGUAGE="en",URI="https://gw.example/EXT-X-MEDIA/0/None"' in out
    assert "CONTENT-STEERING" not in out


def test_a_segment_title_with_a_url_is_cleared_and_a_bare_cr_starts_a_line() -> None:
    text = "#EXTM3U\n#EXTINF:4,https://up.example/title\n#EXTINF:4,ok\rhttps://up.example/s.ts\n"
    out, seen = rewritten(text)
    assert "up.example" not in out
    assert "#EXTINF:4," in out.splitlines() and "#EXTINF:4,ok" in out.splitlines()
    assert [u.url for u in seen] == ["https://up.example/s.ts"]


@pytest.mark.parametrize(
    "line",
    [
        "#EXT-X-MAP:" + "A" * 100_000,
        "#EXT-X-MAP:" + 'URI="' * 20_000,
        "#EXT-X-MAP:" + "A," * 50_000,
        '#EXT-X-MAP:URI="' + "{$" * 50_000 + '"',
        '#EXT-X-MAP:URI="' + "{$aaaa" * 20_000 + '"',
        "{$" * 50_000,
    ],
)
def test_lines_built_to_make_a_parser_backtrack_are_read_in_one_pass(line: str) -> None:
    # Quadratic work on any of these would exceed the test timeout by far.
    found = playlist.uris(f"#EXTM3U\n{line}\n#EXTINF:4,\nseg.ts\n", BASE)
    assert found[-1].url == "https://up.example/hls/ch/seg.ts"
