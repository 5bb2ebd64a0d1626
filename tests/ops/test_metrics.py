"""The platform's Prometheus metrics: recorded in every process, summed per process group, served by each process.

The worker test runs the compose worker command (prefork, two children) with its own metrics directory and port,
sends it real ingestion batches through the broker, and reads its endpoint with prometheus_client's own parser: the
counts it serves were recorded in the children and summed by the main process.  The web tests ask ``/metrics``
through the Django test client for the scrape-time gauges, with the stores up and with Redis unreachable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from apps.core import queues
from apps.ingestion import redis_keys
from apps.ingestion.feeds import IB_MARKET, UW_REST, UW_STREAM, feed_pause_key
from apps.ingestion.services import ingest_lines
from apps.ingestion.uw.stream import CHANNELS_KEY, STATE_KEY
from apps.ops import metrics
from apps.ops.models import Alert
from apps.ops.services import CANARY_KEY, dead_letter_record
from apps.risk.services import kill_switch_engage
from tests.ingestion import frames
from tests.ops.compose_file import REPO, compose_command
from tradingplatform import metrics_dir
from tradingplatform.celery import app as celery_app

BIN = Path(sys.executable).parent
START_TIMEOUT = 60  # seconds for the worker to serve its endpoint on a loaded two-core machine
TASK_TIMEOUT = 30


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(url: str) -> Samples | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return _parse(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


# --- a real worker ---------------------------------------------------------------------------------------------------
@pytest.fixture
def worker(requires_real_services, transactional_db, tmp_path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The compose worker command with two prefork children, its own metrics directory and port; always stopped."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    address = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    port = _free_port()
    multiproc = tmp_path / "prometheus"
    env = {key: value for key, value in os.environ.items() if key not in (metrics_dir.ENV, metrics_dir.DEFAULT_ENV)}
    env.update(
        DATABASE_URL=f"postgres://{auth}@{address}/{connection.settings_dict['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        TP_TASKS_EAGER="0",
        PYTHONPATH=str(REPO),
        LOG_FORMAT="console",
        METRICS_PORT=str(port),
        METRICS_ADDRESS="127.0.0.1",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    argv = compose_command("worker")
    argv = [str(BIN / argv[0]), *argv[1:], "-c", "2", "-n", "metrics@%h"]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc, port, multiproc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(log.read_text(errors="replace")[-4000:])


def _wait(proc: subprocess.Popen[bytes], what: str, timeout: float, check):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the worker exited with {proc.returncode} before {what}")
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {timeout} s")


def test_a_prefork_worker_serves_the_sum_of_its_childrens_ingestion_and_task_metrics(worker):
    proc, port, multiproc = worker
    url = f"http://127.0.0.1:{port}/metrics"
    _wait(proc, "the worker's metrics endpoint answering", START_TIMEOUT, lambda: _scrape(url) is not None)
    celery_app.conf.task_always_eager = False  # the suite's autouse fixture restores it
    # Untracked ticker: the batches stay in ingestion (no analytics follows), so the counts are exactly these.
    first = [frames.line("price:AAPL", frames.price("AAPL", time=frames.RECEIVED_MS - n)) for n in range(3)]
    bad = frames.line("price:AAPL", frames.price("AAPL", close="lots"))
    second = [frames.line("price:AAPL", frames.price("AAPL", time=frames.RECEIVED_MS - 10 - n)) for n in range(2)]

    celery_app.send_task("ingestion.ingest_batch", args=([*first, bad], "uw_ws"))
    celery_app.send_task("ingestion.ingest_batch", args=(second, "uw_ws"))

    def both_done() -> Samples | None:
        samples = _scrape(url)
        task = {"task": "ingestion.ingest_batch", "stage": "ingestion", "outcome": "success"}
        return samples if samples and _value(samples, "tp_tasks_total", **task) == 2 else None

    samples = _wait(proc, "two ingestion batches counted", TASK_TIMEOUT, both_done)
    assert _value(samples, "tp_frames_in_total", source="uw_ws", channel="price") == 6
    assert _value(samples, "tp_frames_quarantined_total", source="uw_ws", channel="price") == 1
    assert _value(samples, "tp_stage_latency_seconds_count", stage="ingestion") == 2
    latency = _value(samples, "tp_stage_latency_seconds_sum", stage="ingestion")
    assert latency is not None and 0 < latency < TASK_TIMEOUT * 2
    assert _value(samples, "tp_stage_latency_seconds_bucket", stage="ingestion", le="+Inf") == 2
    # Recorded by the prefork children (their pid in the file names), served by the main process.
    writers = {int(path.stem.rsplit("_", 1)[1]) for path in multiproc.glob("*.db")}
    assert writers - {proc.pid}
    # The web process alone reads the stores: no scrape-time gauge comes from a worker.
    assert _value(samples, "tp_kill_switch_engaged") is None


def test_a_listener_command_serves_its_metrics_on_metrics_port_while_it_reconnects(requires_real_services, tmp_path):
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in (metrics_dir.ENV, metrics_dir.DEFAULT_ENV)}
    env.update(
        REDIS_URL=settings.REDIS_URL,
        TP_TASKS_EAGER="0",
        PYTHONPATH=str(REPO),
        LOG_FORMAT="console",
        METRICS_PORT=str(port),
        UW_API_TOKEN="metrics-test",
        UW_WS_URL=f"ws://127.0.0.1:{_free_port()}/socket",  # nothing listens: the listener backs off and retries
        UW_STREAM_BACKOFF_MIN_SECONDS="0.5",
    )
    log = tmp_path / "uw_stream.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "uw_stream", "--no-backfill"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        samples = _wait(
            proc, "the listener's metrics endpoint", START_TIMEOUT, lambda: _scrape(f"http://127.0.0.1:{port}/metrics")
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    assert _value(samples, "tp_dead_letters_total") == 0
    assert _value(samples, "tp_queue_depth", queue="ingestion") is None  # scrape-time gauges: the web's alone


# --- the web process -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_web_metrics_show_queue_depth_kill_switch_feeds_canary_and_open_alerts(client, redis_store, settings):
    settings.BROKER = "ib"
    redis_store.rpush(queues.SIGNALS, "m1", "m2", "m3")
    kill_switch_engage(by="tests", reason="metrics test", flatten=False)
    now = time.time()
    redis_store.hset(STATE_KEY, mapping={"status": "streaming", "updated_at": f"{now - 2:.3f}"})
    redis_store.hset(CHANNELS_KEY, mapping={"price:SPY": '{"frames": 5, "rate_per_s": 1.0, "last_frame_age_s": 3.0}'})
    redis_keys.feed_frame_stamp(IB_MARKET)
    redis_store.set(feed_pause_key(UW_REST), "tests")
    redis_store.set(CANARY_KEY, "2000-01-01T00:00:00+00:00")
    Alert.objects.create(
        key="queue_backlog:signals",
        rule="QueueBacklog",
        severity=Alert.Severity.CRITICAL,
        summary="backlog",
        raised_at=timezone.now(),
        last_seen_at=timezone.now(),
    )

    response = client.get("/metrics")

    assert response.status_code == 200
    samples = _parse(response.content.decode())
    assert _value(samples, "tp_queue_depth", queue="signals") == 3
    assert _value(samples, "tp_queue_depth", queue="ingestion") == 0
    assert _value(samples, "tp_kill_switch_engaged") == 1
    # The listener's newest channel was 3 s old in a report written 2 s ago.
    uw_age = _value(samples, "tp_feed_last_frame_age_seconds", feed=UW_STREAM)
    assert uw_age is not None and 5 <= uw_age < 15
    ib_age = _value(samples, "tp_feed_last_frame_age_seconds", feed=IB_MARKET)
    assert ib_age is not None and 0 <= ib_age < 10
    assert _value(samples, "tp_feed_last_frame_age_seconds", feed=UW_REST) is None  # never polled
    assert _value(samples, "tp_feed_paused", feed=UW_REST) == 1
    assert _value(samples, "tp_feed_paused", feed=UW_STREAM) == 0
    assert _value(samples, "tp_ib_connected") == 0  # BROKER=ib and no listener report
    assert _value(samples, "tp_canary_age_seconds", queue="ops") > 365 * 24 * 3600
    assert _value(samples, "tp_alerts_open", severity="critical") == 1
    assert _value(samples, "tp_alerts_open", severity="warning") == 0
    assert _value(samples, "tp_redis_memory_used_bytes") > 0
    assert _value(samples, "tp_redis_maxmemory_bytes") is not None
    assert _value(samples, "tp_postgres_replication_lag_seconds") == 0  # the test server is a primary
    # django-prometheus' own metrics are still served beside the platform's.
    assert any(name.startswith("django_http_requests") for name, _ in samples)


@pytest.mark.django_db
def test_a_scrape_with_redis_unreachable_still_answers_with_what_the_database_tells(client):
    closed = f"redis://127.0.0.1:{_free_port()}/0"

    with override_settings(REDIS_URL=closed, CELERY_BROKER_URL=closed):
        response = client.get("/metrics")

    assert response.status_code == 200
    samples = _parse(response.content.decode())
    assert _value(samples, "tp_alerts_open", severity="critical") == 0
    assert _value(samples, "tp_kill_switch_engaged") is None
    assert _value(samples, "tp_queue_depth", queue="ingestion") is None


# --- recording -------------------------------------------------------------------------------------------------------
def _local(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db
def test_ingesting_lines_counts_frames_per_channel_family_and_bounds_garbled_channels():
    before_in = _local("tp_frames_in_total", source="uw_ws", channel="price")
    before_bad = _local("tp_frames_quarantined_total", source="uw_ws", channel="other")
    lines = [
        frames.line("price:SPY", frames.price()),
        frames.line("price:QQQ", frames.price("QQQ")),
        frames.line("Bogus Channel!", {}),
    ]

    ingest_lines(lines=lines, source="uw_ws")

    assert _local("tp_frames_in_total", source="uw_ws", channel="price") - before_in == 2
    assert _local("tp_frames_quarantined_total", source="uw_ws", channel="other") - before_bad == 1
    assert metrics.source_label("session-2026-11-20.ndjson.gz") == "other"
    assert metrics.channel_label("gex_strike:SPY") == "gex_strike"


@pytest.mark.django_db
def test_eager_task_runs_and_dead_letters_are_counted():
    task = {"task": "ops.canary", "stage": "ops", "outcome": "success"}
    before_runs, before_dead = _local("tp_tasks_total", **task), _local("tp_dead_letters_total")

    celery_app.tasks["ops.canary"].delay()  # in process (the suite's autouse fixture)
    dead_letter_record(task_name="x.y", task_id="t", args=[], kwargs={}, exception="boom")

    assert _local("tp_tasks_total", **task) - before_runs == 1
    assert _local("tp_dead_letters_total") - before_dead == 1


# --- the metrics directory -------------------------------------------------------------------------------------------
def test_a_fresh_process_replaces_an_inherited_default_directory_with_its_own_emptied_one(monkeypatch, tmp_path):
    base = tmp_path / metrics_dir.SUBDIR
    mine = base / str(os.getpid())
    mine.mkdir(parents=True)
    (mine / "counter_1.db").write_bytes(b"stale")
    gone = base / "999999999"  # no such pid: an owner killed without its exit handler
    gone.mkdir()
    inherited = str(base / "12345")
    monkeypatch.setenv("TP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(metrics_dir.ENV, inherited)
    monkeypatch.setenv(metrics_dir.DEFAULT_ENV, inherited)

    path = metrics_dir.metrics_dir_prepare()

    assert path == mine and os.environ[metrics_dir.ENV] == str(mine) == os.environ[metrics_dir.DEFAULT_ENV]
    assert list(mine.iterdir()) == []
    assert not gone.exists()


def test_a_directory_chosen_by_the_operator_is_used_as_is_and_never_emptied(monkeypatch, tmp_path):
    chosen = tmp_path / "shared"
    chosen.mkdir()
    (chosen / "counter_1.db").write_bytes(b"theirs")
    monkeypatch.setenv(metrics_dir.ENV, str(chosen))
    monkeypatch.delenv(metrics_dir.DEFAULT_ENV, raising=False)

    assert metrics_dir.metrics_dir_prepare() == chosen
    assert (chosen / "counter_1.db").read_bytes() == b"theirs"


def test_a_metrics_port_already_taken_is_logged_and_the_process_goes_on(caplog):
    from apps.ops.exporter import metrics_endpoint_start

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        assert metrics_endpoint_start(port=port, address="127.0.0.1") is None

    assert any(r.levelname == "ERROR" and f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)
    assert metrics_endpoint_start(port=0) is None  # 0: not served


@pytest.mark.django_db
def test_an_order_reaching_a_terminal_state_is_counted_after_its_commit(django_capture_on_commit_callbacks):
    from apps.execution import services as execution
    from apps.execution.models import OrderStatus
    from apps.risk.services import signal_review
    from tests.risk.factories import SignalFactory

    decision = signal_review(signal_id=SignalFactory().signal_id)
    order = execution._order_get_or_create(
        decision=decision,
        signal=decision.signal,
        trade=None,
        leg="entry",
        attempt=1,
        side="buy",
        quantity=decision.quantity,
        limit_price=decision.limit_price,
        broker_name="paper",
    )
    before = _local("tp_order_outcomes_total", outcome="cancelled")

    with django_capture_on_commit_callbacks(execute=True):
        execution.order_transition(order=order, to_status=OrderStatus.SUBMITTED)
        execution.order_transition(order=order, to_status=OrderStatus.CANCELLED)

    assert _local("tp_order_outcomes_total", outcome="cancelled") - before == 1


@pytest.mark.django_db
def test_a_discord_post_released_late_observes_its_lateness_per_tier():
    from datetime import timedelta

    from apps.core import clock
    from apps.distribution import services as distribution
    from tests.distribution.conftest import SESSION_START, schedule_trade, tiers_configure, trade_like

    tiers_configure({})  # local sink
    clock.set_simulated(SESSION_START)
    schedule_trade("entry", trade_like(1))
    labels = {"channel": "discord", "tier": "premium"}
    before_count = _local("tp_delivery_lag_seconds_count", **labels)
    before_sum = _local("tp_delivery_lag_seconds_sum", **labels)

    clock.advance_to(SESSION_START + timedelta(seconds=45))
    distribution.posts_release_due()

    assert _local("tp_delivery_lag_seconds_count", **labels) - before_count == 1
    assert _local("tp_delivery_lag_seconds_sum", **labels) - before_sum == pytest.approx(45, abs=0.01)


@pytest.mark.django_db
def test_claude_calls_count_their_input_and_output_tokens_per_kind(settings):
    from apps.commentary.services.calls import claude_call
    from apps.core.standins.anthropic import AnthropicStandin

    standin = AnthropicStandin().start()
    try:
        settings.ANTHROPIC_API_KEY = "sk-ant-test-standin"
        settings.ANTHROPIC_BASE_URL = standin.base_url
        before = (
            _local("tp_ai_tokens_total", kind="report", direction="input"),
            _local("tp_ai_tokens_total", kind="report", direction="output"),
        )

        answer = claude_call(purpose="report", ref="metrics-test", system="You write.", prompt="Say hi.", max_tokens=50)
    finally:
        standin.stop()

    assert _local("tp_ai_tokens_total", kind="report", direction="input") - before[0] == answer.completion.input_tokens
    assert (
        _local("tp_ai_tokens_total", kind="report", direction="output") - before[1] == answer.completion.output_tokens
    )
    assert answer.completion.input_tokens > 0
