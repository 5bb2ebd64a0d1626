"""``manage.py uw_stream`` as the process compose runs, with a real Celery worker, PostgreSQL and Redis.

The stand-in plays flow alerts on its own clock; the listener is killed with SIGKILL mid-stream and started again.
Alerts sent while it was down, and any it held in memory, must come back through the REST gap backfill, and none
may be stored twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from apps.core.bench import celery_worker_argv, database_url
from apps.ingestion.models import FlowAlert
from apps.ingestion.redis_keys import FLOW_ALERTS
from apps.ingestion.uw import stream
from apps.ingestion.uw.standin import UWStandin
from tests.ingestion import frames

ROOT = Path(__file__).resolve().parents[2]
ALERTS = 80
STEP_MS = 100


def alert_session(t0: int) -> tuple[list[str], list[str]]:
    """A flow alert every 100 ms for 8 s (and SPY prices), starting 1 s after ``t0``, the stand-in's first frame.

    Times are today's: the backfill asks REST for alerts newer than what the listener last received (wall clock).
    """
    lines = [frames.line("price:QQQ", frames.price("QQQ"), t0)]
    ids = []
    for n in range(ALERTS):
        at = t0 + 1000 + n * STEP_MS
        alert_id = f"alert-{n:03d}"
        ids.append(alert_id)
        lines.append(frames.line("flow-alerts", frames.flow_alert(id=alert_id, executed_at=at - 30), at))
        lines.append(frames.line("price:SPY", frames.price(time=at, close=f"{660 + n / 100:.2f}"), at + 1))
    return lines, ids


def environment(uw: UWStandin) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        UW_WS_URL=uw.ws_url,
        UW_API_URL=uw.api_url,
        UW_API_TOKEN=uw.token,
        UW_CHANNELS="flow-alerts,price:SPY",
        UW_STREAM_BATCH_MS="20",
        UW_STREAM_BACKOFF_MIN_SECONDS="0.1",
        UW_STREAM_BACKOFF_MAX_SECONDS="0.5",
        TP_TASKS_EAGER="0",
        LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_listener(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "uw_stream"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def worker_env(tmp_path) -> Iterator[tuple[UWStandin, dict[str, str], Path, list[str]]]:
    lines, ids = alert_session(int(time.time() * 1000))
    with UWStandin(lines, speed=1.0) as uw:
        env = environment(uw)
        log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            celery_worker_argv("-Q", "ingestion", "--pool", "solo"),
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            yield uw, env, tmp_path, ids
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def stored_alerts() -> list[str]:
    return list(FlowAlert.objects.order_by("uw_id").values_list("uw_id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_stream_and_restart_leaves_no_alert_missing_and_none_doubled(
    worker_env, requires_real_services, redis_store
):
    uw, env, tmp, expected = worker_env
    log = tmp / "uw_stream.log"
    first = start_listener(env, log)
    try:
        assert wait(lambda: FlowAlert.objects.count() >= 15, timeout=30), log.read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at_ms = uw.cursor_ms
        time.sleep(1.5)  # the market goes on: these alerts are sent to nobody
        second = start_listener(env, log)
        try:
            assert wait(lambda: uw.replay_finished.is_set(), timeout=30)
            assert wait(lambda: stored_alerts() == expected, timeout=30), (
                f"missing: {sorted(set(expected) - set(stored_alerts()))}\n{log.read_text()[-3000:]}"
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
    # Some alerts were due while no listener was connected: only the backfill can have stored them.
    sent_on_socket = set(uw.sent_flow_alert_ids)
    assert set(expected) - sent_on_socket, "the kill left no gap: the test proves nothing"
    assert killed_at_ms < uw.cursor_ms
    assert FlowAlert.objects.count() == len(expected) == len(set(stored_alerts()))
    # The alert list for the dashboard holds each alert once too.
    listed = [orjson.loads(item)["id"] for item in redis_store.lrange(FLOW_ALERTS, 0, -1)]
    assert len(listed) == len(set(listed))
    assert stream.stream_state(store=redis_store)["status"] == "stopped"


@pytest.mark.django_db(transaction=True)
def test_sigterm_flushes_what_was_read_and_exits_cleanly(worker_env, requires_real_services, redis_store):
    uw, env, tmp, _ = worker_env
    log = tmp / "uw_stream.log"
    listener = start_listener(env, log)
    try:
        assert wait(lambda: FlowAlert.objects.count() >= 5, timeout=30), log.read_text()[-3000:]
        listener.send_signal(signal.SIGTERM)
        assert listener.wait(timeout=20) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
    output = log.read_text()
    assert "SIGTERM received" in output
    assert "0 unpublished" in output
    state = stream.stream_state(store=redis_store)
    assert state["status"] == "stopped"
    assert state["frames"] == state["frames_published"]


def test_uw_stream_refuses_to_start_without_a_token(tmp_path):
    env = dict(os.environ, UW_API_TOKEN="", REDIS_URL="redis://127.0.0.1:6379/15")
    done = subprocess.run(
        [sys.executable, "manage.py", "uw_stream"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "UW_API_TOKEN is not set" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_live_sim_shows_the_live_path_end_to_end(tmp_path, requires_real_services, redis_store):
    from io import StringIO

    from django.core.management import call_command

    from apps.ingestion.models import OptionTrade

    t0 = int(time.time() * 1000)
    lines = [frames.line("price:QQQ", frames.price("QQQ"), t0)]
    for n in range(40):
        at = t0 + 500 + n * 50
        lines.append(frames.line("option_trades:SPY", frames.option_trade(id=f"sim-{n}", executed_at=at), at))
    session = tmp_path / "session.ndjson"
    session.write_text("\n".join(lines) + "\n")
    out = StringIO()
    call_command("live_sim", "--session", str(session), "--seconds", "8", "--every", "2", "--speed", "1", stdout=out)
    text = out.getvalue()
    assert "stand-in ws://127.0.0.1:" in text
    final = [line for line in text.splitlines() if line.startswith("final:")]
    assert final and "listener stopped" in final[0]
    # The loop replays the 40 prints with fresh ids lap after lap: at least the first lap is stored.
    assert OptionTrade.objects.count() >= 40
