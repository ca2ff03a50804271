"""One table: ytproxy's relays against same-run baselines (`python -m bench.compare`).

On this machine, in this run, loopback only:

- **nginx static**: nginx (one worker, `sendfile on`) serving the bench files from a
  temporary directory with a temporary configuration. It is also the origin every relay
  below reads from, so its row is the "direct origin" too. Skipped when nginx is
  missing (`make bench` installs it).
- **bare aiohttp relay**: `bench/bare_relay.py`, 40 lines, `iter_chunked(256 KiB)`.
- **ytproxy download relay**: `/v1/download/<token>` links of the gateway (`app.py`
  in its own process, default `CHUNK_SIZE` and `DOWNLOAD_PIECE_SIZE`), the video found
  by its real extraction (nginx answers `/watch/<name>` with a redirect to the file).

Figures: bulk MB/s of a `curl` download (`BENCH_BULK_MIB`, default 1024 MiB); a
100 KiB file's req/s and p99 with `wrk -t2 -c100`; each the median of `BENCH_REPEAT`
runs (default 5; the p99 is that of the run with the median rate), the paths taking
turns, because one run on a shared machine can be off by half (with three, two
runs of one build gave 0.87x and 0.78x the bare relay's rate); with the small file,
the relay process's CPU time per request (user + system over the wrk run, divided by
the requests served), which the machine's other load moves far less than rates: the
relays are CPU-bound, so the rate is about one over it, and its page faults per
request (`minflt`: pages the kernel had to map and zero, which an allocator that gives
memory back and takes it again under load pays for on every request, and which no
neighbour on the machine moves); for the live relay,
cached-segment req/s with `wrk -t2 -c100` on one segment URL and segment TTFB p50/p99
at 500 viewers (`bench.live_fanout`'s players); the gateway's peak RSS relaying
100 MiB and 4 GiB (`bench.download`'s synthetic upstream). Ratios are ytproxy over the
baseline named.
Client, servers and origin share the machine's cores: compare rows, not hosts.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.download import PeakRss, _free_port, fetch, pattern, synthetic_upstream
from bench.live_fanout import SECRET, gateway, percentile, run_round
from tests.origin import Origin, generate_media
from ytproxy.download.links import download_path
from ytproxy.signing import Signer

MIB = 1024 * 1024
BULK_MIB = int(os.environ.get("BENCH_BULK_MIB", "1024"))
SMALL = 100 * 1024
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
VIEWERS = 500

_NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ video/mp4 mp4; }}
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location /watch/ {{ rewrite ^/watch/(.*)$ /files/$1.mp4 redirect; }}
    }}
}}
"""


def _write_files(www: Path) -> None:
    files = www / "files"
    files.mkdir(parents=True)
    block = pattern()
    (files / "small.mp4").write_bytes(block[:SMALL])
    with (files / "bulk.mp4").open("wb") as out:
        for _ in range(BULK_MIB):
            out.write(block)


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited") from None
            time.sleep(0.1)
    raise RuntimeError(f"{process.args!r} did not start")


def curl_mbps(url: str) -> float:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
        check=True, capture_output=True, text=True, timeout=600,
    ).stdout.split()  # fmt: skip
    size, seconds = int(out[0]), float(out[1])
    if size < BULK_MIB * MIB:
        raise RuntimeError(f"{url}: {size} bytes of {BULK_MIB * MIB}")
    return size / 1e6 / seconds


