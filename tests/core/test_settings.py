"""Settings come from the environment; a bad value stops the process at start with a message naming it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TP_TASKS_EAGER")}
    env.update({"TP_DATA_DIR": str(tmp_path), **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TRADING_MODE", "yolo", "TRADING_MODE='yolo' is not valid"),
        ("BROKER", "robinhood", "BROKER='robinhood' is not valid"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL must start with"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must start with"),
        ("ACCOUNT_STARTING_CASH", "lots", "ACCOUNT_STARTING_CASH='lots' is not a decimal"),
        ("DISTRIBUTION_TIERS", "premium:now", "DISTRIBUTION_TIERS must look like"),
        ("TRACKED_TICKERS", "SPY,,Q1Q", "TRACKED_TICKERS must be a comma-separated list"),
        ("PAPER_FILL_SPREAD_SHARE", "2", "PAPER_FILL_SPREAD_SHARE must be between"),
    ],
)
def test_bad_environment_values_fail_at_start_with_a_clear_message(name, value, expected, tmp_path):
    result = _check({name: value}, tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr


def test_embedded_default_needs_no_setting_and_is_paper(tmp_path):
    env = {"TP_DATA_DIR": str(tmp_path)}
    result = _check(env, tmp_path)
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.TRADING_MODE, s.BROKER, s.CELERY_TASK_ALWAYS_EAGER, s.DATABASES['default']['ENGINE'])",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TP_TASKS_EAGER")},
            "TP_DATA_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "tradingplatform.settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.split() == ["paper", "paper", "True", "django.db.backends.sqlite3"], probe.stderr


def test_production_requires_a_secret_key(tmp_path):
    result = _check({"DJANGO_PRODUCTION": "1", "DJANGO_SECRET_KEY": ""}, tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def _deploy_check(env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TP_TASKS_EAGER")}
    env.update({"TP_DATA_DIR": str(tmp_path), **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    # What compose gives the web service: production on, a real secret, the public host, behind the TLS proxy.
    result = _deploy_check(
        {
            "DJANGO_PRODUCTION": "1",
            "DJANGO_SECRET_KEY": "k3y-" + "Zq8vR2mX9pL4sT7wB1nC6dF0hJ5gK3aE" * 2,
            "DJANGO_ALLOWED_HOSTS": "ops.example.org",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://ops.example.org",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_flags_the_embedded_default(tmp_path):
    # The same check fails outside production (no HSTS, no SSL redirect, insecure cookies): it is not vacuous.
    result = _deploy_check({}, tmp_path)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W016" in result.stderr
