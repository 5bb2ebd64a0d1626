"""``bench ingest``: option-trade frames from the socket stand-in to committed rows, beside COPY alone.

The benchmark runs the live ingestion path as deployed, on one machine: the Unusual Whales stand-in (in this process)
sends ``option_trades`` frames over a real websocket to ``manage.py uw_stream`` (a subprocess joined to the
market-wide ``option_trades`` channel), which batches them into ``ingestion.ingest_batch`` tasks on the Celery
``ingestion`` queue, consumed by one worker subprocess that writes PostgreSQL (``uw_option_trades``, one
``uw_raw_batches`` archive row per batch) and Redis.  In the same run it measures:

* **phase A, throughput**: ``frames`` frames as fast as the listener takes them; ``frames_per_s`` is
  ``frames / (the instant the last row was seen committed - the first frame sent)``;
* **phase B, lag**: frames at a fixed rate (5,000/s by default); the lag of each trade (commit wall time minus the
  frame's ``created_at``, stamped by the stand-in at sending) comes from the workers' own ``uw:ingest:lag_ms``
  histogram, read as p50/p99 by linear interpolation inside its buckets;
* **phase C, COPY alone**: the rows phase A committed, exported with ``COPY (SELECT …) TO STDOUT`` and timed going
  back in with ``COPY … FROM STDIN`` into the emptied table (``copy_rows_per_s``, median of repeats), also with the
  raw archive blobs of those rows (``copy_rows_plus_archive_per_s``): the floor the pipeline is compared to.

The database and the Redis db are scratch: wiped first, and the command refuses to run unless told so.
"""

from __future__ import annotations

import io
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, cast

from django.conf import settings
from django.db import connection, transaction
from tqdm import tqdm

from apps.core import calendar, clock
from apps.core.bench import (
    ROOT,
    BenchError,
    celery_worker_argv,
    check_preconditions,
    database_url,
    processes_stop,
    wipe_state,
)
from apps.core.store import get_redis
from apps.ingestion.models import OptionTrade, RawBatch
from apps.ingestion.services import LAG_BUCKETS_MS, LAG_HISTOGRAM_KEY
from apps.ingestion.uw.standin.server import FirehoseRun, UWStandin
from apps.ingestion.uw.stream import STATE_KEY

TRADES = OptionTrade._meta.db_table
BATCHES = RawBatch._meta.db_table
POLL_S = 0.1
STOP_GRACE_S = 15.0
TARGETS = {"frames_per_s": 20_000, "copy_ratio": 1 / 3, "lag_p99_ms_at_5000_per_s": 250}
# The columns a COPY of the committed rows carries: every one but the serial key, as the pipeline's INSERT writes.
TRADE_COLUMNS = tuple(f.column for f in OptionTrade._meta.concrete_fields if not f.primary_key)
BATCH_COLUMNS = tuple(f.column for f in RawBatch._meta.concrete_fields if not f.primary_key)


@dataclass(frozen=True)
class IngestBenchConfig:
    frames: int = 200_000  # phase A
    lag_rates: tuple[float, ...] = (5000.0,)  # phase B, frames per second; one run each
    lag_seconds: float = 20.0  # length of each phase B run
    batch_frames: int = 4000  # UW_STREAM_BATCH_FRAMES of the listener (its default)
    batch_ms: int = 20  # UW_STREAM_BATCH_MS of the listener
    pool: str = "solo"  # the worker's Celery pool: solo or prefork (concurrency 1 either way)
    warmup_frames: int = 2000
    templates: int = 256  # distinct session trades the frames are copies of (fresh id and created_at each)
    copy_repeats: int = 3
    commit_timeout_s: float = 300.0
    day: date | None = None  # the session day the trade templates come from (default: the last trading day)
    seed: int = 7

    def check(self) -> None:
        if self.frames <= 0 or self.lag_seconds <= 0 or any(r <= 0 for r in self.lag_rates):
            raise BenchError("frames, lag seconds and lag rates must be positive")
        if self.batch_frames <= 0 or self.batch_ms <= 0 or self.templates <= 0 or self.copy_repeats <= 0:
            raise BenchError("batch frames, batch ms, templates and copy repeats must be positive")
        if self.pool not in ("solo", "prefork"):
            raise BenchError(f"pool must be solo or prefork, not {self.pool!r}")


