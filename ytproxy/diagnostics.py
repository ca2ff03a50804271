"""The self-test: `/diagnostics` (page, or JSON with `Accept: application/json`) and
`/api/diagnostics` (JSON).

It checks, each with an explanation written for the person running the gateway:
yt-dlp's version and age (read from the version, which is the release date), the
JavaScript runtime yt-dlp finds, the PO-token provider, the proxy (one GET through
the relay's own session to a harmless URL), the cookies file in use
(`YTDLP_COOKIES_FILE`, or one uploaded from the settings page: readable and in
Netscape format, with what is wrong when it is not, else its age, domains and whether
YouTube's login cookies are in it; the extractor gives yt-dlp a private copy, so the
file itself may be read-only),
Redis, ffmpeg, and each live channel's last resolution. A `blocked` channel (YouTube
refused its stream again right after a fresh resolution: `live/forbidden.py`) gets the
likely causes, read against the other checks (PO token, cookies, egress IP, yt-dlp's
version), and what to do.

Statuses: `ok`, `warning` (works, but something will bite), `error` (a part does not
work), `off` (not configured, which is allowed). The report is a 200 whatever it
finds: it is a report, not a failure of the request.

It never shows a secret: the proxy and Redis appear without credentials, and the
cookies file is described (counts, line numbers), never quoted beyond its first
line's first characters. Explanations live in `locales/diagnostics.toml`; JSON gets
them in English. It does not fix anything, and apart from the proxy GET it sends
nothing beyond this host and the configured services.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import importlib.metadata
import json
import logging
import re
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
import aiohttp_socks
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .cookies import LOGIN_COOKIES, is_youtube_domain
from .core import Core, core
from .extractor import YTDLP_VERSION
from .i18n import pick_language, translate
from .settings import Settings
from .web import wants_html

log = logging.getLogger(__name__)

Status = Literal["ok", "warning", "error", "off"]
_SEVERITY: dict[str, int] = {"off": 0, "ok": 0, "warning": 1, "error": 2}

# A URL that answers 204 with no body: reaching it proves the proxy carries traffic to
# YouTube, and it costs nothing to either side.
PROXY_TARGET = "https://www.youtube.com/generate_204"
PROXY_TIMEOUT = 8.0
# YouTube changes often enough that a yt-dlp older than this is likely to fail.
YTDLP_MAX_AGE_DAYS = 60
_COOKIE_HEADERS = ("# Netscape HTTP Cookie File", "# HTTP Cookie File")
_HTTPONLY = "#HttpOnly_"
_MAX_COOKIES_BYTES = 5 * 1024 * 1024
_MAX_DOMAINS_SHOWN = 30


@dataclasses.dataclass(frozen=True)
class Text:
    """A message of `locales/diagnostics.toml`; params may be `Text` themselves."""

    key: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def render(self, lang: str) -> str:
        values = {k: v.render(lang) if isinstance(v, Text) else v for k, v in self.params.items()}
        return translate(lang, f"diag.{self.key}", **values)


@dataclasses.dataclass
class Check:
    name: str
    status: Status
    text: Text
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.text.render(lang),
            "details": self.details,
        }


@dataclasses.dataclass
class Report:
    checks: list[Check]
    channels: list[dict[str, Any]]
    generated_at: float
    blocked_causes: list[tuple[str, Text]] = dataclasses.field(default_factory=list)

    @property
    def status(self) -> Status:
        worst = max((_SEVERITY[c.status] for c in self.checks), default=0)
        return "error" if worst == 2 else "warning" if worst == 1 else "ok"

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        return {
            "status": self.status,
            "generated_at": self.generated_at,
            "checks": [check.to_dict(lang) for check in self.checks],
            "channels": [
                {**row, "causes": self._causes(lang) if row["status"] == "blocked" else []}
                for row in self.channels
            ],
        }

    def _causes(self, lang: str) -> list[dict[str, str]]:
        return [{"cause": name, "message": text.render(lang)} for name, text in self.blocked_causes]


class ChannelReport(Protocol):
    """Each channel's last resolution as the live job cached it, never resolving: one
    mapping per channel with `id`, `name`, `enabled` and, when known, `status`,
    `checked_at`, `expires_at` and `code`. The live job publishes one in the lifespan
    state (`channel_report`), so this module does not import it."""

    def __call__(self) -> Awaitable[list[dict[str, Any]]]: ...


def channel_report(conn: HTTPConnection) -> ChannelReport:
    found: ChannelReport = conn.scope["state"]["channel_report"]
    return found


async def diagnose(
    svc: Core, channels_of: ChannelReport, *, proxy_target: str = PROXY_TARGET
) -> Report:
    """Run every check at once; none of them raises."""
    settings = svc.settings
    checks = await asyncio.gather(
        asyncio.to_thread(check_ytdlp),
        _check_js_runtime(svc),
        check_pot_provider(svc),
        check_proxy(svc, proxy_target),
        asyncio.to_thread(lambda: check_cookies(settings.cookies_file())),
        check_redis(svc),
        _check_ffmpeg(svc),
        asyncio.to_thread(check_extractor_args, settings.ytdlp_extractor_args),
    )
    channel_check, channels = await check_channels(settings, channels_of)
    all_checks = [*checks, channel_check]
    return Report(all_checks, channels, time.time(), blocked_causes(settings, all_checks))


def blocked_causes(settings: Settings, checks: list[Check]) -> list[tuple[str, Text]]:
    """Why YouTube may refuse a channel's stream from here, most likely first, each
    read against what the other checks found; the last entry says what to do."""
    by_name = {check.name: check for check in checks}
    cookies_file = settings.cookies_file()
    unset = Text("blocked.unset")
    pot_state = Text("status." + by_name["pot_provider"].status)
    causes: list[tuple[str, Text]] = [
        (
            "pot_provider",
            Text("blocked.pot", {"url": settings.pot_provider_url, "state": pot_state})
            if settings.pot_provider_url
            else Text("blocked.pot_off"),
        ),
        (
            "cookies",
            Text(
                "blocked.cookies",
                {
                    "path": str(cookies_file),
                    "state": Text("status." + by_name["cookies"].status),
                },
            )
            if cookies_file is not None
            else Text("blocked.cookies_off"),
        ),
        (
            "egress_ip",
            Text(
                "blocked.egress_ip",
                {
                    "proxy": without_credentials(settings.global_proxy)
                    if settings.global_proxy
                    else unset
                },
            ),
        ),
        ("ytdlp", Text("blocked.ytdlp", {"version": YTDLP_VERSION})),
        ("what_to_do", Text("blocked.todo")),
    ]
    return causes


def check_ytdlp(today: dt.date | None = None, version: str = YTDLP_VERSION) -> Check:
    details: dict[str, Any] = {"version": version, "plugins": _plugin_versions()}
    match = re.match(r"(\d{4})\.(\d{1,2})\.(\d{1,2})", version)
    try:
        released = dt.date(*(int(part) for part in match.groups())) if match else None
    except ValueError:
        released = None
    if released is None:
        return Check("ytdlp", "warning", Text("ytdlp.undated", {"version": version}), details)
    age = ((today or dt.datetime.now(dt.UTC).date()) - released).days
    details.update(released=released.isoformat(), age_days=age)
    if age > YTDLP_MAX_AGE_DAYS:
        return Check(
            "ytdlp", "warning", Text("ytdlp.old", {"version": version, "days": age}), details
        )
    return Check("ytdlp", "ok", Text("ytdlp.ok", {"version": version, "days": age}), details)


def _plugin_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("yt-dlp-ejs", "bgutil-ytdlp-pot-provider", "deno"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


async def _check_js_runtime(svc: Core) -> Check:
    runtime = svc.probes.js_runtime
    details = runtime.to_dict()
    if not runtime.found:
        return Check("js_runtime", "error", Text("js.missing", {"name": runtime.name}), details)
    params = {"name": runtime.name, "version": runtime.version, "path": runtime.path}
    return Check("js_runtime", "ok", Text("js.ok", params), details)


async def check_pot_provider(svc: Core) -> Check:
    pot = await svc.probes.pot_provider()
    if not pot.get("configured"):
        return Check("pot_provider", "off", Text("pot.off"), pot)
    url = str(pot["url"])
    if not pot.get("reachable"):
        error = str(pot.get("error") or "no answer")
        return Check("pot_provider", "error", Text("pot.down", {"url": url, "error": error}), pot)
    server = str(pot.get("version") or "?")
    plugin = _plugin_versions()["bgutil-ytdlp-pot-provider"]
    details = {**pot, "plugin_version": plugin}
    if plugin is None:
        return Check("pot_provider", "error", Text("pot.no_plugin", {"url": url}), details)
    if server.split(".")[0] != plugin.split(".")[0]:
        params = {"url": url, "server": server, "plugin": plugin}
        return Check("pot_provider", "warning", Text("pot.mismatch", params), details)
    return Check("pot_provider", "ok", Text("pot.ok", {"url": url, "version": server}), details)


async def check_proxy(svc: Core, target: str = PROXY_TARGET) -> Check:
    """One GET through the relay's session, which is the one that carries the proxy."""
    proxy = svc.settings.global_proxy
    if not proxy:
        return Check("proxy", "off", Text("proxy.off"))
    shown = without_credentials(proxy)
    params: dict[str, Any] = {"proxy": shown, "target": target}
    details: dict[str, Any] = {"proxy": shown, "target": target}
    started = time.monotonic()
    try:
        async with svc.http.get(
            target, timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT), allow_redirects=False
        ) as response:
            status = response.status
    except aiohttp.ClientHttpProxyError as exc:
        details["error"] = f"HTTP {exc.status}"
        return Check(
            "proxy",
            "error",
            Text("proxy.refused", {**params, "error": f"HTTP {exc.status}"}),
            details,
        )
    except (aiohttp.ClientProxyConnectionError, aiohttp_socks.ProxyConnectionError) as exc:
        details["error"] = type(exc).__name__
        return Check(
            "proxy",
            "error",
            Text("proxy.unreachable", {**params, "error": type(exc).__name__}),
            details,
        )
    except aiohttp_socks.ProxyError as exc:
        details["error"] = type(exc).__name__
        return Check(
            "proxy", "error", Text("proxy.refused", {**params, "error": str(exc)[:120]}), details
        )
    except (TimeoutError, aiohttp_socks.ProxyTimeoutError):
        details["error"] = "timeout"
        return Check(
            "proxy", "error", Text("proxy.timeout", {**params, "seconds": PROXY_TIMEOUT}), details
        )
    except aiohttp.ClientError as exc:
        details["error"] = type(exc).__name__
        return Check(
            "proxy", "error", Text("proxy.failed", {**params, "error": type(exc).__name__}), details
        )
    elapsed = round((time.monotonic() - started) * 1000)
    details.update(status=status, elapsed_ms=elapsed)
    params.update(status=status, ms=elapsed)
    if status >= 400:
        return Check("proxy", "warning", Text("proxy.status", params), details)
    return Check("proxy", "ok", Text("proxy.ok", params), details)


