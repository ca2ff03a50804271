"""Settings: one frozen, typed object, parsed once from the environment (and `.env`).

Every value is converted and validated here, and a bad one raises `SettingsError`
naming the variable and what is wrong with it, so start-up can stop with one clear
line. Nothing else in the package reads `os.environ` or re-parses a value.

This module does not know what the settings are used for, and it does not write
anything: the generated `SECRET_KEY` is per process and only flagged
(`secret_key_generated`) so that the app can warn about it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
JS_RUNTIMES = ("deno", "node", "bun", "quickjs")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE_SUFFIXES = {"K": 1024, "M": 1024**2, "G": 1024**3}
UPLOADED_COOKIES = "cookies.txt"


class SettingsError(ValueError):
    """A setting has a value that cannot be used. The message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = None
    forwarded_allow_ips: str = "127.0.0.1"
    redis_url: str | None = None
    channels_file: Path = Path("channels.toml")
    cache_ttl: int = 3600
    result_ttl: int = 3600
    global_proxy: str | None = None
    ytdlp_cookies_file: Path | None = None
    # Where the gateway keeps what it writes itself (cookies uploaded from the browser).
    data_dir: Path = Path("data")
    # Cookie domains an upload may hold besides YouTube's and Google's (exact names or
    # their subdomains); cookies for any other domain are dropped from an upload.
    cookies_extra_domains: tuple[str, ...] = ()
    pot_provider_url: str | None = None
    js_runtime: str = "deno"
    js_runtime_path: str | None = None
    ytdlp_timeout: float = 30.0
    ytdlp_max_retries: int = 3
    max_concurrent_streams: int = 100
    max_concurrent_ytdlp_requests: int = 4
    max_concurrent_downloads: int = 10
    max_concurrent_analyses: int = 2
    analyze_queue_size: int = 100
    analyze_timeout: float = 120.0
    analyze_rate_limit: int = 30
    # Entries listed for a playlist or channel, at most.
    playlist_max_entries: int = 1000
    chunk_size: int = 256 * 1024
    download_piece_size: int = 10 * 1024 * 1024
    # A ZIP entry with no single-file format is merged (True) or skipped (False).
    zip_allow_merge: bool = False
    segment_buffer_mb: int = 64
    link_ttl: int = 6 * 3600
    secret_key: str = dataclasses.field(default="", repr=False)
    secret_key_generated: bool = False
    access_token: str | None = dataclasses.field(default=None, repr=False)
    allow_private_networks: bool = False
    # Private networks the gateway may fetch from all the same (a LAN media server).
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Host names answered (Host header); None = loopback names plus PUBLIC_BASE_URL's
    # host. ("*",) answers any host, which only makes sense behind ACCESS_TOKEN.
    allowed_hosts: tuple[str, ...] | None = None
    max_downloads_per_client: int = 3
    download_idle_timeout: float = 60.0
    max_header_bytes: int = 32 * 1024
    cache_max_bytes: int = 128 * 1024**2
    segment_max_bytes: int = 32 * 1024**2
    # yt-dlp's `extractor_args` (e.g. the YouTube player-client order), merged under
    # the PO-token provider's own entry.
    ytdlp_extractor_args: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)
    # A looping still ("starts at 20:00", "ended") on a channel that is not live.
    live_slate: bool = True
    # Live variants taller than this are never offered nor fetched (None: no cap).
    live_max_height: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from a mapping of environment variables.

        Unset and empty variables take their defaults.
        """
        reader = _Reader(env)
        secret = reader.get("SECRET_KEY", _nonempty_secret, None)
        no_path: str | None = None
        js_runtime, js_path = reader.get("JS_RUNTIME", _js_runtime, ("deno", no_path))
        max_ytdlp = reader.get("MAX_CONCURRENT_YTDLP_REQUESTS", _int_range(2, 64), 4)
        return cls(
            host=reader.get("HOST", _nonempty, "127.0.0.1"),
            port=reader.get("PORT", _int_range(1, 65535), 8000),
            public_base_url=reader.get("PUBLIC_BASE_URL", _base_url, None),
            forwarded_allow_ips=reader.get("FORWARDED_ALLOW_IPS", _nonempty, "127.0.0.1"),
            redis_url=reader.get("REDIS_URL", _redis_url, None),
            channels_file=reader.get("CHANNELS_FILE", Path, Path("channels.toml")),
            cache_ttl=reader.get("CACHE_TTL", _int_range(10, 7 * 86400), 3600),
            result_ttl=reader.get("RESULT_TTL", _int_range(10, 30 * 86400), 3600),
            global_proxy=reader.get("GLOBAL_PROXY", _proxy_url, None),
            ytdlp_cookies_file=reader.get("YTDLP_COOKIES_FILE", Path, None),
            data_dir=reader.get("DATA_DIR", _data_dir, Path("data")),
            cookies_extra_domains=reader.get("COOKIES_EXTRA_DOMAINS", _domain_list, ()),
            pot_provider_url=reader.get("POT_PROVIDER_URL", _http_url, None),
            js_runtime=js_runtime,
            js_runtime_path=js_path,
            ytdlp_timeout=reader.get("YTDLP_TIMEOUT", _float_range(1, 600), 30.0),
            ytdlp_max_retries=reader.get("YTDLP_MAX_RETRIES", _int_range(0, 10), 3),
            max_concurrent_streams=reader.get("MAX_CONCURRENT_STREAMS", _int_range(1, 100000), 100),
            max_concurrent_ytdlp_requests=max_ytdlp,
            max_concurrent_downloads=reader.get(
                "MAX_CONCURRENT_DOWNLOADS", _int_range(1, 10000), 10
            ),
            max_concurrent_analyses=reader.get(
                "MAX_CONCURRENT_ANALYSES", _int_range(1, max_ytdlp - 1), min(2, max_ytdlp - 1)
            ),
            analyze_queue_size=reader.get("ANALYZE_QUEUE_SIZE", _int_range(1, 100000), 100),
            analyze_timeout=reader.get("ANALYZE_TIMEOUT", _float_range(1, 3600), 120.0),
            analyze_rate_limit=reader.get("ANALYZE_RATE_LIMIT", _int_range(0, 100000), 30),
            playlist_max_entries=reader.get("PLAYLIST_MAX_ENTRIES", _int_range(1, 100000), 1000),
            chunk_size=reader.get("CHUNK_SIZE", _size_range(1024, 16 * 1024**2), 256 * 1024),
            download_piece_size=reader.get(
                "DOWNLOAD_PIECE_SIZE", _size_range(64 * 1024, 1024**3), 10 * 1024**2
            ),
            zip_allow_merge=reader.get("ZIP_ALLOW_MERGE", _bool, False),
            segment_buffer_mb=reader.get("SEGMENT_BUFFER_MB", _int_range(1, 16384), 64),
            link_ttl=reader.get("LINK_TTL", _int_range(60, 30 * 86400), 6 * 3600),
            secret_key=secret or secrets.token_urlsafe(32),
            secret_key_generated=secret is None,
            access_token=reader.get("ACCESS_TOKEN", _access_token, None),
            allow_private_networks=reader.get("ALLOW_PRIVATE_NETWORKS", _bool, False),
            trusted_networks=reader.get("TRUSTED_NETWORKS", _networks, ()),
            allowed_hosts=reader.get("ALLOWED_HOSTS", _host_list, None),
            max_downloads_per_client=reader.get(
                "MAX_DOWNLOADS_PER_CLIENT", _int_range(1, 10000), 3
            ),
            download_idle_timeout=reader.get("DOWNLOAD_IDLE_TIMEOUT", _float_range(1, 3600), 60.0),
            max_header_bytes=reader.get(
                "MAX_HEADER_BYTES", _size_range(4 * 1024, 1024**2), 32 * 1024
            ),
            cache_max_bytes=reader.get(
                "CACHE_MAX_BYTES", _size_range(1024**2, 64 * 1024**3), 128 * 1024**2
            ),
            segment_max_bytes=reader.get(
                "SEGMENT_MAX_BYTES", _size_range(64 * 1024, 1024**3), 32 * 1024**2
            ),
            ytdlp_extractor_args=reader.get("YTDLP_EXTRACTOR_ARGS", _extractor_args, {}),
            live_slate=reader.get("LIVE_SLATE", _bool, True),
            live_max_height=reader.get("LIVE_MAX_HEIGHT", _int_range(90, 4320), None),
            log_level=reader.get("LOG_LEVEL", _choice(LOG_LEVELS, upper=True), "INFO"),
            log_format=reader.get("LOG_FORMAT", _choice(LOG_FORMATS), "text"),
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def cookies_target(self) -> Path:
        """Where cookies uploaded from the browser are written (and deleted from):
        `YTDLP_COOKIES_FILE`, else `DATA_DIR/cookies.txt`."""
        return self.ytdlp_cookies_file or self.data_dir / UPLOADED_COOKIES

    def cookies_file(self) -> Path | None:
        """The cookies file yt-dlp is given, the one place that decides it:
        `YTDLP_COOKIES_FILE` (even when missing, so that the mistake is reported), else
        an uploaded `DATA_DIR/cookies.txt` if there is one, else none."""
        if self.ytdlp_cookies_file is not None:
            return self.ytdlp_cookies_file
        uploaded = self.data_dir / UPLOADED_COOKIES
        return uploaded if uploaded.is_file() else None


def load_environment(dotenv: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment over the variables of a `.env` file, if there is one."""
    merged: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        merged.update(parse_dotenv(dotenv.read_text(encoding="utf-8")))
    merged.update(os.environ)
    return merged


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `KEY=value` lines; `#` comments, `export` prefixes and quotes are allowed."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise SettingsError(f".env line {number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, convert: Callable[[str], T], default: T) -> T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return convert(raw.strip())
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{name}={raw!r}: {exc}") from None


