"""A yt-dlp extractor plugin that answers the test origin's YouTube-style URLs.

YouTube's own extractor cannot run offline, so the test suite puts this directory
(`tests/plugins`) on `sys.path`; yt-dlp's plugin loader finds the `yt_dlp_plugins`
namespace package there and puts these extractors ahead of its built-in ones. The
product calls yt-dlp exactly as in production and never knows.

- `YoutubeLocalIE`: `http://127.0.0.1:<port>/watch?v=<id>` (or `localhost`). It calls the
  origin's player API and builds the info dict the way yt-dlp 2026.10's `YoutubeIE` does
  from a player response (`yt_dlp/extractor/youtube/_video.py`): `live_status` from
  `videoDetails`, HLS formats from `hlsManifestUrl` through `_extract_m3u8_formats` with
  `format_id` set to the itag in the URL, https formats with `available_at` for ended
  lives, `raise_no_formats(reason, expected=True)` while upcoming, `release_timestamp`
  from `liveBroadcastDetails.startTimestamp`. The title is left as YouTube sends it:
  yt-dlp's `YoutubeDL.process_video_result` appends the date to live titles itself.
- `YoutubeLocalTabIE`: `/@<handle>/live` (a url result for the watch URL, or
  `UserNotLive`) and `/@<handle>/streams` (a playlist of flat `url` entries, titled
  "<channel> - Live" like `YoutubeTabIE`).

It matches only loopback hosts with a port, so every other origin URL stays with the
generic extractor. It does not imitate subtitles, chapters, comments, storyboards, SABR
or PO-token providers.
"""

import math
import re
import time
import urllib.parse

from yt_dlp.extractor.common import InfoExtractor
from yt_dlp.utils import (
    NO_DEFAULT,
    UserNotLive,
    int_or_none,
    join_nonempty,
    mimetype2ext,
    parse_codecs,
    parse_iso8601,
    qualities,
    traverse_obj,
    url_or_none,
)

_LOCAL = r"https?://(?P<base>(?:127\.0\.0\.1|localhost):\d+)"

_QUALITY = qualities(
    [
        "tiny",
        "audio_quality_ultralow",
        "audio_quality_low",
        "audio_quality_medium",
        "audio_quality_high",
        "small",
        "medium",
        "large",
        "hd720",
        "hd1080",
        "hd1440",
        "hd2160",
        "hd2880",
        "highres",
    ]
)
_THUMBNAIL_NAMES = (
    "maxresdefault",
    "hq720",
    "sddefault",
    "hqdefault",
    "0",
    "mqdefault",
    "default",
    "sd1",
    "sd2",
    "sd3",
    "hq1",
    "hq2",
    "hq3",
    "mq1",
    "mq2",
    "mq3",
    "1",
    "2",
    "3",
)