@dataclass
class _Phase:
    frames: int
    first_send_ms: int
    done_ms: int
    run: FirehoseRun
    listener_done_ms: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return max(0.001, (self.done_ms - self.first_send_ms) / 1000)


# --- figures ------------------------------------------------------------------------------------------------------


def histogram_percentile(histogram: Mapping[str, int], q: float) -> float:
    """The q-th percentile (0-100) of the lag histogram: linear inside the bucket that holds the rank.

    Bucket ``b`` holds lags in (previous bound, b] ms; the ``inf`` bucket has no upper bound, so a rank falling
    there reads as the last finite bound."""
    counts = [int(histogram.get(str(bound), 0)) for bound in LAG_BUCKETS_MS]
    overflow = int(histogram.get("inf", 0))
    total = sum(counts) + overflow
    if total == 0:
        raise BenchError("the lag histogram is empty: no trade was recorded as committed")
    rank = total * q / 100.0
    below, lower = 0, 0.0
    for bound, count in zip(LAG_BUCKETS_MS, counts, strict=True):
        if count and below + count >= rank:
            return lower + (bound - lower) * max(0.0, rank - below) / count
        below += count
        lower = float(bound)
    return float(LAG_BUCKETS_MS[-1])


def lag_figures(histogram: Mapping[str, str], *, rate: float) -> dict[str, Any]:
    counts = {key: int(value) for key, value in histogram.items()}
    n = counts.get("count", 0)
    return {
        "rate": rate,
        "n": n,
        "p50": round(histogram_percentile(counts, 50), 1),
        "p99": round(histogram_percentile(counts, 99), 1),
        "mean": round(counts.get("sum", 0) / n, 1) if n else None,
        "over_last_bucket": counts.get("inf", 0),
        "histogram": {key: value for key, value in counts.items() if key not in ("count", "sum")},
    }


# --- processes ----------------------------------------------------------------------------------------------------


