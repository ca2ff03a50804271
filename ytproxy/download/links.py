"""Download links: opaque signed tokens naming a source URL and one or two format ids.

`download_path(...)` returns `/v1/download/<token>`; the token (see `signing.py`)
carries the video's URL, the format id(s), the title and the container to deliver,
and expires after `LINK_TTL`. Links are made when a result is served, not stored
with it, so every response carries links with their full lifetime.

`part_path(...)` makes the internal links a merge's ffmpeg reads its two inputs from
(`/v1/download/part/<token>`); they name the merge's transfer and are only served
while that transfer runs.

`subtitle_path(...)` makes a subtitle track's link (`/v1/download/subtitle/<token>`),
naming the video's URL, the kind (`subtitles` or `automatic_captions`), the language
code and the format to deliver (`vtt` or `srt`).

This module only makes and reads links; `relay.py` and `merge.py` serve them.
"""

from __future__ import annotations

from typing import Any

from ..signing import Signer

PURPOSE = "download"
# Inputs of a merge, read by ffmpeg through this gateway; useless without the merge.
PART_PURPOSE = "download-part"
SUBTITLE_PURPOSE = "download-subtitle"


def download_path(
    signer: Signer,
    ttl: float,
    *,
    source_url: str,
    format_ids: list[str],
    title: str,
    ext: str,
) -> str:
    payload = {"u": source_url, "f": format_ids, "t": title[:200], "x": ext}
    return f"/v1/download/{signer.seal(PURPOSE, payload, ttl)}"


def read_link(signer: Signer, token: str) -> dict[str, Any]:
    """`{"u", "f", "t", "x"}` of a valid token; raises Forbidden otherwise."""
    return signer.open(PURPOSE, token)


def part_path(signer: Signer, ttl: float, *, source_url: str, format_id: str, transfer: str) -> str:
    """The internal URL ffmpeg reads one input of merge `transfer` from."""
    payload = {"u": source_url, "f": format_id, "m": transfer}
    return f"/v1/download/part/{signer.seal(PART_PURPOSE, payload, ttl)}"


def read_part(signer: Signer, token: str) -> dict[str, Any]:
    """`{"u", "f", "m"}` of a valid part token; raises Forbidden otherwise."""
    return signer.open(PART_PURPOSE, token)


def subtitle_path(
    signer: Signer, ttl: float, *, source_url: str, kind: str, code: str, title: str, ext: str
) -> str:
    payload = {"u": source_url, "k": kind, "l": code, "t": title[:200], "x": ext}
    return f"/v1/download/subtitle/{signer.seal(SUBTITLE_PURPOSE, payload, ttl)}"


def read_subtitle(signer: Signer, token: str) -> dict[str, Any]:
    """`{"u", "k", "l", "t", "x"}` of a valid subtitle token; raises Forbidden otherwise."""
    return signer.open(SUBTITLE_PURPOSE, token)
