"""The correlation id follows one market event through the stages: in-process (eager) and across real workers, where
it travels in the task message's headers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis
from django.conf import settings
from django.db import connection

from apps.core import correlation
from apps.core.logging import correlated, correlation_id
from apps.ingestion.tasks import ingest_batch
from tests.ingestion import frames
from tradingplatform.celery import app as celery_app

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class _Ran:
    name = "analytics.update_ticker"
    request = None


def test_a_task_without_an_inherited_id_starts_one_from_its_stage_and_task_id_and_puts_back_the_callers():
    task = _Ran()
    correlation.correlation_task_start(task_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", task=task)
    assert correlation_id.get() == "analytics-0f1e2d3c4b5a"
    correlation.correlation_task_end(task_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", task=task, state="SUCCESS")
    assert correlation_id.get() == correlation.UNSET


def test_a_task_run_in_process_keeps_the_callers_id_and_the_header_carries_it_when_sent():
    headers: dict[str, str] = {}
    with correlated("evt-42"):
        correlation.correlation_task_start(task_id="abc", task=_Ran())
        assert correlation_id.get() == "evt-42"
        correlation.correlation_header(headers=headers)
        correlation.correlation_task_end(task_id="abc", task=_Ran(), state="SUCCESS")
        assert correlation_id.get() == "evt-42"
    assert headers == {correlation.HEADER: "evt-42"}
    # With no id set, nothing is added: the worker starts one.
    empty: dict[str, str] = {}
    correlation.correlation_header(headers=empty)
    assert empty == {}


def _worker(tmp_path: Path, queues: str) -> tuple[subprocess.Popen, Path]:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    address = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{auth}@{address}/{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "TP_TASKS_EAGER": "0",
        "PYTHONPATH": str(REPO),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "debug",
    }
    log = tmp_path / "worker.log"
    argv = [str(BIN / "celery"), "-A", "tradingplatform", "worker", "-Q", queues, "-P", "solo", "-n", "cid@%h"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def _task_lines(log: Path) -> list[dict]:
    rows = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            row = orjson.loads(line)
            if row.get("logger") == "apps.core.tasks":
                rows.append(row)
    return rows


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_carries_the_id_from_the_ingested_batch_to_the_analytics_it_triggers(tmp_path):
    if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    proc, log = _worker(tmp_path, "ingestion,analytics")
    celery_app.conf.task_always_eager = False  # sent to Redis, run by the worker
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        # A message sent before the worker bound its queues would be dropped by the exchange: wait for the bindings.
        deadline = time.monotonic() + 90
        while not (client.exists("_kombu.binding.ingestion") and client.exists("_kombu.binding.analytics")):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not bind its queues\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        # One batch sent with an id, one without: the second gets its own, which its analytics run inherits.
        with correlated("evt-from-test"):
            ingest_batch.apply_async(args=([frames.line("price:SPY", frames.price())],), kwargs={"source": "test"})
        ingest_batch.apply_async(
            args=([frames.line("price:QQQ", frames.price(ticker="QQQ"))],), kwargs={"source": "test"}
        )
        deadline = time.monotonic() + 90
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = _task_lines(log)
            if sum(1 for r in rows if r["task"] == "analytics.update_ticker") >= 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"worker exited with {proc.returncode}\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        else:
            pytest.fail(f"the analytics runs were not seen within 90 s\n{log.read_text()[-3000:]}")
    finally:
        celery_app.conf.task_always_eager = True
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        client.flushdb()
    by_task: dict[str, list[str]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row["correlation_id"])
    ingested = by_task["ingestion.ingest_batch"]
    assert "evt-from-test" in ingested
    started = [cid for cid in ingested if cid != "evt-from-test"]
    assert len(started) == 1 and started[0].startswith("ingestion-")
    # Each analytics run carries the id of the batch that triggered it.
    assert sorted(by_task["analytics.update_ticker"]) == sorted(["evt-from-test", started[0]])