def without_credentials(url: str) -> str:
    """`scheme://host:port` of a URL, without the user and password it may carry."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def check_cookies(path: Path | None) -> Check:
    """Is the file there, readable, and a Netscape cookies.txt yt-dlp accepts?

    Mirrors what yt-dlp does with it: the header line is required, and a line that is
    not a comment must have 7 tab-separated fields with a numeric expiry, or yt-dlp
    skips it. Values are never read into the report.
    """
    if path is None:
        return Check("cookies", "off", Text("cookies.off"))
    shown = str(path)
    details: dict[str, Any] = {"path": shown}
    if not path.is_file():
        return Check("cookies", "error", Text("cookies.missing", {"path": shown}), details)
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            text = handle.read(_MAX_COOKIES_BYTES)
    except OSError as exc:
        error = exc.strerror or type(exc).__name__
        return Check(
            "cookies", "error", Text("cookies.unreadable", {"path": shown, "error": error}), details
        )
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] in ("[", "{"):
        return Check("cookies", "error", Text("cookies.json", {"path": shown}), details)
    first_line = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    if not first_line.startswith(_COOKIE_HEADERS):
        header = {"path": shown, "first_line": first_line[:40] or "(empty)"}
        return Check("cookies", "error", Text("cookies.no_header", header), details)

    cookies, youtube, expired = 0, 0, 0
    domains: set[str] = set()
    login: set[str] = set()
    bad: list[tuple[int, Text]] = []
    now = time.time()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.removeprefix(_HTTPONLY)
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            spaces = len(fields) == 1 and len(line.split()) >= 7
            reason = (
                Text("cookies.reason.spaces")
                if spaces
                else Text("cookies.reason.fields", {"fields": len(fields)})
            )
            bad.append((number, reason))
            continue
        expires = fields[4].strip()
        if expires and not re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", expires):
            bad.append((number, Text("cookies.reason.expiry")))
            continue
        cookies += 1
        domain = fields[0].strip().lower().lstrip(".")
        domains.add(domain)
        if fields[5] in LOGIN_COOKIES and is_youtube_domain(domain):
            login.add(fields[5])
        if fields[0].lstrip(".").endswith("youtube.com"):
            youtube += 1
            if expires and 0 < float(expires) < now:
                expired += 1
    details.update(cookies=cookies, youtube_cookies=youtube, youtube_expired=expired)
    details["invalid_lines"] = [number for number, _ in bad[:20]]
    try:
        age = max(0, int(now - path.stat().st_mtime))
    except OSError:  # replaced or removed meanwhile: the content read is what counts
        age = 0
    details.update(
        domains=sorted(domains)[:_MAX_DOMAINS_SHOWN],
        login_cookies=sorted(login),
        signed_in=bool(login),
        age_seconds=age,
    )

    if bad:
        first, reason = bad[0]
        params: dict[str, Any] = {"path": shown, "count": len(bad), "line": first, "reason": reason}
        return Check("cookies", "error", Text("cookies.bad_lines", params), details)
    if cookies == 0:
        return Check("cookies", "error", Text("cookies.empty", {"path": shown}), details)
    if youtube == 0:
        main = Text("cookies.no_youtube", {"path": shown, "count": cookies})
        return Check("cookies", "warning", _cookie_facts(main, details), details)
    if expired == youtube:
        main = Text("cookies.expired", {"path": shown, "count": youtube})
        return Check("cookies", "warning", _cookie_facts(main, details), details)
    main = Text("cookies.ok", {"path": shown, "count": youtube, "expired": expired})
    return Check("cookies", "ok", _cookie_facts(main, details), details)


def _cookie_facts(main: Text, details: dict[str, Any]) -> Text:
    """The check's message followed by the file's age, domains and login state."""
    domains: list[str] = details["domains"]
    shown = ", ".join(domains[:8]) + (", …" if len(domains) > 8 else "")
    login: list[str] = details["login_cookies"]
    signed_in = (
        Text("cookies.login.yes", {"names": ", ".join(login)})
        if login
        else Text("cookies.login.no")
    )
    age = _age(details["age_seconds"])
    return Text("cookies.facts", {"main": main, "age": age, "domains": shown, "login": signed_in})


def _age(seconds: int) -> Text:
    if seconds < 3600:
        return Text("age.minutes", {"count": seconds // 60})
    if seconds < 2 * 86400:
        return Text("age.hours", {"count": seconds // 3600})
    return Text("age.days", {"count": seconds // 86400})


async def check_redis(svc: Core) -> Check:
    status = await svc.cache.status()
    url = svc.settings.redis_url
    if status.get("backend") == "embedded" or not url:
        return Check("redis", "off", Text("redis.embedded"), {"backend": "embedded"})
    parts = urlsplit(url)
    where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
    details = {"backend": "redis", "address": where, "connected": bool(status.get("connected"))}
    if not status.get("connected"):
        error = str(status.get("error") or "no answer")
        details["error"] = error
        return Check(
            "redis", "error", Text("redis.down", {"where": where, "error": error}), details
        )
    return Check("redis", "ok", Text("redis.ok", {"where": where}), details)


def check_extractor_args(args: dict[str, dict[str, list[str]]]) -> Check:
    """The `YTDLP_EXTRACTOR_ARGS` in use (checked at start-up), as yt-dlp gets them."""
    if not args:
        return Check("extractor_args", "off", Text("extractor_args.off"), {"args": {}})
    shown = "; ".join(
        f"{extractor}: " + ", ".join(f"{name}={','.join(values)}" for name, values in named.items())
        for extractor, named in args.items()
    )
    return Check(
        "extractor_args", "ok", Text("extractor_args.set", {"args": shown}), {"args": args}
    )


async def _check_ffmpeg(svc: Core) -> Check:
    ffmpeg = svc.probes.ffmpeg
    if not ffmpeg.found:
        return Check("ffmpeg", "error", Text("ffmpeg.missing"), ffmpeg.to_dict())
    params = {"version": ffmpeg.version, "path": ffmpeg.path}
    return Check("ffmpeg", "ok", Text("ffmpeg.ok", params), ffmpeg.to_dict())


async def check_channels(
    settings: Settings, channels_of: ChannelReport
) -> tuple[Check, list[dict[str, Any]]]:
    """Each channel's last resolution as the live job cached it; never resolves."""
    path = str(settings.channels_file)
    channels = [_channel_row(row) for row in await channels_of()]
    enabled = [c for c in channels if c["enabled"]]
    if not enabled:
        return Check("channels", "off", Text("channels.none", {"path": path})), channels
    up = sum(1 for c in enabled if c["status"] == "live")
    failed = sum(1 for c in enabled if c["status"] in ("error", "blocked"))
    params = {"live": up, "total": len(enabled), "failed": failed}
    status: Status = "warning" if failed else "ok"
    details = {"live": up, "enabled": len(enabled), "failed": failed}
    return Check("channels", status, Text("channels.summary", params), details), channels


