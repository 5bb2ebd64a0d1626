"""The Prometheus, Alertmanager and Grafana configuration under docker/, checked with promtool and against the
platform's own metric and rule names, and the compose services that run them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from apps.ops.alerts import RULES
from tests.ops.compose_file import REPO, compose_services

DOCKER = REPO / "docker"
ALERTS = DOCKER / "prometheus" / "alerts.yml"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
ALERTS_TEST = DOCKER / "prometheus" / "alerts_test.yml"
ALERTMANAGER = DOCKER / "alertmanager" / "alertmanager.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "tradingplatform.json"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DOCKER / "grafana" / "provisioning" / "dashboards" / "tradingplatform.yml"
CONTRACT_RULES = {
    "RedisMemoryHigh",
    "PostgresReplicationLag",
    "IBDisconnected",
    "FeedStale",
    "QueueBacklog",
    "DeadLettersGrowing",
    "KillSwitchTripped",
    "WorkerStalled",
}
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _known_metrics() -> set[str]:
    """Every metric name apps/ops/metrics.py defines (counters, histograms and the scrape-time gauges)."""
    names = set(re.findall(r'"(tp_[a-z0-9_]+)"', (REPO / "apps" / "ops" / "metrics.py").read_text()))
    assert len(names) >= 19, "apps/ops/metrics.py no longer names the contract's metrics"
    return names


def _metrics_in(expr: str) -> set[str]:
    """The metric names an expression reads, a histogram's series (``_bucket``...) counted as the histogram."""
    return {HISTOGRAM_SERIES.sub("", name) for name in re.findall(r"\btp_[a-z0-9_]+", expr)}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    result = _promtool("check", "rules", str(ALERTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


@needs_promtool
def test_promtool_accepts_the_prometheus_configuration_and_its_rule_file(tmp_path):
    # rule_files resolve relative to the configuration: check a copy beside a copy of the rules.
    shutil.copy(PROMETHEUS, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")

    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_feed_stale_and_kill_switch_fire_on_synthetic_series_and_stay_quiet_otherwise():
    result = _promtool("test", "rules", str(ALERTS_TEST))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_are_the_contracts_and_the_evaluators_with_severity_and_runbook():
    rules = {rule["alert"]: rule for rule in _rules()}
    runbook = (REPO / "docs" / "alerting.md").read_text()

    assert set(rules) == CONTRACT_RULES == set(RULES)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] == RULES[name], name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["annotations"]["runbook_url"] == f"docs/alerting.md#{name.lower()}", name
        assert re.search(rf"^## {name}$", runbook, re.MULTILINE), f"docs/alerting.md has no section for {name}"


def test_every_metric_the_rules_read_is_defined_in_the_metrics_module():
    known = _known_metrics()

    for rule in _rules():
        used = _metrics_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= known, f"{rule['alert']} reads unknown metrics {used - known}"


def test_the_grafana_dashboard_parses_and_reads_only_known_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs()
    known = _known_metrics()
    datasource_uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]

    assert dashboard["uid"] == "tradingplatform" and exprs
    for expr in exprs:
        assert _metrics_in(expr), expr
        assert _metrics_in(expr) <= known, f"{expr} reads unknown metrics {_metrics_in(expr) - known}"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
    shown = set().union(*(_metrics_in(expr) for expr in exprs))
    # What the dashboard is for: ingestion per channel, feed age, queues, stage latency, orders, delivery lag, AI
    # tokens, Redis memory, the kill switch and the alerts.
    assert {
        "tp_frames_in_total",
        "tp_feed_last_frame_age_seconds",
        "tp_queue_depth",
        "tp_stage_latency_seconds",
        "tp_order_outcomes_total",
        "tp_delivery_lag_seconds",
        "tp_ai_tokens_total",
        "tp_redis_memory_used_bytes",
        "tp_kill_switch_engaged",
        "tp_alerts_open",
    } <= shown


@needs_promtool
def test_every_dashboard_expression_is_valid_promql(tmp_path):
    # promtool has no expression checker of its own: each query becomes a recording rule, which it parses.
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(_dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = _promtool("check", "rules", str(path))

    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_the_dashboard_directory_compose_mounts():
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    grafana = compose_services()["grafana"]

    assert [p["options"]["path"] for p in providers] == ["/etc/grafana/dashboards"]
    assert "./docker/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana["volumes"]
    assert "./docker/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_alertmanager_sends_every_alert_resolved_too_to_the_platform_webhook_with_the_token_file():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}

    def routes(route):
        yield route
        for child in route.get("routes", []):
            yield from routes(child)

    assert {route["receiver"] for route in routes(config["route"])} == {"platform"} == set(receivers)
    [webhook] = receivers["platform"]["webhook_configs"]
    assert webhook["url"] == "http://web:8000/ops/alertmanager/" and webhook["send_resolved"] is True
    authorization = webhook["http_config"]["authorization"]
    assert authorization["type"] == "Bearer"
    # compose writes ALERTMANAGER_WEBHOOK_TOKEN to that file before starting Alertmanager.
    assert authorization["credentials_file"] in compose_services()["alertmanager"]["command"][0]
    feed_route = next(r for r in routes(config["route"]) if r.get("matchers") == ['alertname = "FeedStale"'])
    [market_hours] = [t for t in config["time_intervals"] if t["name"] in feed_route["active_time_intervals"]]
    assert market_hours["time_intervals"][0]["location"] == "America/New_York"


def test_prometheus_scrapes_the_web_process_and_every_worker_and_listener_service_on_its_metrics_port():
    config = yaml.safe_load(PROMETHEUS.read_text())
    services = compose_services()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    assert jobs["web"]["static_configs"][0]["targets"] == ["web:8000"]
    scraped = {name for job in jobs.values() for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    assert scraped == {"worker", "execution-worker", "commentary-worker", "uw-listener", "ib-listener", "telegram-bot"}
    for name in scraped:
        assert str(services[name]["environment"]["METRICS_PORT"]) == "9100", name
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert config["rule_files"] == ["alerts.yml"]


def test_the_monitoring_services_are_pinned_read_only_loopback_and_grafana_needs_a_password():
    services = compose_services()

    for name, config_mount in (
        ("prometheus", "./docker/prometheus:/etc/prometheus:ro"),
        ("alertmanager", "./docker/alertmanager:/etc/alertmanager:ro"),
        ("grafana", "./docker/grafana/provisioning:/etc/grafana/provisioning:ro"),
    ):
        service = services[name]
        image, _, tag = service["image"].partition(":")
        assert image in ("prom/prometheus", "prom/alertmanager", "grafana/grafana") and re.match(
            r"v?\d+\.\d+\.\d+$", tag
        )
        assert config_mount in service["volumes"], name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        assert service["restart"] == "unless-stopped" and service["healthcheck"]["test"], name
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD")
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
