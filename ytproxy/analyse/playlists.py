"""Playlists and channels: yt-dlp's flat listing → the public `type: "playlist"` result.

A playlist or channel URL is listed flat (`extract_flat: "in_playlist"`: each entry is
what the listing page says about it, no entry is extracted), at most
`PLAYLIST_MAX_ENTRIES` entries (yt-dlp's `playlistend`, so the pages past the limit are
not even fetched). `build_playlist(info, limit)` keeps, for the playlist, its title,
uploader, page URL and entry count (yt-dlp's `playlist_count` when the site says how
many there are, else the number listed) and, for each entry, an `id` (the site's, or a
hash of its URL when the listing gives none, as an RSS feed does), title, duration,
thumbnail and URL: the URL a client submits to `POST /v1/analyze` to analyse that entry.

The whole listing is stored as one result; `page_of(result, page, per_page)` is the
slice a poll answers (`GET /v1/tasks/{id}?page=N`, `PAGE_SIZE` entries a page), with
`page`, `pages` and `total`. `entry_ids` and `pick_entries` serve `POST /v1/zip`.

This module is pure: no I/O and no links (`endpoints.py` adds the thumbnails' gateway
paths when a page is served).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from yt_dlp.utils import unsmuggle_url

from .formats import best_thumbnail, short_description

PAGE_SIZE = 100
PLAYLIST_TYPES = frozenset({"playlist", "multi_video"})


def is_playlist(info: dict[str, Any]) -> bool:
    return info.get("_type") in PLAYLIST_TYPES


def build_playlist(info: dict[str, Any], limit: int) -> dict[str, Any]:
    """The public result of a listed playlist (JSON-ready, without links)."""
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw in info.get("entries") or []:
        if len(entries) >= limit:
            break
        entry = _entry(raw, len(entries) + 1)
        if entry is None or entry["id"] in seen:
            continue
        seen.add(entry["id"])
        entries.append(entry)
    count = info.get("playlist_count")
    total = count if isinstance(count, int) and count >= len(entries) else len(entries)
    return {
        "type": "playlist",
        "id": info.get("id"),
        "title": info.get("title") or info.get("id") or "playlist",
        "uploader": info.get("uploader") or info.get("channel"),
        "channel_url": info.get("channel_url") or info.get("uploader_url"),
        "webpage_url": info.get("original_url") or info.get("webpage_url"),
        "thumbnail": best_thumbnail(info),
        "description": short_description(info.get("description")),
        # How many entries the site lists, and how many of them are here.
        "entry_count": total,
        "listed": len(entries),
        "truncated": total > len(entries),
        "is_live": False,
        "entries": entries,
    }


def _entry(raw: Any, index: int) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    url = raw.get("url") or raw.get("webpage_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    url = unsmuggle_url(url)[0]  # an RSS item's guid rides in the URL's fragment
    duration = raw.get("duration")
    entry_id = raw.get("id")
    return {
        "index": index,
        "id": str(entry_id) if entry_id else hashlib.sha256(url.encode()).hexdigest()[:16],
        "title": raw.get("title") or raw.get("id") or url,
        "duration": duration if isinstance(duration, int | float) else None,
        "thumbnail": best_thumbnail(raw),
        "uploader": raw.get("uploader") or raw.get("channel"),
        "url": url,
    }


def page_count(result: dict[str, Any], per_page: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(len(result["entries"]) / per_page))


def page_of(result: dict[str, Any], page: int, per_page: int = PAGE_SIZE) -> dict[str, Any]:
    """A copy of `result` holding one page of its entries; `page` is within range."""
    start = (page - 1) * per_page
    return {
        **result,
        "entries": [dict(e) for e in result["entries"][start : start + per_page]],
        "page": page,
        "pages": page_count(result, per_page),
        "per_page": per_page,
        "total": len(result["entries"]),
    }


def pick_entries(
    result: dict[str, Any], ids: list[str] | None, page: int | None
) -> list[dict[str, Any]] | None:
    """The entries named by `ids` (in the playlist's order), or those of `page`;
    None when an id is not in the playlist or the page does not exist."""
    entries: list[dict[str, Any]] = result["entries"]
    if ids is not None:
        wanted = set(ids)
        chosen = [e for e in entries if e["id"] in wanted]
        return chosen if len(chosen) == len(wanted) else None
    if page is None or not 1 <= page <= page_count(result):
        return None
    return entries[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
