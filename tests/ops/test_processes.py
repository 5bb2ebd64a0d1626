"""Every compose process, proven by running its exact command here on loopback against the real PostgreSQL and Redis.

Starting a process of the platform costs seconds (Django, Celery and every app's tasks are imported), so the four
are started side by side once for this module and each test then checks its own.  Each runs in its own session
(process group) with its output in a file, gets a bounded time to show it works, and is always stopped at the end:
SIGTERM to its group, then SIGKILL if it lingers.  The processes use the pytest test database (rows this module
commits are what they see) and the test's Redis database.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.core.beat import PeriodicDeclaration
from apps.ops.beat_schedules import periodic_tasks_sync
from apps.ops.models import AuditLog, DeadLetter
from apps.ops.services import CANARY_KEY
from tests.ops.compose_file import REPO, compose_command
from tradingplatform.celery import app as celery_app

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

BIN = Path(sys.executable).parent
FLOWER_CREDENTIALS = "ops:flower-test-pw"
# Beat's proof row sends to a queue no worker of this module consumes, so what beat sent stays countable.
BEAT_PROOF_TASK = "test: beat proof"
BEAT_PROOF_QUEUE = "beat-proof"
PROOF_ACTOR = "tests.ops.processes"
START_TIMEOUT = 90  # seconds; a loaded two-core machine starts four Django processes at once


@dataclass
class Process:
    proc: subprocess.Popen
    log: Path
    port: int | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Stack:
    redis: redis.Redis
    processes: dict[str, Process] = field(default_factory=dict)

    def wait_for(self, name: str, condition: Callable[[], object], what: str, timeout: float = START_TIMEOUT):
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if process.proc.poll() is not None:
                pytest.fail(f"{name}: exited with {process.proc.returncode} before {what}\n{process.output()}")
            time.sleep(0.25)
        pytest.fail(f"{name}: {what} did not happen within {timeout} s\n{process.output()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _local(argv: list[str]) -> list[str]:
    """The compose command with its program taken from this virtualenv (the image has them on PATH)."""
    program = BIN / argv[0]
    return [str(program if program.exists() else argv[0]), *argv[1:]]


def _loopback(argv: list[str], port: int) -> list[str]:
    # compose binds 0.0.0.0 inside the container; here nothing may listen beyond loopback.
    argv = [a.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for a in argv]
    argv = [f"--port={port}" if a.startswith("--port=") else a for a in argv]
    return ["--address=127.0.0.1" if a.startswith("--address=") else a for a in argv]


def _process_env() -> dict[str, str]:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    address = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{auth}@{address}/{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "TP_TASKS_EAGER": "0",
        "PYTHONPATH": str(REPO),
        "LOG_FORMAT": "console",
    }


def _stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    # Flower waits on its inspector threads for several seconds; the data of this module is thrown away anyway.
    deadline = time.monotonic() + 5
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _cleanup_rows() -> None:
    PeriodicTask.objects.filter(name=BEAT_PROOF_TASK).delete()
    IntervalSchedule.objects.filter(every=1, period=IntervalSchedule.SECONDS, periodictask__isnull=True).delete()
    DeadLetter.objects.all().delete()
    AuditLog.objects.filter(actor=PROOF_ACTOR).delete()


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Stack]:
    if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    client.flushdb()
    logs = tmp_path_factory.mktemp("processes")
    with django_db_blocker.unblock():
        _cleanup_rows()
        periodic_tasks_sync(
            declarations=[
                PeriodicDeclaration(
                    app="tests", name=BEAT_PROOF_TASK, task="ops.canary", interval_seconds=1, queue=BEAT_PROOF_QUEUE
                )
            ],
            actor=PROOF_ACTOR,
        )
        env = _process_env()
    web_port, flower_port = _free_port(), _free_port()
    commands = {
        "web": (_loopback(_local(compose_command("web")), web_port), web_port),
        "worker": (_local(compose_command("worker")), None),
        # Compose gives each container its own host name; here both workers share one, so this one gets its own node.
        "commentary-worker": ([*_local(compose_command("commentary-worker")), "-n", "commentary@%h"], None),
        "beat": (_local(compose_command("beat")), None),
        "flower": (
            _loopback(_local(compose_command("flower", FLOWER_BASIC_AUTH=FLOWER_CREDENTIALS)), flower_port),
            flower_port,
        ),
    }
    result = Stack(redis=client)
    try:
        for name, (argv, port) in commands.items():
            log = logs / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            result.processes[name] = Process(proc=proc, log=log, port=port)
        yield result
    finally:
        _stop([p.proc for p in result.processes.values()])
        with django_db_blocker.unblock():
            _cleanup_rows()
        client.flushdb()
        client.close()


@pytest.fixture
def redis_store(stack):
    """Overrides the suite's per-test flush: the processes of this module share the Redis database (broker bindings
    included) from the module's start to its end; the stack fixture flushes it before and after."""
    return stack.redis


