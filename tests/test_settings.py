"""Settings: parsed once, validated with one clear line naming the bad variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps import ROOT, run_app_py
from ytproxy.settings import Settings, SettingsError, parse_dotenv


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.redis_url is None
    assert settings.secret_key_generated is True
    assert len(settings.secret_key) >= 32
    assert settings.chunk_size == 256 * 1024


def test_values_are_converted_once() -> None:
    settings = Settings.from_env(
        {
            "PORT": "9000",
            "CHUNK_SIZE": "128K",
            "DOWNLOAD_PIECE_SIZE": "2M",
            "ALLOW_PRIVATE_NETWORKS": "yes",
            "LOG_LEVEL": "debug",
            "REDIS_URL": "redis://:pw@redis:6379/0",
            "PUBLIC_BASE_URL": "https://tv.example.com/",
            "SECRET_KEY": "0123456789abcdef0123",
            "JS_RUNTIME": "node:/usr/bin/node",
        }
    )
    assert settings.port == 9000
    assert settings.chunk_size == 128 * 1024
    assert settings.download_piece_size == 2 * 1024 * 1024
    assert settings.allow_private_networks is True
    assert settings.log_level == "DEBUG"
    assert settings.public_base_url == "https://tv.example.com"
    assert settings.secret_key_generated is False
    assert (settings.js_runtime, settings.js_runtime_path) == ("node", "/usr/bin/node")


def test_secret_values_stay_out_of_the_repr() -> None:
    settings = Settings.from_env({"SECRET_KEY": "s" * 20, "ACCESS_TOKEN": "letmein123"})
    assert "ssss" not in repr(settings)
    assert "letmein123" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("PORT", "abc", "not an integer"),
        ("PORT", "70000", "between"),
        ("CHUNK_SIZE", "0", "between"),
        ("LOG_LEVEL", "LOUD", "one of"),
        ("LOG_FORMAT", "xml", "one of"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("REDIS_URL", "redis://", "no host"),
        ("REDIS_URL", "redis://host:port/0", "invalid port"),
        ("GLOBAL_PROXY", "ftp://proxy", "socks5://"),
        ("ALLOW_PRIVATE_NETWORKS", "maybe", "true or false"),
        ("MAX_CONCURRENT_YTDLP_REQUESTS", "1", "between 2"),
        ("SECRET_KEY", "short", "16 characters"),
        ("ACCESS_TOKEN", "has space in it", "letters"),
        ("YTDLP_EXTRACTOR_ARGS", "youtube:player_client=web", "not JSON"),
        ("YTDLP_EXTRACTOR_ARGS", '["youtube"]', "JSON object"),
        ("YTDLP_EXTRACTOR_ARGS", '{"youtube": {"player_client": [1]}}', "list of strings"),
        ("LIVE_MAX_HEIGHT", "50", "between"),
        ("ALLOWED_HOSTS", "https://tv.example", "not a host name"),
        ("ALLOWED_HOSTS", "*,a.example", "stand alone"),
        ("TRUSTED_NETWORKS", "192.168.1.0/33", "not a network"),
        ("MAX_DOWNLOADS_PER_CLIENT", "0", "between"),
        ("MAX_HEADER_BYTES", "1K", "between"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=")
    assert words in message
    assert "\n" not in message


def test_dotenv_parsing_handles_comments_quotes_and_export() -> None:
    values = parse_dotenv(
        "# comment\n\nexport PORT=9001\nHOST='0.0.0.0'\nLOG_LEVEL=INFO  # trailing\nEMPTY=\n"
    )
    assert values == {"PORT": "9001", "HOST": "0.0.0.0", "LOG_LEVEL": "INFO", "EMPTY": ""}


def test_dotenv_rejects_a_line_without_equals() -> None:
    with pytest.raises(SettingsError, match="line 2"):
        parse_dotenv("PORT=1\nnonsense\n")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("CHUNK_SIZE", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("REDIS_URL", "nope://x"),
        ("YTDLP_EXTRACTOR_ARGS", "{not json"),
    ],
)
def test_python_app_py_stops_with_one_line_naming_the_variable(
    name: str, value: str, tmp_path: Path
) -> None:
    unset: dict[str, str | None] = {"PORT": None, "REDIS_URL": None, "LOG_LEVEL": None}
    result = run_app_py(tmp_path, **{**unset, name: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert "Traceback" not in result.stderr


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = {
        line.split("=", 1)[0]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    read = set()
    source = (ROOT / "ytproxy" / "settings.py").read_text(encoding="utf-8")
    for chunk in source.split('reader.get("')[1:]:
        read.add(chunk.split('"', 1)[0])
    assert read, "no settings found"
    assert read <= documented, f"not in .env.example: {sorted(read - documented)}"


def test_python_app_py_serves_the_page_and_health_with_no_redis(tmp_path: Path) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(PORT=str(port), CHANNELS_FILE=str(ROOT / "channels.toml"))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.json()["components"]["redis"] == "embedded"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)  # also closes the pipe
    assert "SECRET_KEY is not set" in stderr


def test_python_app_py_stops_with_one_line_on_a_bad_channels_file(tmp_path: Path) -> None:
    channels = tmp_path / "channels.toml"
    channels.write_text('[[channel]]\nid = "bad id!"\nname = "x"\nurl = "https://e.com/live"\n')
    result = run_app_py(tmp_path, REDIS_URL=None, CHANNELS_FILE=str(channels))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "channel #1" in lines[0]
    assert "'id'" in lines[0]


def test_extractor_args_accept_a_string_for_a_one_item_list() -> None:
    settings = Settings.from_env(
        {"YTDLP_EXTRACTOR_ARGS": '{"YouTube": {"player_client": "web_safari", "skip": ["dash"]}}'}
    )
    assert settings.ytdlp_extractor_args == {
        "youtube": {"player_client": ["web_safari"], "skip": ["dash"]}
    }