def _nonempty(value: str) -> str:
    return value


def _nonempty_secret(value: str) -> str:
    if len(value) < 16:
        raise ValueError("must be at least 16 characters (use `openssl rand -hex 32`)")
    return value


def _access_token(value: str) -> str:
    if len(value) < 8:
        raise ValueError("must be at least 8 characters")
    if not all(c.isalnum() or c in "-_.~" for c in value):
        raise ValueError("may only contain letters, digits and -_.~ (it travels in URLs)")
    return value


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("is not an integer") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return convert


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def convert(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError("is not a number") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return number

    return convert


def _size_range(low: int, high: int) -> Callable[[str], int]:
    """A byte size: an integer, optionally with a K, M or G suffix (binary units)."""

    def convert(value: str) -> int:
        text = value.upper().removesuffix("B").removesuffix("I")
        factor = _SIZE_SUFFIXES.get(text[-1:], 1)
        digits = text[:-1] if factor > 1 else text
        try:
            number = int(digits) * factor
        except ValueError:
            raise ValueError("is not a size (e.g. 65536, 64K, 10M)") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high} bytes")
        return number

    return convert


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def _choice(options: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def convert(value: str) -> str:
        normalised = value.upper() if upper else value.lower()
        if normalised not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return normalised

    return convert


def _url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("has no host")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value


def _base_url(value: str) -> str:
    return _url(value, ("http", "https")).rstrip("/")


def _http_url(value: str) -> str:
    return _url(value, ("http", "https")).rstrip("/")


def _redis_url(value: str) -> str:
    return _url(value, ("redis", "rediss", "unix"))


def _proxy_url(value: str) -> str:
    return _url(value, ("http", "https", "socks5", "socks5h", "socks4"))


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDR networks (a bare address is a /32 or /128)."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network (e.g. 192.168.1.0/24)") from None
    return tuple(networks)