class YoutubeLocalIE(InfoExtractor):
    IE_NAME = "youtube:local"
    IE_DESC = "YouTube imitation of the test origin (tests/plugins)"
    _VALID_URL = _LOCAL + r"/watch\?(?:[^#]*&)?v=(?P<id>[0-9A-Za-z_-]{11})"

    def _real_extract(self, url):
        base, video_id = self._match_valid_url(url).group("base", "id")
        response = self._download_json(
            f"http://{base}/youtubei/v1/player",
            video_id,
            note="Downloading player API JSON",
            query={"videoId": video_id},
        )
        details = response.get("videoDetails") or {}
        playability = response.get("playabilityStatus") or {}
        micro = traverse_obj(response, ("microformat", "playerMicroformatRenderer")) or {}
        broadcast = micro.get("liveBroadcastDetails") or {}
        if not details:
            self.raise_no_formats(playability.get("reason") or "Video unavailable", expected=True)

        # _video.py `_list_formats`
        is_live = details.get("isLive")
        if is_live is None:
            is_live = broadcast.get("isLiveNow")
        live_content = details.get("isLiveContent")
        live_status = (
            "post_live"
            if details.get("isPostLiveDvr")
            else "is_live"
            if is_live
            else "is_upcoming"
            if details.get("isUpcoming")
            else "was_live"
            if live_content
            else "not_live"
            if False in (is_live, live_content)
            else None
        )
        formats = list(self._formats(response, video_id, live_status))
        if not formats and (reason := playability.get("reason")):
            self.raise_no_formats(reason, expected=True)

        channel_id = details.get("channelId") or micro.get("externalChannelId")
        handle = self._search_regex(
            r"/(@[\w.-]+)", micro.get("ownerProfileUrl") or "", "handle", default=None
        )
        start = parse_iso8601(broadcast.get("startTimestamp"))
        end = parse_iso8601(broadcast.get("endTimestamp"))
        duration = int_or_none(details.get("lengthSeconds")) or None
        if not duration and start and end:
            duration = end - start
        thumbnails = [
            {
                "url": t["url"],
                "width": int_or_none(t.get("width")),
                "height": int_or_none(t.get("height")),
            }
            for t in traverse_obj(
                details, ("thumbnail", "thumbnails", lambda _, v: url_or_none(v["url"]))
            )
        ]
        original = thumbnails[-1]["url"] if thumbnails else None
        thumbnails.extend(
            {
                "url": "https://i.ytimg.com/vi{webp}/{id}/{name}{live}.{ext}".format(
                    webp="_webp" if ext == "webp" else "",
                    id=video_id,
                    name=name,
                    ext=ext,
                    live="_live" if live_status == "is_live" else "",
                ),
            }
            for name in _THUMBNAIL_NAMES
            for ext in ("webp", "jpg")
        )
        for thumb in thumbnails:
            i = next(
                (i for i, n in enumerate(_THUMBNAIL_NAMES) if f"/{video_id}/{n}" in thumb["url"]),
                len(_THUMBNAIL_NAMES),
            )
            thumb["preference"] = (0 if ".webp" in thumb["url"] else -1) - 2 * i
        self._remove_duplicate_formats(thumbnails)
        timestamp = parse_iso8601(micro.get("uploadDate"), timezone=NO_DEFAULT)
        channel = details.get("author") or micro.get("ownerChannelName")
        return {
            "id": video_id,
            "title": details.get("title") or traverse_obj(micro, ("title", "simpleText")),
            "formats": formats,
            "thumbnails": thumbnails,
            "thumbnail": original,
            "description": details.get("shortDescription"),
            "channel_id": channel_id,
            "channel_url": f"https://www.youtube.com/channel/{channel_id}" if channel_id else None,
            "duration": duration,
            "view_count": int_or_none(details.get("viewCount")),
            "age_limit": 0 if micro.get("isFamilySafe", True) else 18,
            "webpage_url": f"https://www.youtube.com/watch?v={video_id}",
            "categories": [micro["category"]] if micro.get("category") else None,
            "tags": details.get("keywords") or [],
            "playable_in_embed": playability.get("playableInEmbed"),
            "live_status": live_status,
            "media_type": "livestream" if live_content else "video",
            "release_timestamp": start,
            "channel": channel,
            "uploader": channel,
            "uploader_id": handle,
            "uploader_url": f"https://www.youtube.com/{handle}" if handle else None,
            "timestamp": timestamp,
            "availability": "public",
        }

    def _formats(self, response, video_id, live_status):
        streaming = response.get("streamingData") or {}
        available_at = self._available_at(response)
        # https formats; live adaptive formats (targetDurationSec) are skipped, as yt-dlp
        # does unless `formats=incomplete` or live-from-start.
        for stream in traverse_obj(streaming, (("formats", "adaptiveFormats"), ...)):
            if stream.get("targetDurationSec") or not url_or_none(stream.get("url")):
                continue
            fmt = self._https_format(stream)
            if live_status not in ("is_live", "post_live"):
                fmt["available_at"] = available_at
            yield fmt
        hls = streaming.get("hlsManifestUrl")
        if hls and live_status != "post_live":
            for f in self._extract_m3u8_formats(
                hls, video_id, "mp4", fatal=False, live=live_status == "is_live"
            ):
                itag = self._search_regex(r"/itag/(\d+)", f["url"], "itag", default=None)
                if live_status not in ("is_live", "post_live"):
                    f["available_at"] = available_at
                if f.get("source_preference") is None:
                    f["source_preference"] = -1
                if itag:
                    f["format_id"] = itag
                f["quality"] = -1
                if f.get("fps") and f["fps"] <= 1:
                    del f["fps"]
                yield f

    def _https_format(self, stream):
        quality = stream.get("quality")
        if quality == "tiny" or not quality:
            quality = (stream.get("audioQuality") or "").lower() or quality
        track = stream.get("audioTrack") or {}
        name = stream.get("qualityLabel") or (quality or "").replace("audio_quality_", "")
        bitrate = int_or_none(stream.get("averageBitrate")) or int_or_none(stream.get("bitrate"))
        tbr = bitrate / 1000 if bitrate else None
        fps = int_or_none(stream.get("fps")) or 0
        fmt = {
            "url": stream["url"],
            "asr": int_or_none(stream.get("audioSampleRate")),
            "filesize": int_or_none(stream.get("contentLength")),
            "format_id": str(stream.get("itag")),
            "format_note": join_nonempty(
                join_nonempty(
                    track.get("displayName"), track.get("audioIsDefault") and "(default)", delim=" "
                ),
                name,
                delim=", ",
            ),
            "source_preference": -1,
            "fps": fps if fps > 1 else None,
            "audio_channels": stream.get("audioChannels"),
            "height": int_or_none(stream.get("height")),
            "quality": _QUALITY(quality),
            "has_drm": False,
            "tbr": tbr,
            "width": int_or_none(stream.get("width")),
            "language": (track.get("id") or "").split(".")[0] or None,
            "language_preference": 5 if track.get("audioIsDefault") else -1,
            "downloader_options": {"http_chunk_size": 10 << 20},
        }
        mime = re.match(
            r'((?:[^/]+)/(?:[^;]+))(?:;\s*codecs="([^"]+)")?', stream.get("mimeType") or ""
        )
        if mime:
            fmt["ext"] = mimetype2ext(mime.group(1))
            fmt.update(parse_codecs(mime.group(2)))
        if "none" in (fmt.get("acodec"), fmt.get("vcodec")) and fmt.get("ext"):
            fmt["container"] = fmt["ext"] + "_dash"
        return fmt

    def _available_at(self, response):
        # _video.py `_get_available_at_timestamp`: now, plus any pre-roll ad's length.
        now = time.time()
        wait = sum(
            int_or_none(urllib.parse.parse_qs(vars_).get("length_seconds", [None])[-1]) or 0
            for vars_ in traverse_obj(
                response,
                (
                    "adPlacements",
                    lambda _, v: (
                        v["adPlacementRenderer"]["config"]["adPlacementConfig"]["kind"]
                        == "AD_PLACEMENT_KIND_START"
                    ),
                    "adPlacementRenderer",
                    "renderer",
                    "instreamVideoAdRenderer",
                    "playerVars",
                    {str},
                ),
            )
        )
        return math.ceil(now) + wait if wait else int(now)


