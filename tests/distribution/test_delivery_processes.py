"""Delivery with the real processes: a Celery worker on the distribution queue and beat with the database scheduler
(the compose commands), the Discord stand-in enforcing a rate limit, a storm of 429s and a worker process killed
while it sends.  Each tier must receive each post exactly once, never before its delay, and late by little.

Tier delays are scaled down (0 / 8 / 16 s instead of 0 / 60 / 300) so the test takes seconds, not minutes: the
mechanism (a row per post with its due time, short-countdown sends, the beat sweep as backstop) is the same.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from apps.core.beat import PeriodicDeclaration
from apps.core.standins.discord import DiscordStandin, Scripted
from apps.distribution.models import DistributionLog, DistributionPost, DistributionTier
from apps.ops.beat_schedules import periodic_tasks_sync
from tests.distribution.conftest import trade_like
from tests.ops.compose_file import REPO, compose_command
from tests.ops.test_processes import _local, _process_env, _stop
from tradingplatform.celery import app as celery_app

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TIERS = (("premium", 0), ("standard", 8), ("free", 16))
TRADES = 12
Status = DistributionPost.Status


def _schedule(trade) -> None:
    from apps.distribution import services
    from apps.distribution.discord import messages

    payloads = {
        tier: messages.trade_message(kind="entry", trade=trade, signal=trade.signal, tier=tier) for tier, _ in TIERS
    }
    services.post_schedule_payloads(kind="entry", ref=f"trade:{trade.id}", trade_id=trade.id, payloads=payloads)


def _pid_with_local_port(port: int, candidates: list[int]) -> int | None:
    """The process among ``candidates`` that owns the TCP socket bound to local ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for pid in candidates:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return pid
        except OSError:
            continue
    return None


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def processes(tmp_path) -> Iterator[dict[str, subprocess.Popen]]:
    if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    periodic_tasks_sync(
        declarations=[
            PeriodicDeclaration(
                app="distribution",
                name="distribution: release due posts",
                task="distribution.release_due",
                interval_seconds=5,
            )
        ],
        actor="tests.distribution.processes",
    )
    env = _process_env()
    worker = [*_local(compose_command("worker")[:3]), "worker", "-Q", "distribution", "-c", "2", "--pool", "prefork"]
    commands = {"worker": worker, "beat": _local(compose_command("beat"))}
    started: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands.items():
            with (tmp_path / f"{name}.log").open("wb") as out:
                started[name] = subprocess.Popen(
                    argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
        yield started
    finally:
        _stop(list(started.values()))
        for name in commands:
            log = tmp_path / f"{name}.log"
            if log.exists():
                print(f"--- {name} ---\n{log.read_text(errors='replace')[-3000:]}")


def _wait_ready(worker: subprocess.Popen, timeout: float = 90) -> None:
    """The worker consumes once its pool children exist and a ping answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker exited while starting"
        if len(_children(worker.pid)) >= 2 and celery_app.control.ping(timeout=1.0):
            return
        time.sleep(0.5)
    pytest.fail("the worker did not start")


def test_each_tier_gets_each_post_once_at_its_delay_through_429s_and_a_worker_killed_mid_send(processes):
    discord = DiscordStandin().start()
    try:
        DistributionTier.objects.all().delete()
        for position, (tier, delay) in enumerate(TIERS):
            DistributionTier.objects.create(
                name=tier, delay_seconds=delay, webhook_url=discord.url(f"{position + 1}/{tier}"), position=position
            )
        discord.rate_limit(5, 2.0)  # Discord's per-webhook bucket
        # The storm: the premium webhook's first six answers are 429s, with a header or only a body retry_after.
        discord.script(
            "1/premium",
            *[Scripted(429, {"retry_after": 0.4, "global": False}, {"Retry-After": "0.4"}) for _ in range(4)],
            Scripted(429, {"retry_after": 0.3, "global": False}),
            Scripted(429, {"retry_after": 0.3, "global": False}),
        )
        # The standard tier's first post is held before Discord processes it: the worker sending it is killed.
        discord.hold_next("2/standard", 4.0)
        _wait_ready(processes["worker"])

        celery_app.conf.task_always_eager = False  # the test schedules like the announce task: sends go to Redis
        try:
            for trade_id in range(1, TRADES + 1):
                _schedule(trade_like(trade_id))
                time.sleep(0.4)
            assert discord.holding.wait(timeout=30), "the standard tier's first post never reached Discord"
            worker = processes["worker"]
            victim = _pid_with_local_port(discord.held_client_port, _children(worker.pid))
            assert victim is not None, "no worker process holds the connection being held"
            os.kill(victim, signal.SIGKILL)

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if DistributionPost.objects.filter(status=Status.SENT).count() == TRADES * len(TIERS):
                    break
                time.sleep(0.5)
        finally:
            celery_app.conf.task_always_eager = True

        posts = list(DistributionPost.objects.order_by("tier", "trade_id"))
        assert [p.status for p in posts] == [Status.SENT] * TRADES * len(TIERS), [
            (p.tier, p.trade_id, p.status, p.last_error) for p in posts if p.status != Status.SENT
        ]
        for position, (tier, _) in enumerate(TIERS):
            delivered = discord.delivered(f"{position + 1}/{tier}")
            footers = sorted(r.body["embeds"][0]["footer"]["text"] for r in delivered)
            # Exactly once: as many messages as trades, each trade once.
            assert len(footers) == TRADES and len(set(footers)) == TRADES, (tier, footers)
            by_trade = {int(r.body["embeds"][0]["footer"]["text"].split("#")[1].split()[0]): r for r in delivered}
            for post in (p for p in posts if p.tier == tier):
                # Never before its delay: Discord got it no earlier than the post was due.
                assert by_trade[post.trade_id].received_at >= post.due_at.timestamp() - 0.05, (tier, post.trade_id)
            lateness = [p.lateness_ms for p in posts if p.tier == tier]
            print(f"{tier}: lateness p50 {statistics.median(lateness)} ms, max {max(lateness)} ms")
            assert not any(p.late for p in posts if p.tier == tier)
        standard = [p.lateness_ms for p in posts if p.tier == "standard"]
        free = [p.lateness_ms for p in posts if p.tier == "free"]
        # Unhindered tiers are on time: the median send is within a second of its due time.
        assert statistics.median(free) < 1000
        assert statistics.median(standard) < 1000

        outcomes = list(DistributionLog.objects.values_list("tier", "outcome"))
        assert outcomes.count(("premium", "rate_limited")) >= 6
        # The killed send: its redelivered task took its own claim back and sent it; Discord dropped the held one.
        assert ("standard", "reclaimed") in outcomes
        assert [r.status for r in discord.requests_to("2/standard")].count(0) == 1
    finally:
        discord.stop()