def _host_list(value: str) -> tuple[str, ...]:
    """Comma-separated host names (no ports), lower-cased; `*` alone means any host."""
    hosts = tuple(h.strip().lower().rstrip(".") for h in value.split(",") if h.strip())
    if not hosts:
        raise ValueError("lists no host")
    if "*" in hosts and len(hosts) > 1:
        raise ValueError("`*` must stand alone")
    for host in hosts:
        if host == "*":
            continue
        if "/" in host or " " in host or (":" in host and not host.startswith("[")):
            raise ValueError(f"{host!r} is not a host name (no scheme, path or port)")
    return hosts


def _data_dir(value: str) -> Path:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError("exists and is not a directory")
    return path


def _domain_list(value: str) -> tuple[str, ...]:
    """Comma-separated cookie domains (`example.com`, `127.0.0.1`), lower-cased."""
    domains = tuple(d.strip().lower().strip(".") for d in value.split(",") if d.strip())
    for domain in domains:
        if not all(c.isalnum() or c in "-." for c in domain):
            raise ValueError(f"{domain!r} is not a domain name (no scheme, port, path or *)")
    return domains


def _extractor_args(value: str) -> dict[str, dict[str, list[str]]]:
    """yt-dlp `extractor_args` as JSON: {"extractor": {"arg": ["value", ...]}}.

    A plain string value is taken as a one-item list, as yt-dlp's own
    `--extractor-args youtube:player_client=web_safari` would give it."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f'is not JSON ({exc.msg}); e.g. {{"youtube": {{"player_client": ["web_safari"]}}}}'
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object of extractors")
    result: dict[str, dict[str, list[str]]] = {}
    for extractor, args in parsed.items():
        if not isinstance(args, dict):
            raise ValueError(f"{extractor!r} must map argument names to lists of strings")
        converted: dict[str, list[str]] = {}
        for name, values in args.items():
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{extractor}.{name} must be a string or a list of strings")
            converted[str(name)] = list(values)
        result[str(extractor).lower()] = converted
    return result


def _js_runtime(value: str) -> tuple[str, str | None]:
    name, _, path = value.partition(":")
    if name.lower() not in JS_RUNTIMES:
        raise ValueError(f"must be one of {', '.join(JS_RUNTIMES)}, optionally NAME:/path")
    return name.lower(), path or None
