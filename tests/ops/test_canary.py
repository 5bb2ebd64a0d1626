"""A canary per stage queue: beat sends one to every queue, a worker of that queue stamps it, and a canary left
waiting past its threshold raises WorkerStalled for that queue -- proven with a real worker frozen by SIGSTOP."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from apps.core import clock, queues
from apps.ops import services, tasks
from apps.ops.models import Alert
from apps.ops.schedules import PERIODIC_TASKS
from tests.ops.compose_file import compose_command
from tests.ops.test_processes import REPO, _local, _process_env
from tradingplatform.celery import app as celery_app

pytestmark = pytest.mark.django_db

START_TIMEOUT = 90  # seconds: Django and every app's tasks load on a shared two-core machine


def _wait(condition: Callable[[], object], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    output = log.read_text(errors="replace")[-3000:] if log is not None else ""
    pytest.fail(f"{what} did not happen within {timeout} s\n{output}")


def test_beat_sends_a_canary_to_every_stage_queue_routed_to_that_queue():
    canaries = {entry["queue"]: entry for entry in PERIODIC_TASKS if entry["task"] == "ops.canary"}

    assert set(canaries) == set(queues.ALL)
    assert all(entry["kwargs"] == {"queue": queue} for queue, entry in canaries.items())
    assert canaries["ops"]["name"] == "ops: worker canary"  # the historical row is updated, not replaced


def test_a_canary_stamps_its_own_queue_and_the_ops_one_keeps_the_health_key(redis_store):
    tasks.canary.delay(queue="signals")

    assert redis_store.get(services.canary_consumed_key("signals"))
    assert redis_store.get(services.CANARY_KEY) is None

    tasks.canary.delay()

    assert redis_store.get(services.CANARY_KEY) == redis_store.get(services.canary_consumed_key("ops"))


# Canaries always go to the broker (send_task), whatever the suite's in-process setting for the other tasks says.
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_a_sent_canary_left_waiting_past_the_threshold_raises_worker_stalled_until_consumed(settings, redis_store):
    settings.WORKER_STALLED_SECONDS = 60
    services.canaries_send(queue_names=["signals"])  # published to the real broker; no worker consumes it here

    assert redis_store.llen("signals") == 1
    assert redis_store.get(services.canary_pending_key("signals"))
    assert tasks.alerts_evaluate.delay().get()["firing"] == []

    long_ago = (clock.now() - timedelta(seconds=61)).isoformat()
    redis_store.set(services.canary_pending_key("signals"), long_ago)
    services.canaries_send(queue_names=["signals"])  # a second send keeps the oldest waiting time

    assert tasks.alerts_evaluate.delay().get()["raised"] == ["worker_stalled:signals"]
    assert Alert.objects.get().summary.startswith("no worker consumes the signals queue: its canary has waited 6")

    tasks.canary.delay(queue="signals")  # a worker of the queue takes one

    assert tasks.alerts_evaluate.delay().get()["resolved"] == ["worker_stalled:signals"]


@pytest.fixture
def execution_worker(settings, tmp_path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """The compose execution worker (one queue, one process), in its own process group; always resumed and
    stopped."""
    if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    log = tmp_path / "execution-worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_local(compose_command("execution-worker")), "-n", "canary-test@%h"],
            cwd=REPO,
            env=_process_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def test_the_canary_catches_a_stalled_worker_and_clears_when_it_resumes(settings, redis_store, execution_worker):
    proc, log = execution_worker
    settings.WORKER_STALLED_SECONDS = 2
    celery_app.conf.task_always_eager = False  # the suite's autouse fixture restores it
    pending = services.canary_pending_key("execution")
    consumed = services.canary_consumed_key("execution")

    services.canaries_send(queue_names=["execution"])
    _wait(lambda: redis_store.get(consumed) and not redis_store.get(pending), "the worker's canary", START_TIMEOUT, log)

    assert tasks.alerts_evaluate().get("firing") == []

    last_consumed = redis_store.get(consumed)
    os.killpg(proc.pid, signal.SIGSTOP)
    services.canaries_send(queue_names=["execution"])
    time.sleep(2.5)

    report = tasks.alerts_evaluate()
    assert report["raised"] == ["worker_stalled:execution"]
    assert redis_store.get(consumed) == last_consumed  # the frozen worker ran nothing

    os.killpg(proc.pid, signal.SIGCONT)
    _wait(lambda: not redis_store.get(pending), "the resumed worker's canary", 30, log)

    assert tasks.alerts_evaluate()["resolved"] == ["worker_stalled:execution"]
    alert = Alert.objects.get(key="worker_stalled:execution")
    assert alert.resolved_at is not None and alert.rule == "WorkerStalled" and alert.severity == "critical"
