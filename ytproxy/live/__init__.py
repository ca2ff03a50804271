"""Job one: live YouTube channels as an IPTV playlist, relayed through the gateway.

- `channels`: the channels file, validated and reloaded on change;
- `resolver`: channel → live HLS stream through yt-dlp, cached, single-flight;
- `guide`: the XMLTV guide (`epg`: its HTTP side);
- `playlist`: HLS rewriting (every URI points at the gateway);
- `links`: the gateway's stable and signed live URLs;
- `upstream`, `relay`, `fanout`: fetching playlists and segments once for every viewer;
- `viewers`: who is watching, and the viewer limit;
- `radio`: a channel's audio alone (radio entries), `demuxed`: a demuxed live as one
  stream, `remux`: the per-segment ffmpeg both use;
- `service`: the component the app holds; `endpoints`: the HTTP side.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from . import endpoints, epg


def routes() -> list[BaseRoute]:
    return [
        Route("/playlist.m3u", endpoints.playlist_m3u, name="playlist_m3u"),
        Route("/api/m3u", endpoints.playlist_m3u, name="api_m3u"),
        Route("/epg.xml", epg.epg_xml, name="epg"),
        Route("/epg.xml.gz", epg.epg_xml_gz, name="epg_gz"),
        Route("/api/channels", endpoints.channels_api, name="api_channels"),
        Route("/api/stream/{channel_id}", endpoints.stream_api, name="api_stream"),
        Route(
            "/api/cache/invalidate/{channel_id}",
            endpoints.invalidate_api,
            methods=["POST"],
            name="api_cache_invalidate",
        ),
        Route("/live/{channel_id}.m3u8", endpoints.channel_master, name="live_master"),
        Route("/live/{channel_id}/p/{token}.m3u8", endpoints.media_playlist, name="live_variant"),
        Route("/live/{channel_id}/audio.m3u8", endpoints.audio_playlist, name="live_audio"),
        Route("/live/{channel_id}/program.m3u8", endpoints.program_playlist, name="live_program"),
        Route(
            "/live/{channel_id}/slate/{sequence:int}.ts", endpoints.slate_segment, name="live_slate"
        ),
        Route("/live/{channel_id}/s/{token}.{ext}", endpoints.media_relay, name="live_media"),
        Route("/live/{channel_id}/a/{token}.ts", endpoints.audio_relay, name="live_audio_segment"),
        Route("/live/{channel_id}/m/{token}.ts", endpoints.muxed_relay, name="live_muxed_segment"),
        Route("/channels", endpoints.channels_page, name="channels"),
    ]
