"""A local stand-in for googlevideo, used only by the test suite.

- `media`: tiny real media made with ffmpeg, and the facts tests compare against;
- `server`: `Origin`, serving it the way YouTube's CDN does (signed expiring absolute
  URLs, a sliding live HLS window, Range-served DASH files) from a background thread;
- `manifests`: pure rendering of the live window, playlists and MPD;
- `controls`: thread-safe signing, fault switches and request counters;
- `responses`: Range handling and bodies (with the mid-body drop fault).

Nothing here is imported by `ytproxy/`, and nothing it generates is committed.
"""

from __future__ import annotations

from tests.origin.media import DashRepresentation, HlsVariant, Media, VodFile, generate_media
from tests.origin.server import Origin

__all__ = ["DashRepresentation", "HlsVariant", "Media", "Origin", "VodFile", "generate_media"]
