"""A bad channels file: one line and exit 2 at start-up; at runtime the previous list,
one log line, and never an error to a client. Also the values that could break the M3U,
and ids validated with `$` (which matches before a trailing newline)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.apps import AppServer, run_app_py
from ytproxy.analyse.tasks import valid_task_id
from ytproxy.live.channels import ChannelBook, ChannelsError, load_channels
from ytproxy.settings import Settings

GOOD = """
[[channel]]
id = "news"
name = "News"
url = "https://www.youtube.com/@news/live"
"""


def _not_utf8(path: Path) -> None:
    path.write_bytes(b'[[channel]]\nid = "news"\nname = "Caf\xe9"\nurl = "https://x.example/l"\n')


def _not_toml(path: Path) -> None:
    path.write_text("[[channel]\n", encoding="utf-8")


def _nested_too_deeply(path: Path) -> None:
    path.write_text("a = " + "[" * 100_000, encoding="utf-8")


def _id_ending_in_a_newline(path: Path) -> None:
    path.write_text(GOOD.replace('id = "news"', 'id = "news\\n"'), encoding="utf-8")


def _missing(path: Path) -> None:
    path.unlink(missing_ok=True)


def _directory(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def _symlink_loop(path: Path) -> None:
    # Unreadable even for root, unlike a chmod.
    path.unlink(missing_ok=True)
    path.symlink_to(path)


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _no_permission(path: Path) -> None:
    path.chmod(0)


BREAKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "not_utf8": (_not_utf8, "not UTF-8 text (byte 0xe9 on line 3)"),
    "not_toml": (_not_toml, "not valid TOML"),
    "nested_too_deeply": (_nested_too_deeply, "nested too deeply"),
    "id_ending_in_a_newline": (_id_ending_in_a_newline, "channel #1 'news\\n': field 'id'"),
    "missing": (_missing, "does not exist"),
    "directory": (_directory, "is a directory"),
    "symlink_loop": (_symlink_loop, "cannot be read: Too many levels of symbolic links"),
    "fifo": (_fifo, "is not a regular file"),
    "no_permission": (_no_permission, "cannot be read: Permission denied"),
}
KINDS = [
    pytest.param(
        kind,
        marks=pytest.mark.skipif(
            kind == "no_permission" and os.geteuid() == 0, reason="root reads any file"
        ),
    )
    for kind in BREAKAGES
]


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


def write_good(path: Path) -> Path:
    path.write_text(GOOD, encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_bad_file_is_one_channels_error_naming_the_file(
    tmp_path: Path, kind: str
) -> None:
    path = write_good(tmp_path / "channels.toml")
    breakage, problem = BREAKAGES[kind]
    breakage(path)
    with pytest.raises(ChannelsError) as raised:
        load_channels(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('id = "news\\n"\nname = "A"\nurl = "https://x.example/l"', "field 'id'"),
        ('id = "news\\r"\nname = "A"\nurl = "https://x.example/l"', "field 'id'"),
        ('id = "a"\nname = "A\\u0007"\nurl = "https://x.example/l"', "field 'name'"),
        ('id = "a"\nname = "A"\ngroup = "G\\u001b[31m"\nurl = "https://x.example/l"', "'group'"),
        ('id = "a"\nname = "A"\ndescription = "\\u0000"\nurl = "https://x.example/l"', "'descr"),
        ('id = "a"\nname = "A"\nurl = "https://x.example/l\\n#EXTINF:-1,Evil"', "field 'url'"),
        ('id = "a"\nname = "A"\nurl = "https://x.example/l"\nlogo = "https://i/a\\nb"', "'logo'"),
        ('id = "a"\nname = "A"\nurl = "https://x.example/a b"', "field 'url'"),
    ],
)
def test_values_that_could_break_a_line_are_refused(tmp_path: Path, table: str, named: str) -> None:
    path = tmp_path / "channels.toml"
    path.write_text(f"[[channel]]\n{table}\n", encoding="utf-8")
    with pytest.raises(ChannelsError, match=named):
        load_channels(path)


def test_line_breaks_in_a_name_or_group_are_collapsed_to_one_line(tmp_path: Path) -> None:
    path = tmp_path / "channels.toml"
    path.write_text(
        '[[channel]]\nid = "a"\nname = "News\\nLive\\u2028Now"\ngroup = "A\\r\\nB"\n'
        'url = "https://x.example/l"\n',
        encoding="utf-8",
    )
    (channel,) = load_channels(path)
    assert (channel.name, channel.group) == ("News Live Now", "A B")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "channels.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert [c.id for c in load_channels(path)] == ["news"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_file_at_runtime_keeps_the_old_list_and_logs_one_line(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_good(tmp_path / "channels.toml")
    book = ChannelBook(path)
    book.load()
    BREAKAGES[kind][0](path)
    with caplog.at_level(logging.INFO, logger="ytproxy.live.channels"):
        for _ in range(3):
            book.reload_now()
            assert [c.id for c in book.all()] == ["news"]
            assert book.get("news") is not None
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "keeping the previous list" in errors[0].getMessage()
    assert str(path) in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage()
    assert errors[0].exc_info is None
    remove(path)
    path.write_text(GOOD.replace('"News"', '"News again"'), encoding="utf-8")
    book.reload_now()
    assert [c.name for c in book.all()] == ["News again"]


@pytest.mark.parametrize("kind", ["not_utf8", "not_toml", "missing", "directory", "fifo"])
def test_a_bad_file_at_runtime_never_fails_a_request(
    app_server: Callable[..., AppServer], settings: Settings, tmp_path: Path, kind: str
) -> None:
    path = write_good(tmp_path / "served.toml")
    server = app_server(settings, channels_file=path)
    assert "/live/news.m3u8" in httpx.get(server.url("/playlist.m3u")).text
    BREAKAGES[kind][0](path)
    server.live.book.reload_now()
    for route in ("/playlist.m3u", "/api/channels", "/channels"):
        response = httpx.get(server.url(route), timeout=30)
        assert response.status_code < 500, (route, response.status_code, response.text)
    playlist = httpx.get(server.url("/playlist.m3u"))
    assert "/live/news.m3u8" in playlist.text
    assert [c["id"] for c in httpx.get(server.url("/api/channels")).json()["channels"]] == ["news"]


def test_the_m3u_keeps_each_entry_on_one_line_whatever_the_names(
    app_server: Callable[..., AppServer], settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "served.toml"
    path.write_text(
        '[[channel]]\nid = "news"\nname = "News, \\"Live\\"\\nNow"\ngroup = "A,B \\"C\\""\n'
        'url = "https://www.youtube.com/@news/live"\n',
        encoding="utf-8",
    )
    server = app_server(settings, channels_file=path)
    lines = httpx.get(server.url("/playlist.m3u")).text.splitlines()
    assert lines[0].startswith("#EXTM3U ")  # with the guide's address (x-tvg-url)
    assert len(lines) == 3
    extinf, uri = lines[1], lines[2]
    assert uri == server.url("/live/news.m3u8")
    # One comma, before the title, whichever end a player splits from; quotes balanced.
    assert extinf.count(",") == 1
    assert extinf.rsplit(",", 1)[1] == "News\u201a 'Live' Now"
    assert extinf.count('"') % 2 == 0
    assert "group-title=\"A\u201aB 'C'\"" in extinf


@pytest.mark.parametrize("kind", KINDS)
def test_python_app_py_refuses_a_bad_channels_file_with_one_line(tmp_path: Path, kind: str) -> None:
    path = write_good(tmp_path / "channels.toml")
    breakage, problem = BREAKAGES[kind]
    breakage(path)
    result = run_app_py(tmp_path, REDIS_URL=None, CHANNELS_FILE=str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ytproxy: invalid channels file: {path}: ")
    assert problem in lines[0]


def test_a_task_id_ending_in_a_newline_is_not_valid() -> None:
    # The same `$` mistake as the channel id's, in the analyse task ids.
    assert valid_task_id("0123456789abcdef0123456789abcdef")
    assert not valid_task_id("0123456789abcdef0123456789abcdef\n")
