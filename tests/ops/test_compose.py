from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.ops.compose_file import COMPOSE_FILE, REPO, compose_command, compose_services

REQUIRED_ENV = {
    "DJANGO_SECRET_KEY": "k" * 50,
    "POSTGRES_PASSWORD": "pg-secret",
    "FLOWER_BASIC_AUTH": "ops:pw",
    "ALERTMANAGER_WEBHOOK_TOKEN": "am-token",
    "GRAFANA_ADMIN_PASSWORD": "grafana-pw",
}
# The monitoring services run official images with their own commands (tests/ops/test_alert_rules.py checks them).
MONITORING = {"prometheus", "alertmanager", "grafana"}

needs_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (apt-get install -y docker-compose); compose.yaml validation skipped",
)


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


def _compose_argv(env_file) -> list[str]:
    # An empty env file (and a clean environment, below): the developer's own variables or a .env in the repository
    # must not decide the outcome.
    project = ["--project-directory", str(REPO), "--env-file", str(env_file), "-f", str(COMPOSE_FILE)]
    return ["docker-compose", *project, "config"]


def _compose_config(env_file, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        _compose_argv(env_file),
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved_config(empty_env_file):
    """What docker-compose itself makes of compose.yaml with the three required secrets set (run once: it is slow)."""
    result = _compose_config(empty_env_file, REQUIRED_ENV)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@needs_docker_compose
def test_docker_compose_accepts_the_file_and_wires_the_stores_to_its_own_services(resolved_config):
    web_env = resolved_config["services"]["web"]["environment"]

    assert web_env["DATABASE_URL"] == "postgres://tradingplatform:pg-secret@postgres:5432/tradingplatform"
    assert web_env["REDIS_URL"] == "redis://redis:6379/0"
    assert web_env["DJANGO_PRODUCTION"] == "1"
    assert "--basic_auth=ops:pw" in resolved_config["services"]["flower"]["command"]
    assert set(resolved_config["services"]) == set(EXPECTED_COMMANDS) | {"postgres", "redis"} | MONITORING


@needs_docker_compose
def test_docker_compose_puts_the_three_long_lived_connections_in_the_listeners_profile(resolved_config):
    services = resolved_config["services"]

    profiles = {name: spec["profiles"] for name, spec in services.items() if spec.get("profiles")}

    assert profiles == {name: ["listeners"] for name in ("uw-listener", "ib-listener", "telegram-bot")}


@needs_docker_compose
def test_docker_compose_refuses_to_start_flower_without_basic_auth(empty_env_file):
    result = _compose_config(empty_env_file, {k: v for k, v in REQUIRED_ENV.items() if k != "FLOWER_BASIC_AUTH"})

    assert result.returncode != 0
    assert "set FLOWER_BASIC_AUTH=user:password" in result.stderr


def test_every_secret_without_a_default_is_required_by_compose():
    text = COMPOSE_FILE.read_text()

    # docker-compose checks each ${NAME:?message} the same way; the run above proves it for Flower's.
    assert set(re.findall(r"\$\{([A-Z_]+):\?set \1", text)) == set(REQUIRED_ENV)


STAGES_BUT_EXECUTION = ("ingestion", "analytics", "signals", "risk", "distribution", "ops")
EXPECTED_COMMANDS = {
    "migrate": ["sh", "-c", "python manage.py migrate --noinput && python manage.py setup_schedules"],
    "web": ["gunicorn", "tradingplatform.wsgi", "-b", "0.0.0.0:8000"],
    "worker": ["celery", "-A", "tradingplatform", "worker", "-Q", ",".join(STAGES_BUT_EXECUTION)],
    "execution-worker": ["celery", "-A", "tradingplatform", "worker", "-Q", "execution", "-c", "1"],
    "commentary-worker": ["celery", "-A", "tradingplatform", "worker", "-Q", "commentary", "-c", "2"],
    "beat": ["celery", "-A", "tradingplatform", "beat", "-S", "django_celery_beat.schedulers:DatabaseScheduler"],
    "flower": [
        "celery",
        "-A",
        "tradingplatform",
        "flower",
        "--address=0.0.0.0",
        "--port=5555",
        "--basic_auth=ops:pw",
    ],
    "uw-listener": ["python", "manage.py", "uw_stream"],
    "ib-listener": ["python", "manage.py", "ib_listener"],
    "telegram-bot": ["python", "manage.py", "telegram_bot"],
}


@pytest.mark.parametrize(("service", "command"), sorted(EXPECTED_COMMANDS.items()))
def test_each_compose_service_runs_exactly_its_command(service, command):
    assert compose_command(service, FLOWER_BASIC_AUTH="ops:pw") == command


def test_the_workers_together_consume_every_stage_queue_and_only_one_takes_execution():
    from apps.core import queues

    def consumed(service):
        argv = compose_command(service)
        return set(argv[argv.index("-Q") + 1].split(","))

    workers = ("worker", "execution-worker", "commentary-worker")
    assert set().union(*(consumed(w) for w in workers)) == set(queues.ALL)
    assert sum(len(consumed(w)) for w in workers) == len(queues.ALL)  # no queue consumed twice
    assert consumed("execution-worker") == {"execution"}


def test_listeners_are_behind_the_listeners_profile_and_the_core_processes_are_not():
    services = compose_services()

    profiled = {name for name, spec in services.items() if spec.get("profiles")}

    assert profiled == {"uw-listener", "ib-listener", "telegram-bot"}
    assert all(services[name]["profiles"] == ["listeners"] for name in profiled)


def test_every_platform_process_waits_for_migrate_and_restarts_and_has_a_healthcheck():
    services = compose_services()

    for name in set(EXPECTED_COMMANDS) - {"migrate", "flower"}:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    for name in set(services) - {"migrate"}:
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["restart"] == "no"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"


def _variables_settings_reads() -> set[str]:
    source = (REPO / "tradingplatform" / "settings.py").read_text()
    reader = r"(?:_choice|_int|_decimal|_bool|_url|_tickers|_tiers|env\.\w+)"
    read = set(re.findall(reader + r'\(\s*"([A-Z][A-Z0-9_]+)"', source))
    if "DISCORD_WEBHOOK_URL_" in source:
        # Read per configured tier (an f-string): the default tiers' names.
        read |= {f"DISCORD_WEBHOOK_URL_{tier}" for tier in ("PREMIUM", "STANDARD", "FREE")}
    assert len(read) > 30, "the pattern no longer finds settings.py's variables"
    return read


def test_env_example_lists_every_variable_settings_reads():
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.MULTILINE))

    assert _variables_settings_reads() - listed == set()


def test_compose_passes_every_setting_to_the_platform_containers():
    environment = compose_services()["web"]["environment"]
    # Compose decides these itself: the broker is its Redis and tasks always go to the workers.
    decided_by_compose = {"CELERY_BROKER_URL", "TP_TASKS_EAGER"}

    assert _variables_settings_reads() - decided_by_compose - set(environment) == set()
    assert decided_by_compose & set(environment) == set()


def test_the_image_runs_as_a_non_root_user_and_collects_static_files_at_build():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()

    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "requirements/prod.txt" in dockerfile
    assert re.search(r"^USER app$", dockerfile, re.MULTILINE)
    assert dockerfile.index("collectstatic") < dockerfile.index("USER app")
    assert "HEALTHCHECK" in dockerfile