@contextmanager
def _processes(
    cfg: IngestBenchConfig, standin: UWStandin, log_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """One ingestion worker and one ``uw_stream`` listener, stopped on exit (also on errors and Ctrl-C)."""
    env = {
        **os.environ,
        "TP_TASKS_EAGER": "0",
        "LOG_LEVEL": "warning",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "UW_WS_URL": standin.ws_url,
        "UW_API_TOKEN": standin.token,
        "UW_CHANNELS": "option_trades",
        "UW_STREAM_BATCH_FRAMES": str(cfg.batch_frames),
        "UW_STREAM_BATCH_MS": str(cfg.batch_ms),
    }
    worker_cmd = celery_worker_argv(
        "-Q",
        "ingestion",
        "-c",
        "1",
        "--prefetch-multiplier",
        "1",
        "-P",
        cfg.pool,
        "-n",
        f"bench-ingest-{os.getpid()}@%h",
    )
    listener_cmd = [sys.executable, "manage.py", "uw_stream", "--no-backfill"]
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    with ExitStack() as logs:
        try:
            for name, command in (("worker", worker_cmd), ("listener", listener_cmd)):
                log = cast(IO[bytes], logs.enter_context((log_dir / f"bench-ingest-{name}.log").open("wb")))
                procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            yield procs[0], procs[1]
        finally:
            processes_stop(
                procs[::-1], grace_s=STOP_GRACE_S
            )  # the listener first: it flushes its last batch to the worker


def _check_alive(procs: tuple[subprocess.Popen[bytes], ...], log_dir: Path) -> None:
    for proc, name in zip(procs, ("worker", "listener"), strict=False):
        if proc.poll() is not None:
            raise BenchError(
                f"the {name} exited with code {proc.returncode}: see {log_dir / f'bench-ingest-{name}.log'}"
            )


# --- measuring ----------------------------------------------------------------------------------------------------


def trade_templates(cfg: IngestBenchConfig) -> list[dict[str, Any]]:
    """The first ``templates`` option trades of a generated session: several tickers and many contracts."""
    from apps.ingestion.sessions.generator import generate_session

    day = cfg.day or calendar.previous_trading_day(calendar.market_day(clock.now()))
    trades: list[dict[str, Any]] = []
    for obj in generate_session(day, cfg.seed, noise=0.0):
        frame = obj.get("frame")
        if not isinstance(frame, list) or len(frame) != 2 or not str(frame[0]).startswith("option_trades:"):
            continue
        payload = frame[1]
        if isinstance(payload, dict) and isinstance(payload.get("underlying_symbol"), str) and payload.get("id"):
            trades.append(payload)
            if len(trades) >= cfg.templates:
                break
    if not trades:
        raise BenchError(f"the session generated for {day} has no option trades")
    return trades


def committed() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TRADES}")  # noqa: S608 - a model's table name
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def listener_state() -> dict[str, str]:
    return cast(dict[str, str], get_redis().hgetall(STATE_KEY))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def send_and_wait(
    standin: UWStandin,
    payloads: list[dict[str, Any]],
    *,
    frames: int,
    rate: float | None,
    base: int,
    procs: tuple[subprocess.Popen[bytes], ...],
    cfg: IngestBenchConfig,
    log_dir: Path,
    label: str,
    quiet: bool,
) -> _Phase:
    """Firehose ``frames`` frames and poll the committed count every ``POLL_S`` until every one is a row."""
    listener_base = int(listener_state().get("frames") or 0)
    future = standin.firehose_submit(payloads, frames=frames, rate=rate)
    deadline = time.monotonic() + cfg.commit_timeout_s + (frames / rate if rate else 0)
    done = 0
    listener_done_ms: int | None = None
    with tqdm(total=frames, desc=label, unit="frame", file=sys.stderr, disable=quiet, leave=False) as bar:
        while True:
            time.sleep(POLL_S)
            count = committed() - base
            now_ms = _now_ms()
            bar.update(count - done)
            done = count
            if listener_done_ms is None and int(listener_state().get("frames") or 0) - listener_base >= frames:
                listener_done_ms = now_ms
            if count >= frames and future.done():
                break
            _check_alive(procs, log_dir)
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{label}: only {count} of {frames} frames were committed within the timeout "
                    f"(listener state: {listener_state()})"
                )
    run = future.result()
    if run.first_send_ms is None or run.frames != frames or run.connections != 1:
        raise BenchError(f"{label}: the stand-in did not send to exactly one listener: {run}")
    if done != frames:
        raise BenchError(f"{label}: {done} rows committed for {frames} frames sent")
    return _Phase(
        frames=frames, first_send_ms=run.first_send_ms, done_ms=now_ms, run=run, listener_done_ms=listener_done_ms
    )


def _copy_out(sql: str) -> io.BytesIO:
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(f"COPY ({sql}) TO STDOUT", buffer)
    buffer.seek(0)
    return buffer


