"""The deployment files agree with the code: monitoring/, docker-compose.yml, the image.

- `promtool check config`, `promtool check rules` and `promtool test rules` pass on
  monitoring/ (promtool comes with Debian's `prometheus` package, which `make test`
  installs);
- every metric the alert rules and the Grafana dashboard query is one that
  `ytproxy.metrics.Metrics` registers, with the labels it has;
- every service, file and variable the compose file, nginx and Prometheus refer to
  exists (services defined, files in the repository, variables in `.env.example`);
- the Dockerfile copies only files that exist and that `.dockerignore` lets through.

There is no Docker engine here: the image itself is not built by the suite.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ytproxy.metrics import LoopCounter, LoopHistogram, Metrics

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "ytproxy.json"

# Series Prometheus makes itself, not the app.
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
# Labels every scraped series carries, and the bucket label of histograms.
TARGET_LABELS = {"job", "instance"}

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(?!\w)")


def registered_metrics() -> dict[str, set[str]]:
    """Every sample name a fresh registry can expose, with the labels it carries."""
    names: dict[str, set[str]] = {}
    for collector in vars(Metrics()).values():
        if not hasattr(collector, "describe"):
            continue
        # prometheus_client keeps the label names only privately; a fresh registry has
        # no samples to read them from.
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe():
            suffixes = {
                "counter": ("_total", "_created"),
                "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"),
                "info": ("_info",),
            }[family.type]
            for suffix in suffixes:
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def metric_references(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metric names in a PromQL expression with the labels it matches on each, and
    the labels it groups by."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\$\w+", "", text)  # Grafana variables such as $__rate_interval
    text = re.sub(r"\[[^\]]*\]", "", text)
    grouped = {
        label.strip() for labels in _GROUPING.findall(text) for label in labels.split(",")
    } - {""}
    text = _GROUPING.sub(" ", text)
    selected: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        selected.setdefault(name, set()).update(_MATCHER.findall(matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and name.lower() not in _KEYWORDS:
            selected.setdefault(name, set())
    return selected, grouped


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']} / {target['refId']}"] = target["expr"]
    return found


def check_expressions(expressions: dict[str, str]) -> list[str]:
    known = registered_metrics() | PROMETHEUS_SERIES
    problems: list[str] = []
    for where, expr in expressions.items():
        selected, grouped = metric_references(expr)
        if not selected:
            problems.append(f"{where}: names no metric")
        available = set(TARGET_LABELS)
        for name, labels in selected.items():
            if name not in known:
                problems.append(f"{where}: {name} is not a metric ytproxy registers")
                continue
            available |= known[name]
            for label in labels - known[name] - TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
        for label in grouped - available:
            problems.append(f"{where}: groups by {label!r}, which none of its metrics has")
    return problems


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool not found: apt-get install prometheus (make test does it)")
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def load_compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(
        (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    )
    return compose


def test_registered_metrics_include_counter_and_histogram_suffixes() -> None:
    names = registered_metrics()
    assert "ytdlp_requests_total" in names
    assert names["upstream_requests_total"] == {"kind", "status"}
    assert names["ytdlp_request_duration_seconds_bucket"] >= {"le"}
    assert {"active_streams", "max_concurrent_streams", "redis_up"} <= names.keys()


def test_loop_metrics_expose_what_prometheus_clients_own_would() -> None:
    # The per-request counters and histogram are plain numbers (ytproxy.metrics); what a
    # scrape reads must not change, bucket bounds and values on a bound included.
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    buckets = (0.005, 0.01, 0.25, 1, 10)
    metrics = [
        (LoopCounter("hits", "Hits", ["kind"], registry=ours),
         Counter("hits", "Hits", ["kind"], registry=theirs)),
        (LoopHistogram("wait_seconds", "Wait", ["route"], buckets=buckets, registry=ours),
         Histogram("wait_seconds", "Wait", ["route"], buckets=buckets, registry=theirs)),
    ]  # fmt: skip
    for loop, own in metrics:
        for label, value in (("a", 0.005), ("a", 0.3), ("b", 12.0), ("a", 1.0), ("b", 0.0)):
            for metric in (loop, own):
                child = metric.labels(label)
                if hasattr(child, "inc"):
                    child.inc(value)
                else:
                    child.observe(value)

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return sorted(line for line in text.splitlines() if "_created" not in line)

    assert lines(ours) == lines(theirs)
    with pytest.raises(ValueError):
        metrics[0][0].labels("a", "b")


def test_metric_references_ignore_functions_keywords_and_grouping() -> None:
    selected, grouped = metric_references(
        'sum by (cache) (rate(cache_hits_total{cache="live"}[5m])) / '
        "ignoring(x) histogram_quantile(0.9, rate(foo_bucket[$__rate_interval])) and up"
    )
    assert selected == {"cache_hits_total": {"cache"}, "foo_bucket": set(), "up": set()}
    assert grouped == {"cache", "x"}


def test_promtool_check_config_passes(tmp_path: Path) -> None:
    # The container's entrypoint writes `scrape_token` beside the config before
    # Prometheus starts (see docker-compose.yml); promtool insists that it exists.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    (tmp_path / "scrape_token").write_text("", encoding="utf-8")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", "alerts.yml", cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts.test.yml", cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_cover_what_the_operator_needs_to_know() -> None:
    expressions = alert_expressions()
    wanted = {
        "YtproxyDown": "up",
        "ExtractionErrorRateHigh": "ytdlp_requests_total",
        "RedisUnreachable": "redis_up",
        "StreamsNearLimit": "max_concurrent_streams",
        "CacheHitRateLow": "cache_misses_total",
        "ChannelOffline": "live_channel_up",
        "Upstream403Rising": 'status="403"',
    }
    for alert, needle in wanted.items():
        assert needle in expressions[alert], alert


def test_alert_rules_use_only_registered_metrics_and_labels() -> None:
    assert check_expressions(alert_expressions()) == []


def test_dashboard_uses_only_registered_metrics_and_labels() -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    assert check_expressions(expressions) == []


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    text = json.dumps(dashboard)
    for metric in (
        "active_streams",
        "ytdlp_requests_total",
        "ytdlp_request_errors_total",
        "ytdlp_request_duration_seconds_bucket",
        "cache_hits_total",
        "relayed_bytes_total",
        "analysis_tasks_active",
    ):
        assert metric in text, metric
    datasource = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text("utf-8")
    )["datasources"][0]
    used = {
        json.dumps(p["datasource"], sort_keys=True)
        for p in dashboard["panels"]
        if "datasource" in p
    }
    assert used == {json.dumps({"type": "prometheus", "uid": datasource["uid"]}, sort_keys=True)}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_compose_refers_only_to_services_that_exist() -> None:
    compose = load_compose()
    services = set(compose["services"])
    assert {"app", "app-2", "redis", "bgutil", "prometheus", "grafana", "nginx"} <= services
    for name, service in compose["services"].items():
        depends = service.get("depends_on", [])
        assert set(depends) <= services, name

    app = compose["services"]["app"]
    hosts = {
        re.search(r"@([\w-]+):", app["environment"]["REDIS_URL"]).group(1),
        re.search(r"//([\w-]+):", app["environment"]["POT_PROVIDER_URL"]).group(1),
    }
    nginx = (ROOT / "deploy/nginx.conf").read_text(encoding="utf-8")
    hosts |= set(re.findall(r"^\s*server\s+([\w-]+):\d+", nginx, re.M))
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text(encoding="utf-8"))
    for job in prometheus["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            hosts |= set(sd["names"])
    datasource = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text("utf-8")
    )
    hosts |= {re.search(r"//([\w-]+):", d["url"]).group(1) for d in datasource["datasources"]}
    assert hosts == {"redis", "bgutil", "app", "app-2", "prometheus"}
    assert hosts <= services


def test_compose_scale_profile_runs_two_replicas_on_the_shared_redis() -> None:
    services = load_compose()["services"]
    assert "profiles" not in services["app"]
    assert services["app-2"]["profiles"] == ["scale"] == services["nginx"]["profiles"]
    assert services["app-2"]["environment"] == services["app"]["environment"]
    assert services["app"]["env_file"] == ".env"
    redis = services["redis"]
    assert "--requirepass" in redis["command"] and "--appendonly" in redis["command"]
    assert "healthcheck" in redis
    assert services["app"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["bgutil"]["image"].startswith("brainicism/bgutil-ytdlp-pot-provider:")


def test_compose_mounts_files_that_exist_and_scrape_token_matches_prometheus() -> None:
    compose = load_compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and source != "./cookies":  # made by the operator
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text(encoding="utf-8"))
    token_file = prometheus["scrape_configs"][0]["authorization"]["credentials_file"]
    entrypoint = " ".join(compose["services"]["prometheus"]["entrypoint"])
    assert f"> /etc/prometheus/{token_file}" in entrypoint


def test_compose_variables_are_documented_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    documented = set(
        re.findall(r"^(\w+)=", (ROOT / ".env.example").read_text(encoding="utf-8"), re.M)
    )
    assert used - documented == set()


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    sources = [
        source
        for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M)
        for source in line.split()[:-1]
    ]
    assert {"pyproject.toml", "app.py", "ytproxy", "templates", "static"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*/health", dockerfile, re.M | re.S)
    assert 'CMD ["python", "app.py"]' in dockerfile
    assert "[test" not in dockerfile and "'.[" not in dockerfile
