"""The web UI's two languages: Simplified Chinese and English.

The language comes from `?lang=` (which the switcher links use and which is then
remembered in the `lang` cookie), else the cookie, else `Accept-Language`, else
English. Strings live in `locales/*.toml` (one file per area of the UI), keyed by
a short id; a missing translation falls back to English, a missing key raises.

This module does not format dates or numbers beyond what templates need, and it
does not translate API error messages (JSON clients get English).
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from starlette.requests import Request

LANGUAGES = ("en", "zh")
DEFAULT = "en"
COOKIE = "lang"

LOCALES_DIR = Path(__file__).resolve().parent / "locales"


@functools.cache
def messages() -> dict[str, dict[str, str]]:
    """All catalogues in `locales/*.toml`, merged; a key defined twice is an error."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(LOCALES_DIR.glob("*.toml")):
        with path.open("rb") as handle:
            catalogue = tomllib.load(handle)
        for key, entry in catalogue.items():
            if key in merged:
                raise ValueError(f"{path.name}: message {key!r} is already defined")
            merged[key] = {lang: str(text) for lang, text in entry.items()}
    return merged


def pick_language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return from_accept_language(request.headers.get("accept-language", ""))


def from_accept_language(header: str) -> str:
    """The best of our languages for an Accept-Language header (zh-* → zh)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return sorted(ranked)[0][2] if ranked else DEFAULT


def translate(lang: str, key: str, **values: object) -> str:
    entry = messages()[key]
    text = entry.get(lang) or entry[DEFAULT]
    return text.format(**values) if values else text