def _get(url: str, auth: str | None = None) -> int | None:
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def test_gunicorn_with_the_web_command_serves_the_admin_login_and_metrics(stack):
    base = f"http://127.0.0.1:{stack.processes['web'].port}"

    stack.wait_for("web", lambda: _get(f"{base}/admin/login/"), "answering HTTP")

    assert _get(f"{base}/admin/login/") == 200
    assert _get(f"{base}/metrics") == 200
    healthcheck = subprocess.run(
        [sys.executable, str(REPO / "docker" / "healthcheck.py"), f"{base}/admin/login/"], timeout=15, check=False
    )
    assert healthcheck.returncode == 0


def test_a_worker_with_the_compose_command_consumes_the_canary(stack):
    celery_app.conf.task_always_eager = False  # the suite's autouse fixture restores it

    celery_app.send_task("ops.canary")
    stamp = stack.wait_for("worker", lambda: stack.redis.get(CANARY_KEY), "ops.canary stamping ops:canary")

    assert stamp.startswith("20")
    # The compose healthcheck's question (inspect ping), asked over the same broker.
    replies = celery_app.control.ping(destination=[f"celery@{socket.gethostname()}"], timeout=5)
    assert replies and all(reply == {"ok": "pong"} for r in replies for reply in r.values())


def test_the_commentary_worker_with_the_compose_command_consumes_only_the_commentary_queue(stack):
    def commentary_consumers():
        queues = celery_app.control.inspect(timeout=2).active_queues() or {}
        return {
            node: sorted(q["name"] for q in qs)
            for node, qs in queues.items()
            if any(q["name"] == "commentary" for q in qs)
        }

    consumers = stack.wait_for("commentary-worker", commentary_consumers, "a worker consuming the commentary queue")

    assert list(consumers.values()) == [["commentary"]]


def test_a_task_failing_on_the_worker_leaves_a_dead_letter_row(stack):
    celery_app.conf.task_always_eager = False
    # Arguments the task does not accept: it fails inside the worker, where only the task_failure receiver sees it.
    celery_app.send_task("ops.canary", args=["unexpected"], task_id="dead-letter-proof")

    letter = stack.wait_for(
        "worker", lambda: DeadLetter.objects.filter(task_id="dead-letter-proof").first(), "the dead letter row"
    )

    time.sleep(0.5)
    assert DeadLetter.objects.filter(task_id="dead-letter-proof").count() == 1  # recorded once, not per signal
    assert letter.task_name == "ops.canary"
    assert letter.args == ["unexpected"]
    assert letter.exception.startswith("TypeError")
    assert "Traceback" in letter.traceback


def test_beat_with_the_database_scheduler_sends_due_tasks_and_stays_up(stack):
    stack.wait_for("beat", lambda: stack.redis.llen(BEAT_PROOF_QUEUE) >= 2, "two runs of the 1 s proof row sent")

    assert stack.processes["beat"].proc.poll() is None
    assert "DatabaseScheduler" in stack.processes["beat"].output()


def test_flower_with_basic_auth_refuses_anonymous_requests_and_admits_the_configured_user(stack):
    base = f"http://127.0.0.1:{stack.processes['flower'].port}"

    stack.wait_for("flower", lambda: _get(f"{base}/healthcheck"), "answering HTTP")

    assert _get(f"{base}/") == 401
    assert _get(f"{base}/", auth="ops:wrong") == 401
    assert _get(f"{base}/", auth=FLOWER_CREDENTIALS) == 200
    assert _get(f"{base}/healthcheck") == 200
