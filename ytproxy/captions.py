"""Subtitles and captions of a video: the public track list and the private sources.

yt-dlp reports uploaded `subtitles` and YouTube's `automatic_captions` as
`{language code: [{"ext", "url", "name", "protocol"}, ...]}`, one entry per format
(YouTube: json3, srv1, srv2, srv3, ttml, srt, vtt; the generic extractor: the one
file a page's `<track>` names, or an HLS WebVTT rendition with protocol `m3u8_native`).

- `list_tracks(info)` gives, for each kind, `[{"code", "name", "formats"}]` sorted by
  code, with `downloadable` true when the gateway can serve the track: it needs a
  WebVTT entry (a file, or an HLS playlist of WebVTT segments), which it then serves as
  VTT or converts to SRT (`ytproxy/download/subtitles.py`).
- `track_sources(info)` keeps, per kind and code, that WebVTT entry's URL, protocol
  and headers: they go into the private sources (`sources.py`), never into the result,
  so YouTube's timedtext URLs never reach a client.

This module is pure: no I/O, no links (made when a result is served). It is shared by
the analyse job (the list), `sources.py` (the URLs) and the subtitle download.
"""

from __future__ import annotations

from typing import Any

KINDS = ("subtitles", "automatic_captions")
_SERVED_PROTOCOLS = frozenset({"http", "https", "m3u8", "m3u8_native"})
# Not subtitles: YouTube's live chat replay is listed among them (protocol
# youtube_live_chat, ext json).
_NOT_TRACKS = frozenset({"live_chat", "rechat"})


def list_tracks(info: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """`{"subtitles": [...], "automatic_captions": [...]}` for the public result."""
    listed: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        tracks = []
        for code, entries in _tracks(info, kind):
            formats = [str(e.get("ext")) for e in entries if e.get("ext")]
            tracks.append(
                {
                    "code": code,
                    "name": _name(entries) or code,
                    "formats": list(dict.fromkeys(formats)),
                    "downloadable": _webvtt(entries) is not None,
                }
            )
        listed[kind] = tracks
    return listed


def track_sources(info: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """`{kind: {code: {"url", "protocol", "http_headers"}}}` of every servable track."""
    sources: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in KINDS:
        found = {}
        for code, entries in _tracks(info, kind):
            entry = _webvtt(entries)
            if entry is not None:
                found[code] = {
                    "url": entry["url"],
                    "protocol": entry.get("protocol") or "https",
                    "http_headers": entry.get("http_headers") or info.get("http_headers") or {},
                }
        sources[kind] = found
    return sources


def _tracks(info: dict[str, Any], kind: str) -> list[tuple[str, list[dict[str, Any]]]]:
    table = info.get(kind)
    if not isinstance(table, dict):
        return []
    tracks = []
    for code, entries in table.items():
        if code in _NOT_TRACKS or not isinstance(entries, list):
            continue
        usable = [e for e in entries if isinstance(e, dict) and e.get("url")]
        if usable:
            tracks.append((str(code), usable))
    return sorted(tracks, key=lambda track: track[0])


def _webvtt(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    for entry in entries:
        protocol = entry.get("protocol") or "https"
        if entry.get("ext") == "vtt" and protocol in _SERVED_PROTOCOLS:
            return entry
    return None


def _name(entries: list[dict[str, Any]]) -> str | None:
    return next((str(e["name"]) for e in entries if e.get("name")), None)