def _channel_row(reported: dict[str, Any]) -> dict[str, Any]:
    """Every key present (the page renders with StrictUndefined), times also as text."""
    checked = reported.get("checked_at")
    return {
        "id": str(reported.get("id", "")),
        "name": str(reported.get("name") or ""),
        "enabled": bool(reported.get("enabled", True)),
        "status": str(reported.get("status") or "not_resolved"),
        "checked_at": checked,
        "checked_text": _utc(float(checked)) if checked else "",
        "code": reported.get("code"),
        "expires_at": reported.get("expires_at"),
    }


async def diagnostics_page(request: Request) -> Response:
    svc = core(request)
    report = await diagnose(svc, channel_report(request))
    accept = request.headers.get("accept", "")
    if "application/json" in accept or not wants_html(request):
        return _json(report)
    lang = pick_language(request)
    context = {
        "report": report,
        "rendered": report.to_dict(lang),
        "generated": _utc(report.generated_at),
    }
    return svc.templates.render(
        request, "diagnostics.html", context, headers={"Cache-Control": "no-store"}
    )


async def diagnostics_api(request: Request) -> Response:
    return _json(await diagnose(core(request), channel_report(request)))


def _json(report: Report) -> JSONResponse:
    body = report.to_dict("en")
    json.dumps(body)  # fail here, not half-way through the response, on a bad value
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _utc(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def routes() -> list[BaseRoute]:
    return [
        Route("/diagnostics", diagnostics_page, name="diagnostics"),
        Route("/api/diagnostics", diagnostics_api, name="api_diagnostics"),
    ]
