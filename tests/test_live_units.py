"""Unit tests of the live parts that need no upstream: the channels file, the shared
fetch and segment buffer, and the viewer limit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ytproxy.errors import ServiceUnavailable, UpstreamError
from ytproxy.live.channels import ChannelBook, ChannelsError, load_channels
from ytproxy.live.fanout import Fetch, SegmentBuffer
from ytproxy.live.viewers import Viewers
from ytproxy.metrics import Metrics

GOOD = """
[[channel]]
id = "news-1"
name = "  News   One "
url = "https://www.youtube.com/@news/live"
group = "News"

[[channel]]
id = "music_2"
name = "音乐"
url = "https://www.youtube.com/watch?v=abcdefghijk"
enabled = false
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_channels_file_is_loaded_with_defaults(tmp_path: Path) -> None:
    channels = load_channels(write(tmp_path / "c.toml", GOOD))
    assert [c.id for c in channels] == ["news-1", "music_2"]
    assert channels[0].name == "News One"
    assert channels[0].enabled and not channels[1].enabled
    assert channels[1].group == "" and channels[1].logo == ""


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('id = "a"\nname = "A"', "channel #1 'a': field 'url': missing"),
        ('id = "a b"\nname = "A"\nurl = "https://x.example/live"', "field 'id'"),
        ('id = "a"\nname = "A"\nurl = "ftp://x.example/live"', "'a': field 'url'"),
        ('id = "a"\nname = "A"\nurl = "https://"', "field 'url'"),
        ('id = "a"\nname = ""\nurl = "https://x.example/l"', "field 'name'"),
        ('id = "a"\nname = "A"\nurl = "https://x.example/l"\nenabled = "yes"', "field 'enabled'"),
        ('id = "a"\nname = "A"\nurl = "https://x.example/l"\nenable = true', "field 'enable'"),
        ('id = 3\nname = "A"\nurl = "https://x.example/l"', "field 'id': must be a string"),
    ],
)
def test_a_bad_channel_names_the_channel_and_the_field(
    tmp_path: Path, table: str, named: str
) -> None:
    with pytest.raises(ChannelsError, match=named.replace("(", r"\(")):
        load_channels(write(tmp_path / "c.toml", f"[[channel]]\n{table}\n"))


def test_a_duplicate_id_is_refused(tmp_path: Path) -> None:
    text = GOOD + '\n[[channel]]\nid = "news-1"\nname = "B"\nurl = "https://x.example/l"\n'
    with pytest.raises(ChannelsError, match=r"channel #3 'news-1': field 'id': duplicate"):
        load_channels(write(tmp_path / "c.toml", text))


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChannelsError, match="not valid TOML"):
        load_channels(write(tmp_path / "c.toml", "[[channel]\n"))


def test_channel_book_reloads_on_change_and_keeps_the_old_list_on_a_broken_edit(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "c.toml", GOOD)
    book = ChannelBook(path)
    book.load()
    assert [c.id for c in book.enabled()] == ["news-1"]
    write(path, GOOD.replace("enabled = false", "enabled = true"))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    book.reload_now()
    assert [c.id for c in book.enabled()] == ["news-1", "music_2"]
    write(path, "[[channel]]\nid = 'x'\n")
    book.reload_now()
    assert len(book.all()) == 2  # kept
    assert book.get("music_2") is not None


def test_a_missing_channels_file_is_an_empty_list(tmp_path: Path) -> None:
    book = ChannelBook(tmp_path / "none.toml")
    book.load()
    assert book.all() == []
    write(tmp_path / "none.toml", GOOD)
    book.reload_now()
    assert len(book.all()) == 2


async def test_fetch_readers_get_fixed_size_chunks_as_bytes_arrive() -> None:
    fetch = Fetch("k")
    fetch.start("video/mp2t", 10)
    received: list[bytes] = []

    async def read() -> None:
        async for chunk in fetch.chunks(4):
            received.append(chunk)

    reader = asyncio.create_task(read())
    fetch.feed(b"ab")
    await asyncio.sleep(0)
    assert received == []  # not a full chunk yet
    fetch.feed(b"cdef")
    for _ in range(1000):  # until the reader has had its turn; no time involved
        if received:
            break
        await asyncio.sleep(0)
    assert received == [b"abcd"]  # sent before the body is complete
    fetch.feed(b"ghij")
    fetch.finish()
    await reader
    assert received == [b"abcd", b"efgh", b"ij"]
    late = [chunk async for chunk in fetch.chunks(4)]
    assert late == received


async def test_fetch_error_before_the_answer_is_raised_by_ready() -> None:
    fetch = Fetch("k")
    fetch.fail(UpstreamError("boom"))
    with pytest.raises(UpstreamError):
        await fetch.ready()


async def test_segment_buffer_shares_one_fetch_and_evicts_by_bytes() -> None:
    metrics = Metrics()
    buffer = SegmentBuffer(limit_bytes=25, metrics=metrics)
    runs: list[str] = []

    def producer(key: str):  # type: ignore[no-untyped-def]
        async def produce(fetch: Fetch) -> None:
            runs.append(key)
            fetch.start("video/mp2t", 10)
            await asyncio.sleep(0.01)
            fetch.feed(b"x" * 10)

        return produce

    first, started = buffer.get("a", producer("a"))
    second, again = buffer.get("a", producer("a"))
    assert started and not again and first is second
    await first.ready()
    assert [c async for c in second.chunks(64)] == [b"x" * 10]
    for key in ("b", "c"):
        fetch, _ = buffer.get(key, producer(key))
        [c async for c in fetch.chunks(64)]
    await asyncio.sleep(0)
    assert runs == ["a", "b", "c"]
    assert buffer.size <= 25 and len(buffer) == 2  # "a", the oldest, was dropped
    await buffer.close()


async def test_segment_buffer_forgets_a_failed_fetch() -> None:
    buffer = SegmentBuffer(limit_bytes=1000, metrics=Metrics())

    async def failing(fetch: Fetch) -> None:
        raise UpstreamError("nope")

    fetch, _ = buffer.get("a", failing)
    with pytest.raises(UpstreamError):
        await fetch.ready()
    await asyncio.sleep(0)
    assert len(buffer) == 0
    await buffer.close()


def test_viewer_limit_counts_clients_per_channel_within_the_window() -> None:
    now = [0.0]
    metrics = Metrics()
    viewers = Viewers(2, metrics, window=30, clock=lambda: now[0])
    assert viewers.touch("a", "ip1|vlc")
    assert not viewers.touch("a", "ip1|vlc")
    viewers.touch("a", "ip2|vlc")
    with pytest.raises(ServiceUnavailable) as refused:
        viewers.touch("b", "ip3|vlc")
    assert refused.value.code == "too_many_viewers"
    viewers.touch("b", "ip2|vlc")  # already watching: switching channels is allowed
    assert metrics.active_streams._value.get() == 3
    now[0] = 31.0
    viewers.touch("b", "ip3|vlc")  # the others lapsed
    assert viewers.count("a") == 0 and viewers.count("b") == 1