def _timed_copy(loads: list[tuple[str, tuple[str, ...], bytes]]) -> float:
    """Empty the tables, then COPY the buffers in and commit; the seconds of the COPYs and the commit."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(table for table, _, _ in loads)}")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for table, columns, data in loads:
            quoted = ", ".join(f'"{c}"' for c in columns)
            cursor.cursor.copy_expert(f"COPY {table} ({quoted}) FROM STDIN", io.BytesIO(data))
    return time.perf_counter() - started


def copy_alone(frames: int, repeats: int) -> dict[str, Any]:
    """Phase C: phase A's rows (and their archive blobs) written back with COPY alone, ``repeats`` times each."""
    trade_cols = ", ".join(f'"{c}"' for c in TRADE_COLUMNS)
    batch_cols = ", ".join(f'"{c}"' for c in BATCH_COLUMNS)
    trades = _copy_out(f"SELECT {trade_cols} FROM {TRADES} ORDER BY id LIMIT {int(frames)}").getvalue()  # noqa: S608
    # The archive rows that hold those trades: the batches in commit order until they cover ``frames`` frames.
    batches = _copy_out(
        f"SELECT {batch_cols} FROM (SELECT *, sum(frames) OVER (ORDER BY id) AS covered FROM {BATCHES}) b "  # noqa: S608
        f"WHERE covered - frames < {int(frames)} ORDER BY id"
    ).getvalue()
    rows_only = [_timed_copy([(TRADES, TRADE_COLUMNS, trades)]) for _ in range(repeats)]
    with_archive = [
        _timed_copy([(TRADES, TRADE_COLUMNS, trades), (BATCHES, BATCH_COLUMNS, batches)]) for _ in range(repeats)
    ]
    copied = committed()
    if copied != frames:
        raise BenchError(f"COPY alone wrote {copied} rows, expected {frames}")
    return {
        "rows": frames,
        "rows_bytes": len(trades),
        "archive_rows": batches.count(b"\n"),
        "archive_bytes": len(batches),
        "repeats": repeats,
        "rows_seconds": [round(s, 4) for s in rows_only],
        "rows_plus_archive_seconds": [round(s, 4) for s in with_archive],
        "copy_rows_per_s": round(frames / statistics.median(rows_only)),
        "copy_rows_plus_archive_per_s": round(frames / statistics.median(with_archive)),
    }


def _server_versions() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        row = cursor.fetchone()
    info = cast(dict[str, Any], get_redis().info("server"))
    return {"postgres": str(row[0]) if row else "?", "redis": str(info.get("redis_version", "?"))}


def _batch_stats(since_id: int) -> tuple[int, float]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), coalesce(avg(frames), 0) FROM {BATCHES} WHERE id > %s", [since_id])  # noqa: S608
        row = cursor.fetchone()
    return (int(row[0]), float(row[1])) if row else (0, 0.0)