def wrk(
    url: str, seconds: int = WRK_SECONDS, pid: int | None = None
) -> tuple[float, float, str, float, float]:
    """(req/s, p99 ms, a note on errors, CPU µs and page faults per request of process
    `pid` or NaN) of `wrk -t2 -c100` on `url`."""
    before = cpu_seconds(pid) if pid is not None else 0.0
    faults_before = minor_faults(pid) if pid is not None else 0
    out = subprocess.run(
        ["wrk", "-t2", "-c100", f"-d{seconds}s", "--latency", url],
        check=True, capture_output=True, text=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = re.findall(r"(Non-2xx or 3xx responses: \d+|Socket errors: [^\n]+)", out)
    cpu = faults = float("nan")
    if pid is not None:
        served = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        cpu = (cpu_seconds(pid) - before) / served * 1e6
        faults = (minor_faults(pid) - faults_before) / served
    return rate, p99_ms, "; ".join(errors), cpu, faults


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Page faults of process `pid` so far that needed no disk (pages the kernel had to
    map and zero: memory given back and taken again shows here)."""
    return int(_stat(pid)[7])


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields from the third (state) on."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.bulk = float("nan")
        self.small = float("nan")
        self.p99 = float("nan")
        self.note = ""
        self.cpu = float("nan")  # µs per 100 KiB request
        self.faults = float("nan")  # page faults per 100 KiB request


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ytproxy-compare-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's worker runs as nobody
        (root / "tmp").mkdir()
        _write_files(root / "www")
        media_dir = root / "media"
        media_dir.mkdir()
        with Origin(generate_media(media_dir)) as origin:
            _run(root, origin)


def _run(root: Path, origin: Origin) -> None:
    processes: list[subprocess.Popen[bytes]] = []
    with synthetic_upstream() as synthetic:
        try:
            nginx_port = _free_port()
            nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
            if nginx is None:
                print("nginx is missing: no baseline (make bench installs it)")
                return
            conf = root / "nginx.conf"
            conf.write_text(_NGINX_CONF.format(dir=root, port=nginx_port))
            processes.append(subprocess.Popen([nginx, "-c", str(conf), "-p", str(root)]))
            _wait_port(nginx_port, processes[-1])
            origin_base = f"http://127.0.0.1:{nginx_port}"
            bare_port = _free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.bare_relay", str(bare_port), origin_base]
                )
            )
            _wait_port(bare_port, processes[-1])
            env = {"MAX_CONCURRENT_DOWNLOADS": "1000", "MAX_DOWNLOADS_PER_CLIENT": "1000",
                   "CACHE_TTL": "3600"}  # fmt: skip
            channels = {"seg": origin.channel_url("seg"), "fan": origin.channel_url("fan")}
            with gateway(channels, **env) as (base, pid):
                bare = (f"http://127.0.0.1:{bare_port}", processes[-1].pid)
                _measure(base, pid, origin_base, bare, synthetic)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=15)


def _measure(
    base: str, pid: int, origin_base: str, bare_relay: tuple[str, int], synthetic: str
) -> None:
    bare, bare_pid = bare_relay
    signer = Signer(SECRET)

    def link(source: str, name: str) -> str:
        path = download_path(signer, 3600, source_url=f"{source}/watch/{name}",
                             format_ids=["mp4"], title=name, ext="mp4")  # fmt: skip
        return base + path

    for url in (link(origin_base, "small"), link(origin_base, "bulk")):
        httpx.head(url, timeout=60).raise_for_status()  # extraction, outside the timings
    rows = [Row("nginx static (the origin)"), Row("bare aiohttp relay"),
            Row("ytproxy download relay")]  # fmt: skip
    bases = [f"{origin_base}/files/{{}}.mp4", f"{bare}/files/{{}}.mp4", ""]
    urls = [
        (pattern_url.format("bulk"), pattern_url.format("small"))
        if pattern_url
        else (link(origin_base, "bulk"), link(origin_base, "small"))
        for pattern_url in bases
    ]
    for _, small_url in urls:
        wrk(small_url, 2)  # warm-up: connections, caches
    bulk: list[list[float]] = [[] for _ in rows]
    small: list[list[tuple[float, float, str, float, float]]] = [[] for _ in rows]
    pids = [None, bare_pid, pid]  # nginx's work is in its worker: not measured
    for _ in range(REPEAT):  # the paths take turns, so a noisy minute hits them all
        for n, (bulk_url, small_url) in enumerate(urls):
            bulk[n].append(curl_mbps(bulk_url))
            small[n].append(wrk(small_url, pid=pids[n]))
    for n, row in enumerate(rows):
        row.bulk = statistics.median(bulk[n])
        row.small, row.p99, row.note, _, _ = sorted(small[n])[len(small[n]) // 2]
        if pids[n] is not None:
            row.cpu = statistics.median(run[3] for run in small[n])
            row.faults = statistics.median(run[4] for run in small[n])

    live = _live(base)
    viewers = asyncio.run(run_round(base, "fan", VIEWERS))[1]
    rss = asyncio.run(_rss(base, pid, synthetic, signer))
    _print(rows, live, viewers, rss)


def _live(base: str) -> tuple[float, float, str]:
    with httpx.Client(timeout=30) as client:
        master = client.get(f"{base}/live/seg.m3u8").text
        variant = next(line for line in master.splitlines() if line and not line.startswith("#"))
        media = client.get(variant).text
        segment = [line for line in media.splitlines() if line and not line.startswith("#")][-1]
        client.get(segment).raise_for_status()  # in the segment buffer from now on
    wrk(segment, 2)
    return wrk(segment)[:3]


async def _rss(base: str, pid: int, upstream: str, signer: Signer) -> list[tuple[int, float]]:
    import aiohttp

    out = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, size in (("100m", 100 * MIB), ("4g", 4096 * MIB)):
            path = download_path(signer, 3600, source_url=f"{upstream}/watch/{name}",
                                 format_ids=["mp4"], title=name, ext="mp4")  # fmt: skip
            with PeakRss(pid) as sampler:
                got = await fetch(session, base + path)
            if got != size:
                raise RuntimeError(f"{name}: {got} bytes")
            out.append((size // MIB, sampler.peak))
    return out


def _print(
    rows: list[Row],
    live: tuple[float, float, str],
    ttfb: list[float],
    rss: list[tuple[int, float]],
) -> None:
    nginx, bare, ours = rows
    print(f"\nloopback, one run, medians of {REPEAT}; bulk = a {BULK_MIB} MiB download "
          f"with curl; small = 100 KiB with wrk -t2 -c100 -d{WRK_SECONDS}s\n")  # fmt: skip
    print("| path | bulk MB/s | 100 KiB req/s | 100 KiB p99 | 100 KiB CPU per request "
          "| page faults per request |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        measured = row.cpu == row.cpu  # NaN: not measured
        cpu = f"{row.cpu:,.0f} µs" if measured else ""
        faults = f"{row.faults:.1f}" if measured else ""
        print(f"| {row.name} | {row.bulk:,.0f} | {row.small:,.0f} | {row.p99:.1f} ms | {cpu} "
              f"| {faults} |")  # fmt: skip
    print(f"| **ytproxy / nginx static** | **{ours.bulk / nginx.bulk:.2f}×** | "
          f"{ours.small / nginx.small:.2f}× | {ours.p99 / nginx.p99:.1f}× | | |")  # fmt: skip
    print(f"| **ytproxy / bare relay** | {ours.bulk / bare.bulk:.2f}× | "
          f"**{ours.small / bare.small:.2f}×** | **{ours.p99 / bare.p99:.2f}×** | "
          f"{ours.cpu / bare.cpu:.2f}× | |")  # fmt: skip
    rate, p99, note = live
    print(f"| live: cached segment, wrk -c100 | | {rate:,.0f} | {p99:.1f} ms | | |")
    p50v, p99v = percentile(ttfb, 0.5) * 1000, percentile(ttfb, 0.99) * 1000
    print(f"| live: segment TTFB at {VIEWERS} viewers (p50 / p99) | | | "
          f"{p50v:.1f} / {p99v:.1f} ms | | |")  # fmt: skip
    sizes = " → ".join(f"{mib:,} MiB: {peak:.0f} MiB" for mib, peak in rss)
    print(f"| gateway peak RSS relaying {sizes} | | | | | |")
    for row in rows:
        if row.note:
            print(f"note: {row.name}: {row.note}")
    if note:
        print(f"note: live segment: {note}")


if __name__ == "__main__":
    main()