class YoutubeLocalTabIE(InfoExtractor):
    IE_NAME = "youtube:local:tab"
    IE_DESC = "YouTube channel tabs of the test origin (tests/plugins)"
    _VALID_URL = _LOCAL + r"/(?P<id>@[\w.-]+)/(?P<tab>live|streams)/?(?:[?#]|$)"

    def _real_extract(self, url):
        base, handle, tab = self._match_valid_url(url).group("base", "id", "tab")
        data = self._download_json(url, handle, note=f"Downloading {tab} tab JSON")
        channel = data.get("channel") or {}
        channel_id = channel.get("channelId")
        if tab == "live":
            video_id = data.get("videoId")
            if not video_id:
                raise UserNotLive(video_id=channel_id or handle)
            return self.url_result(f"http://{base}/watch?v={video_id}", YoutubeLocalIE, video_id)

        name = channel.get("name")
        metadata = {
            "channel": name,
            "channel_id": channel_id,
            "channel_url": f"https://www.youtube.com/channel/{channel_id}" if channel_id else None,
            "uploader": name,
            "uploader_id": channel.get("handle"),
            "uploader_url": f"https://www.youtube.com/{channel.get('handle')}",
        }
        entries = []
        for video in data.get("videos") or []:
            scheduled = int_or_none(video.get("scheduledStartTime"))
            live_status = {"live": "is_live", "upcoming": "is_upcoming", "ended": "was_live"}.get(
                video.get("status")
            )
            entries.append(
                {
                    "_type": "url",
                    "ie_key": YoutubeLocalIE.ie_key(),
                    "id": video["videoId"],
                    "url": f"http://{base}/watch?v={video['videoId']}",
                    "title": video.get("title"),
                    "description": None,
                    "duration": None,
                    **metadata,
                    "thumbnails": [],
                    "timestamp": None,
                    "release_timestamp": scheduled,
                    "availability": "public",
                    "concurrent_view_count"
                    if live_status in ("is_live", "is_upcoming")
                    else "view_count": 0,
                    "live_status": live_status,
                    "channel_is_verified": None,
                }
            )
        return self.playlist_result(
            entries,
            channel_id or handle,
            f"{name} - Live",
            **metadata,
            description="",
            tags=[],
            availability="public",
        )