def _last_batch_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {BATCHES}")  # noqa: S608
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def bench_ingest(
    cfg: IngestBenchConfig,
    *,
    scratch: bool,
    log_dir: Path,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = log or (lambda message: None)
    cfg.check()
    try:
        check_preconditions(scratch=scratch)
    except BenchError as exc:
        raise BenchError(
            str(exc).replace("bench pipeline", "bench ingest").replace("bench-pipeline", "bench-ingest")
        ) from None
    wipe_state()
    payloads = trade_templates(cfg)
    redis = get_redis()
    connection.close()
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {**asdict(cfg), "day": cfg.day.isoformat() if cfg.day else None, "poll_s": POLL_S},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), **_server_versions()},
        "targets": dict(TARGETS),
    }
    standin = UWStandin(lines=[], speed=None).start()
    try:
        with _processes(cfg, standin, log_dir) as procs:
            say("waiting for the listener to join option_trades")
            joined = standin.wait_for(lambda: any(ch == "option_trades" for _, ch in standin.joins), timeout=60)
            if not joined:
                _check_alive(procs, log_dir)
                raise BenchError("the listener did not join option_trades within 60 s: see var/bench-ingest-*.log")

            def run(frames: int, rate: float | None, label: str) -> _Phase:
                return send_and_wait(
                    standin,
                    payloads,
                    frames=frames,
                    rate=rate,
                    base=committed(),
                    procs=procs,
                    cfg=cfg,
                    log_dir=log_dir,
                    label=label,
                    quiet=quiet,
                )

            say(f"warm-up: {cfg.warmup_frames} frames")
            run(cfg.warmup_frames, None, "warm-up")

            # phase A: throughput
            batch_id = _last_batch_id()
            say(f"phase A: {cfg.frames} frames as fast as possible")
            a = run(cfg.frames, None, "throughput")
            batches, mean_batch = _batch_stats(batch_id)
            result.update(
                frames=a.frames,
                elapsed_s=round(a.elapsed_s, 3),
                frames_per_s=round(a.frames / a.elapsed_s),
                throughput={
                    # The sender waits while the listener is 4 MB behind (plus the socket buffers): an upper
                    # bound of the listener's read pace, close to it when the run is much longer than 4 MB.
                    "firehose_elapsed_s": round(a.run.elapsed_s, 3),
                    "firehose_send_per_s": round(a.run.rate),
                    # From the listener's own frame count in Redis, written once a second: +-1 s resolution.
                    "listener_all_read_s": (
                        round((a.listener_done_ms - a.first_send_ms) / 1000, 3) if a.listener_done_ms else None
                    ),
                    "listener_read_per_s": (
                        round(a.frames * 1000 / (a.listener_done_ms - a.first_send_ms))
                        if a.listener_done_ms and a.listener_done_ms > a.first_send_ms
                        else None
                    ),
                    "worker_batches": batches,
                    "mean_batch_frames": round(mean_batch, 1),
                    "committed_rows": a.frames,
                },
            )

            # phase B: lag at fixed rates
            lags = []
            for rate in cfg.lag_rates:
                frames = max(1, int(rate * cfg.lag_seconds))
                redis.delete(LAG_HISTOGRAM_KEY)
                batch_id = _last_batch_id()
                say(f"phase B: {frames} frames at {rate:g}/s")
                b = run(frames, rate, f"lag @{rate:g}/s")
                time.sleep(0.3)  # the lag is recorded right after each commit: let the last batch's land
                figures = lag_figures(cast(dict[str, str], redis.hgetall(LAG_HISTOGRAM_KEY)), rate=rate)
                if figures["n"] != frames:
                    raise BenchError(f"lag @{rate:g}/s: {figures['n']} lags recorded for {frames} frames")
                batches, mean_batch = _batch_stats(batch_id)
                figures.update(
                    frames=frames,
                    sent_per_s=round(b.run.rate),
                    committed_per_s=round(frames / b.elapsed_s),
                    worker_batches=batches,
                    mean_batch_frames=round(mean_batch, 1),
                )
                lags.append(figures)
            result["lag_ms"] = lags[0]
            result["lag_ms_runs"] = lags
            result["lag_bucket_bounds_ms"] = list(LAG_BUCKETS_MS)
            # The listener writes its state once a second: wait for the one that counts every frame sent.
            sent_total = cfg.warmup_frames + cfg.frames + sum(lag["frames"] for lag in lags)

            def settled() -> bool:
                state = listener_state()
                read = int(state.get("frames") or 0)
                return read >= sent_total and int(state.get("frames_published") or 0) == read

            standin.wait_for(settled, timeout=5)
            state = listener_state()
            result["frames_sent_total"] = sent_total
            result["listener"] = {
                key: int(state.get(key) or 0)
                for key in ("frames", "frames_published", "batches_published", "dropped_frames", "reconnects")
            }
    finally:
        standin.stop()

    # phase C: COPY alone, same database, the rows phase A wrote
    say(f"phase C: COPY of {cfg.frames} rows alone")
    copy = copy_alone(cfg.frames, cfg.copy_repeats)
    result["copy"] = copy
    result["copy_rows_per_s"] = copy["copy_rows_per_s"]
    result["copy_rows_plus_archive_per_s"] = copy["copy_rows_plus_archive_per_s"]
    result["copy_ratio"] = round(result["frames_per_s"] / copy["copy_rows_per_s"], 3)
    result["copy_plus_archive_ratio"] = round(result["frames_per_s"] / copy["copy_rows_plus_archive_per_s"], 3)
    result["targets_met"] = {
        "frames_per_s": result["frames_per_s"] >= TARGETS["frames_per_s"],
        "copy_ratio": result["copy_ratio"] >= TARGETS["copy_ratio"],
        "lag_p99_ms_at_5000_per_s": next(
            (lag["p99"] < TARGETS["lag_p99_ms_at_5000_per_s"] for lag in lags if lag["rate"] == 5000), None
        ),
    }
    # The analytics tasks the batches enqueued have no consumer here: drop them with the rest of the scratch db.
    redis.flushdb()
    return result
