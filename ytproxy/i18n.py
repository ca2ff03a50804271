"""The web UI's two languages: Simplified Chinese and English.

The language comes from `?lang=` (which the switcher links use and which is then
remembered in the `lang` cookie), else the cookie, else `Accept-Language`, else
English. Strings live in `MESSAGES`, keyed by a short English id; a missing
translation falls back to English, and a missing key is an error in tests.

This module does not format dates or numbers beyond what templates need, and it
does not translate API error messages (JSON clients get English).
"""

from __future__ import annotations

from starlette.requests import Request

LANGUAGES = ("en", "zh")
DEFAULT = "en"
COOKIE = "lang"

MESSAGES: dict[str, dict[str, str]] = {
    "app.tagline": {
        "en": "Your own YouTube gateway",
        "zh": "你自己的 YouTube 网关",
    },
    "nav.analyse": {"en": "Analyse", "zh": "解析"},
    "nav.channels": {"en": "Live channels", "zh": "直播频道"},
    "nav.diagnostics": {"en": "Diagnostics", "zh": "诊断"},
    "nav.language": {"en": "Language", "zh": "语言"},
    "nav.logout": {"en": "Log out", "zh": "退出"},
    "analyse.title": {"en": "Analyse a video", "zh": "解析视频"},
    "analyse.intro": {
        "en": "Paste a video link to see every format it comes in, then download the one you want.",
        "zh": "粘贴视频链接，查看所有可用格式，然后下载你想要的那一个。",
    },
    "analyse.url_label": {"en": "Video URL", "zh": "视频链接"},
    "analyse.url_placeholder": {
        "en": "https://www.youtube.com/watch?v=…",
        "zh": "https://www.youtube.com/watch?v=…",
    },
    "analyse.submit": {"en": "Analyse", "zh": "解析"},
    "error.title": {"en": "Something went wrong", "zh": "出错了"},
    "error.back": {"en": "Back to the start page", "zh": "返回首页"},
    "login.title": {"en": "Sign in", "zh": "登录"},
    "login.intro": {
        "en": "This gateway is private. Enter the access token you were given.",
        "zh": "这是私人网关。请输入你获得的访问令牌。",
    },
    "login.token": {"en": "Access token", "zh": "访问令牌"},
    "login.submit": {"en": "Sign in", "zh": "登录"},
    "login.wrong": {"en": "That token is not right.", "zh": "令牌不正确。"},
}


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
    entry = MESSAGES[key]
    text = entry.get(lang) or entry[DEFAULT]
    return text.format(**values) if values else text
