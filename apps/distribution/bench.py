"""``manage.py bench distribution``: how late each tier gets its posts, through the real processes.

A Celery worker on the distribution queue and beat with the database scheduler run as subprocesses (the compose
commands); the Discord stand-in runs here on loopback and enforces Discord's per-webhook bucket (5 requests per 2 s).
Posts are announced at a steady rate to every tier; each post's lateness is ``sent_at - due_at`` as the platform
recorded it, cross-checked against when the stand-in received it.  The baseline, measured in the same run, is one
direct webhook send to the same stand-in (no queue, no schedule): the cost of a delivery itself.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.bench import (
    ROOT,
    BenchError,
    celery_worker_argv,
    check_preconditions,
    database_url,
    describe,
    processes_stop,
    wipe_state,
)
from apps.core.standins.discord import DiscordStandin

BUCKET = (5, 2.0)  # Discord's observed per-webhook limit: 5 requests per 2 s


@dataclass(frozen=True)
class DistributionBenchConfig:
    posts: int = 150  # announcements; each goes to every tier
    rate: float = 2.0  # announcements per second (within the per-webhook bucket)
    tiers: tuple[tuple[str, int], ...] = (("premium", 0), ("standard", 10), ("free", 30))
    baseline_sends: int = 100
    timeout_s: float = 600.0


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "TP_TASKS_EAGER": "0",
        "LOG_LEVEL": "warning",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
    }


def _start(log_dir: Path) -> list[subprocess.Popen[bytes]]:
    worker = celery_worker_argv("-Q", "distribution", "-c", "2", "-n", f"bench-distribution-{os.getpid()}@%h")
    beat = [
        worker[0],
        "-m",
        "celery",
        "-A",
        "tradingplatform",
        "beat",
        "-l",
        "warning",
        "-S",
        "django_celery_beat.schedulers:DatabaseScheduler",
        "--pidfile=",
    ]
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    for name, argv in (("worker", worker), ("beat", beat)):
        log = (log_dir / f"bench-distribution-{name}.log").open("wb")
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT))
    return procs


def _wait_for_worker(procs: list[subprocess.Popen[bytes]], timeout_s: float = 90.0) -> None:
    from tradingplatform.celery import app

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise BenchError("a bench process exited at start: see var/bench-distribution-*.log")
        if app.control.ping(timeout=1.0):
            return
    raise BenchError(f"the distribution worker did not answer within {timeout_s} s")


def _baseline(discord: DiscordStandin, sends: int) -> list[float]:
    """Direct webhook sends to the stand-in (its bucket off): the delivery cost without queue or schedule."""
    from apps.distribution.discord import messages
    from apps.distribution.discord.transport import webhook_send

    payload = messages.report_message(title="baseline", text="a direct send", tier="baseline")
    samples = []
    for _ in range(sends):
        started = time.perf_counter()
        webhook_send(url=discord.url("0/baseline"), payload=payload)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def bench_distribution(
    *, cfg: DistributionBenchConfig, scratch: bool, log_dir: Path, progress: Callable[[int], Any] | None = None
) -> dict[str, Any]:
    from apps.core.beat import declared_periodic_tasks
    from apps.distribution import services
    from apps.distribution.discord import messages
    from apps.distribution.models import DistributionPost, DistributionTier, PostKind
    from apps.ops.beat_schedules import periodic_tasks_sync
    from tradingplatform.celery import app

    check_preconditions(scratch=scratch)
    wipe_state()
    discord = DiscordStandin().start()
    procs: list[subprocess.Popen[bytes]] = []
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False  # this process schedules as the announce task does: sends go to the broker
    try:
        baseline = _baseline(discord, cfg.baseline_sends)
        discord.rate_limit(*BUCKET)
        for position, (name, delay) in enumerate(cfg.tiers):
            DistributionTier.objects.create(
                name=name, delay_seconds=delay, webhook_url=discord.url(f"{position + 1}/{name}"), position=position
            )
        periodic_tasks_sync(
            declarations=[d for d in declared_periodic_tasks() if d.task == "distribution.release_due"],
            actor="bench distribution",
        )
        procs = _start(log_dir)
        _wait_for_worker(procs)

        started = time.monotonic()
        for i in range(cfg.posts):
            payloads = {
                name: messages.report_message(title=f"bench post {i}", text=f"benchmark announcement {i}", tier=name)
                for name, _ in cfg.tiers
            }
            services.post_schedule_payloads(kind=PostKind.REPORT, ref=f"bench:{i}", trade_id=None, payloads=payloads)
            next_at = started + (i + 1) / cfg.rate
            time.sleep(max(next_at - time.monotonic(), 0))

        total = cfg.posts * len(cfg.tiers)
        deadline = time.monotonic() + max(cfg.timeout_s, max(d for _, d in cfg.tiers) + 60)
        done = 0
        while time.monotonic() < deadline:
            sent = DistributionPost.objects.filter(status=DistributionPost.Status.SENT).count()
            if progress is not None and sent > done:
                progress(sent - done)
            done = sent
            if sent >= total:
                break
            if any(p.poll() is not None for p in procs):
                raise BenchError("a bench process died: see var/bench-distribution-*.log")
            time.sleep(0.5)
        else:
            raise BenchError(f"only {done} of {total} posts were sent within the time allowed")
    finally:
        app.conf.task_always_eager = eager
        processes_stop(procs)
        discord.stop()

    posts = list(DistributionPost.objects.values("tier", "ref", "due_at", "lateness_ms", "late"))
    received = {}
    for record in discord.delivered():
        tier = record.path.rsplit("/", 1)[-1]
        received[(tier, record.body["embeds"][0]["title"])] = record.received_at
    tiers: dict[str, Any] = {}
    for name, delay in cfg.tiers:
        mine = [p for p in posts if p["tier"] == name]
        lateness = [float(p["lateness_ms"] or 0) for p in mine]
        arrival = [
            (received[(name, f"bench post {p['ref'].split(':')[1]}")] - p["due_at"].timestamp()) * 1000 for p in mine
        ]
        tiers[name] = {
            "delay_seconds": delay,
            "lateness_ms": describe(lateness),
            "arrival_after_due_ms": describe(arrival),
            "late": sum(1 for p in mine if p["late"]),
            "early": sum(1 for a in arrival if a < -50),
        }
    base = describe(baseline)
    return {
        "config": {
            "posts": cfg.posts,
            "rate_per_s": cfg.rate,
            "tiers": dict(cfg.tiers),
            "webhook_bucket": {"requests": BUCKET[0], "window_s": BUCKET[1]},
            "sweep_interval_s": 5,
        },
        "tiers": tiers,
        "baseline_direct_send_ms": base,
        "p99_lateness_over_direct_send_p99": {
            name: round(t["lateness_ms"]["p99"] / base["p99"], 2) if base["p99"] else None for name, t in tiers.items()
        },
        "rate_limited_answers": sum(1 for r in discord.requests if r.status == 429),
        "median_of_tier_p99_ms": statistics.median(t["lateness_ms"]["p99"] for t in tiers.values()),
    }
