"""``bench pipeline``: latency from a frame's arrival to the order reaching the broker, through real Celery workers.

The benchmark starts its own worker processes (the compose layout: one worker for every stage but execution, one
execution worker with concurrency 1) against the configured Redis broker and PostgreSQL database, then measures in
the same run:

* ``bare_chain_ms``: a bare chain of five tasks over the five stage queues (four hops) that does nothing else —
  the floor any pipeline on this broker pays;
* ``pipeline_ms``: frames of a generated session window sent as the live listener would (``ingestion.ingest_batch``
  with ``received_at`` stamped at sending), through analytics, signals, risk and execution; for every order the
  latency is ``order.submitted_at - signal.as_of`` (the arrival time of the newest frame the signal was computed
  from, to the instant the paper broker received the order).

Every process shares one clock offset (``TP_CLOCK_OFFSET_SECONDS``) that puts the platform's clock inside the
session window, so market-hours rules apply as they would live.  The database and Redis db are scratch: they are
wiped first, and the command refuses to run unless told so.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from apps.core import calendar, clock, queues
from apps.core.store import get_redis

ROOT = Path(__file__).resolve().parents[2]
BARE_CHAIN_QUEUES = [queues.INGESTION, queues.ANALYTICS, queues.SIGNALS, queues.RISK, queues.EXECUTION]


class BenchError(RuntimeError):
    """The benchmark cannot run or measured nothing; the message says why."""


@dataclass(frozen=True)
class PipelineBenchConfig:
    day: date
    seed: int = 11
    window_start: dtime = dtime(10, 0)
    window_minutes: int = 20
    speedup: float = 10.0
    send_interval_s: float = 0.05
    bare_chains: int = 200
    worker_concurrency: int = 2
    drain_timeout_s: float = 120.0


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        raise BenchError("no samples")
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def describe(samples: list[float]) -> dict[str, float | int]:
    return {
        "n": len(samples),
        "p50": round(statistics.median(samples), 3),
        "p99": round(percentile(samples, 99), 3),
        "max": round(max(samples), 3),
        "mean": round(statistics.fmean(samples), 3),
    }


def check_preconditions(*, scratch: bool) -> None:
    if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
        raise BenchError("bench pipeline needs DATABASE_URL (PostgreSQL) and REDIS_URL (the real broker)")
    if not scratch:
        raise BenchError(
            f"bench pipeline wipes database {settings.DATABASES['default']['NAME']!r} and Redis {settings.REDIS_URL}; "
            "pass --scratch to confirm they are scratch (make bench-pipeline uses a dedicated database)"
        )


def wipe_state() -> None:
    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    get_redis().flushdb()


def database_url() -> str:
    """The URL of the database this process is connected to (under pytest, the test database), for the workers."""
    from urllib.parse import quote

    db = connection.settings_dict
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    address = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return f"postgres://{auth + '@' if auth else ''}{address}/{db['NAME']}"


def celery_worker_argv(*extra: str) -> list[str]:
    """A quiet Celery worker of this project, as compose runs it (no gossip, mingle or heartbeat: benchmarks and
    tests start a few on one machine and want neither the chatter nor its CPU)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tradingplatform",
        "worker",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "warning",
        *extra,
    ]


