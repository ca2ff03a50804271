"""The reduced InnerTube player response the googlevideo imitation answers with.

A pure function of a live, its state and the URLs minted for this call, shaped like the
fields of YouTube's `/youtubei/v1/player` answer that yt-dlp's YouTube extractor reads
(`_video.py`: `_list_formats`, `_extract_formats_and_subtitles`, `_real_extract`):
`videoDetails`, `playabilityStatus`, `streamingData`, `microformat`, `adPlacements`.
Everything else YouTube sends (captions, storyboards, heartbeat, tracking) is left out.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any

from tests.origin.media import VodFile
from tests.origin.youtube_media import SEGMENT_SECONDS, YoutubeMedia

if TYPE_CHECKING:
    from tests.origin.googlevideo import Live, Status

_QUALITY = {144: "tiny", 180: "small", 240: "small"}


def channel_id_of(handle: str) -> str:
    """A stable `UC` + 22-character channel id for a handle."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(handle.encode()).digest()).decode()
    return "UC" + digest[:22]


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(int(moment), dt.UTC).isoformat()


def begins_in(seconds: float) -> str:
    """YouTube's wording of an upcoming live's start, as in the player's `reason`."""
    if seconds < 60:
        return "a few moments"
    if seconds < 3600:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    if seconds < 2 * 86400:
        hours = round(seconds / 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{round(seconds / 86400)} days"


def player_response(
    live: Live,
    status: Status,
    channel_name: str,
    now: float,
    urls: dict[str, Any],
    media: YoutubeMedia,
    vod: VodFile,
    lifetime: int,
) -> dict[str, Any]:
    channel_id = channel_id_of(live.handle)
    details: dict[str, Any] = {
        "videoId": live.video_id,
        "title": live.title,
        "lengthSeconds": str(int((live.end or now) - live.start)) if status == "ended" else "0",
        "channelId": channel_id,
        "shortDescription": live.description,
        "author": channel_name,
        "isLiveContent": True,
        "isPrivate": False,
        "viewCount": "0",
        "thumbnail": {
            "thumbnails": [
                {
                    "url": f"https://i.ytimg.com/vi/{live.video_id}/hqdefault"
                    f"{'_live' if status == 'live' else ''}.jpg",
                    "width": 480,
                    "height": 360,
                }
            ]
        },
    }
    broadcast: dict[str, Any] = {
        "isLiveNow": status == "live",
        "startTimestamp": _iso(live.start),
    }
    playability: dict[str, Any] = {"status": "OK", "playableInEmbed": True}
    body: dict[str, Any] = {"videoDetails": details, "playabilityStatus": playability}
    if status == "upcoming":
        details["isUpcoming"] = True
        wait = begins_in(live.start - now)
        playability.update(
            status="LIVE_STREAM_OFFLINE",
            reason=f"This live event will begin in {wait}.",
            liveStreamability={
                "liveStreamabilityRenderer": {
                    "videoId": live.video_id,
                    "offlineSlate": {
                        "liveStreamOfflineSlateRenderer": {
                            "scheduledStartTime": str(int(live.start)),
                            "mainText": {"runs": [{"text": "Live in "}, {"text": wait}]},
                        }
                    },
                    "pollDelayMs": "15000",
                }
            },
        )
    elif status == "live":
        details["isLive"] = True
        details["isLowLatencyLiveStream"] = False
        details["latencyClass"] = "MDE_STREAM_OPTIMIZATIONS_RENDERER_LATENCY_NORMAL"
        playability["liveStreamability"] = {
            "liveStreamabilityRenderer": {"videoId": live.video_id, "pollDelayMs": "5000"}
        }
        streaming: dict[str, Any] = {
            "expiresInSeconds": str(lifetime),
            "hlsManifestUrl": urls["master"],
        }
        if live.flavour == "demuxed":
            streaming["adaptiveFormats"] = [
                _live_adaptive_format(media, itag, url) for itag, url in urls["playlists"].items()
            ]
        body["streamingData"] = streaming
    else:
        broadcast["endTimestamp"] = _iso(live.end or now)
        body["streamingData"] = {
            "expiresInSeconds": str(lifetime),
            "formats": [_vod_format(vod, urls["vod"])],
        }
        if live.available_delay:
            body["adPlacements"] = [_preroll_ad(int(live.available_delay))]
    body["microformat"] = {
        "playerMicroformatRenderer": {
            "title": {"simpleText": live.title},
            "description": {"simpleText": live.description},
            "lengthSeconds": details["lengthSeconds"],
            "ownerProfileUrl": f"http://www.youtube.com/@{live.handle}",
            "externalChannelId": channel_id,
            "ownerChannelName": channel_name,
            "isFamilySafe": True,
            "isUnlisted": False,
            "hasYpcMetadata": False,
            "category": "News & Politics",
            "publishDate": _iso(live.created),
            "uploadDate": _iso(live.created),
            "liveBroadcastDetails": broadcast,
        }
    }
    return body


def _live_adaptive_format(media: YoutubeMedia, itag: int, url: str) -> dict[str, Any]:
    rendition = media.rendition(itag)
    entry: dict[str, Any] = {
        "itag": itag,
        "url": url,
        "bitrate": rendition.bandwidth,
        "averageBitrate": rendition.average_bandwidth,
        "targetDurationSec": SEGMENT_SECONDS,
        "maxDvrDurationSec": 14400,
        "lastModified": "0",
    }
    if rendition.kind == "audio":
        entry.update(
            mimeType=f'audio/mp4; codecs="{rendition.codecs}"',
            quality="tiny",
            audioQuality="AUDIO_QUALITY_LOW",
            audioSampleRate="48000",
            audioChannels=2,
            audioTrack={"displayName": "English original", "id": "en.4", "audioIsDefault": True},
        )
    else:
        height = rendition.height or 0
        entry.update(
            mimeType=f'video/mp4; codecs="{rendition.codecs}"',
            width=rendition.width,
            height=height,
            fps=rendition.fps,
            quality=_QUALITY.get(height, "small"),
            qualityLabel=rendition.quality_label,
        )
    return entry


def _vod_format(vod: VodFile, url: str) -> dict[str, Any]:
    return {
        "itag": 18,
        "url": url,
        "mimeType": 'video/mp4; codecs="avc1.42C00D, mp4a.40.2"',
        "bitrate": int(vod.size * 8 / vod.duration),
        "width": vod.width,
        "height": vod.height,
        "contentLength": str(vod.size),
        "quality": "small",
        "fps": 15,
        "qualityLabel": f"{vod.height}p",
        "audioQuality": "AUDIO_QUALITY_LOW",
        "audioSampleRate": "44100",
        "audioChannels": 1,
        "approxDurationMs": str(int(vod.duration * 1000)),
    }


def _preroll_ad(seconds: int) -> dict[str, Any]:
    return {
        "adPlacementRenderer": {
            "config": {"adPlacementConfig": {"kind": "AD_PLACEMENT_KIND_START"}},
            "renderer": {
                "instreamVideoAdRenderer": {"playerVars": f"length_seconds={seconds}&video_id=ad"}
            },
        }
    }