@contextmanager
def workers(*, offset_seconds: int, concurrency: int, log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The compose worker layout as subprocesses, always stopped on exit."""
    from apps.core.bench_setup import BENCH_ENV

    env = {
        **os.environ,
        **BENCH_ENV,
        "TP_TASKS_EAGER": "0",
        "TP_CLOCK_OFFSET_SECONDS": str(offset_seconds),
        "LOG_LEVEL": "warning",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
    }
    stage_queues = ",".join(q for q in queues.ALL if q != queues.EXECUTION)
    commands = [
        ["-Q", stage_queues, "-c", str(concurrency), "-n", f"bench-stages-{os.getpid()}@%h"],
        ["-Q", queues.EXECUTION, "-c", "1", "-n", f"bench-execution-{os.getpid()}@%h"],
    ]
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, extra in enumerate(commands):
            log = (log_dir / f"bench-worker-{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    celery_worker_argv(*extra),
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield procs
    finally:
        processes_stop(procs)


def processes_stop(procs: list[subprocess.Popen[bytes]], *, grace_s: float = 15.0) -> None:
    """SIGTERM every process still running, wait up to ``grace_s`` for all of them, then kill the ones left."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run_bare_chain(run_key: str, *, timeout_s: float = 30.0) -> float:
    """Send one bare chain and wait for its end; returns its latency in ms."""
    from apps.core.tasks import bench_hop

    redis = get_redis()
    bench_hop.apply_async(args=(run_key, time.time(), BARE_CHAIN_QUEUES[1:]), queue=BARE_CHAIN_QUEUES[0])
    popped = redis.blpop([run_key], timeout=timeout_s)
    if popped is None:
        raise BenchError(f"a bare chain did not finish within {timeout_s} s: are the workers consuming?")
    return float(popped[1])


def wait_for_workers(procs: list[subprocess.Popen[bytes]], *, timeout_s: float = 60.0) -> None:
    """Ready when a bare chain has gone through every stage queue."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise BenchError("a bench worker exited at start: see var/bench-worker-*.log")
        try:
            run_bare_chain("bench:warmup", timeout_s=5)
            return
        except BenchError:
            continue
    raise BenchError(f"the workers did not consume within {timeout_s} s")


def queue_depth() -> int:
    redis = get_redis()
    return sum(redis.llen(q) for q in queues.ALL)


def session_lines(cfg: PipelineBenchConfig) -> list[tuple[int, dict[str, Any]]]:
    """(received_at ms, line object) of the generated window, in order."""
    from apps.ingestion.sessions import generate_session

    start = datetime.combine(cfg.day, cfg.window_start, tzinfo=calendar.NEW_YORK)
    end = start + timedelta(minutes=cfg.window_minutes)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    lines = []
    for obj in generate_session(cfg.day, cfg.seed, noise=0.0):
        at = obj.get("received_at")
        if isinstance(at, int) and start_ms <= at < end_ms:
            lines.append((at, obj))
    if not lines:
        raise BenchError(f"the generated session has no frames between {start:%H:%M} and {end:%H:%M} New York")
    return lines


PAYLOAD_TIME_FIELDS = ("executed_at", "created_at", "start_time", "end_time", "time", "timestamp")


def restamp(obj: dict[str, Any], received_ms: int) -> dict[str, Any]:
    """The line as a live listener would see it now: ``received_at`` is the sending instant and the payload's own
    times move by the same amount, so every stage sees fresh data, as live (replayed faster than recorded, the
    recorded times would otherwise run ahead of the clock)."""
    shift_ms = received_ms - obj["received_at"]
    channel, payload = obj["frame"]
    if isinstance(payload, dict):
        payload = dict(payload)
        for key in PAYLOAD_TIME_FIELDS:
            value = payload.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                payload[key] = value + shift_ms
            elif isinstance(value, str) and "T" in value:
                try:
                    moved = datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(milliseconds=shift_ms)
                except ValueError:
                    continue
                payload[key] = moved.isoformat()
    return {"received_at": received_ms, "frame": [channel, payload]}


def send_session(
    lines: list[tuple[int, dict[str, Any]]], cfg: PipelineBenchConfig, progress: Callable[[int], None]
) -> tuple[int, int]:
    """Send the frames at ``speedup`` times their recorded pace, stamping ``received_at`` as a listener would."""
    from apps.ingestion.tasks import ingest_batch

    first = lines[0][0]
    wall_start = time.monotonic()
    sent = batches = 0
    i = 0
    while i < len(lines):
        elapsed_recorded_ms = (time.monotonic() - wall_start) * cfg.speedup * 1000
        batch = []
        stamp = int(clock.now().timestamp() * 1000)
        while i < len(lines) and lines[i][0] - first <= elapsed_recorded_ms:
            batch.append(orjson.dumps(restamp(lines[i][1], stamp)).decode())
            i += 1
        if batch:
            ingest_batch.apply_async(args=(batch, "bench"))
            sent += len(batch)
            batches += 1
            progress(len(batch))
        time.sleep(cfg.send_interval_s)
    return sent, batches


def wait_for_drain(timeout_s: float) -> float:
    """Wait until every stage queue is empty and no order appeared for a while; returns the wait in seconds."""
    from apps.execution.models import Order

    started = time.monotonic()
    last_orders, quiet_since = -1, time.monotonic()
    while time.monotonic() - started < timeout_s:
        orders = Order.objects.count()
        if queue_depth() == 0 and orders == last_orders:
            if time.monotonic() - quiet_since > 3:
                return time.monotonic() - started
        else:
            quiet_since = time.monotonic()
        last_orders = orders
        time.sleep(0.25)
    raise BenchError(f"the pipeline did not drain within {timeout_s} s (queue depth {queue_depth()})")


def pipeline_latencies() -> list[float]:
    from apps.execution.models import Order

    samples = []
    # Entry orders only: an exit is triggered by a later mark, not by the frames its signal came from.
    entries = Order.objects.filter(leg=Order.Leg.ENTRY, submitted_at__isnull=False, signal__isnull=False)
    for submitted_at, as_of in entries.values_list("submitted_at", "signal__as_of"):
        assert submitted_at is not None  # submitted_at__isnull=False above
        samples.append((submitted_at - as_of).total_seconds() * 1000)
    return samples


def bench_pipeline(
    cfg: PipelineBenchConfig, *, scratch: bool, log_dir: Path, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    from apps.core.bench_setup import relax_limits_for_bench

    check_preconditions(scratch=scratch)
    if calendar.session_for(cfg.day) is None:
        raise BenchError(f"{cfg.day} is not a trading day")
    wipe_state()
    relax_limits_for_bench()
    lines = session_lines(cfg)
    window_start = datetime.fromtimestamp(lines[0][0] / 1000, UTC)
    # Every process's clock reads "now" inside the session window, a few seconds before its first frame.
    offset = int((window_start - datetime.now(UTC)).total_seconds()) - 5
    previous_offset = settings.TP_CLOCK_OFFSET_SECONDS
    settings.TP_CLOCK_OFFSET_SECONDS = offset
    connection.close()
    try:
        with workers(offset_seconds=offset, concurrency=cfg.worker_concurrency, log_dir=log_dir) as procs:
            wait_for_workers(procs)
            bare = [run_bare_chain(f"bench:bare:{os.getpid()}") for _ in range(cfg.bare_chains)]
            started = time.monotonic()
            sent, batches = send_session(lines, cfg, progress or (lambda n: None))
            send_s = time.monotonic() - started
            drain_s = wait_for_drain(cfg.drain_timeout_s)
            samples = pipeline_latencies()
    finally:
        settings.TP_CLOCK_OFFSET_SECONDS = previous_offset
    if not samples:
        raise BenchError("no order reached the broker: the pipeline produced nothing to measure")
    from apps.execution.models import Order
    from apps.signals.models import Signal

    pipeline = describe(samples)
    bare_stats = describe(bare)
    return {
        "benchmark": "pipeline",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "session": {
            "day": cfg.day.isoformat(),
            "seed": cfg.seed,
            "window_start_ny": cfg.window_start.isoformat(),
            "window_minutes": cfg.window_minutes,
            "speedup": cfg.speedup,
        },
        "frames_sent": sent,
        "batches_sent": batches,
        "send_seconds": round(send_s, 2),
        "drain_seconds": round(drain_s, 2),
        "signals": Signal.objects.count(),
        "orders": Order.objects.count(),
        "entry_orders": len(samples),
        "pipeline_ms": pipeline,
        "bare_chain_ms": bare_stats,
        "ratio": {
            "p50": round(pipeline["p50"] / bare_stats["p50"], 2) if bare_stats["p50"] else None,
            "p99": round(pipeline["p99"] / bare_stats["p99"], 2) if bare_stats["p99"] else None,
        },
        "workers": {"stages_concurrency": cfg.worker_concurrency, "execution_concurrency": 1},
        "cpu_count": os.cpu_count(),
    }
