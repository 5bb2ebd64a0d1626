"""``manage.py live_sim``: the live path on this machine, with the Unusual Whales stand-in in place of UW.

A recorded session is played by the loopback stand-in (socket + REST) on a loop; ``manage.py uw_stream`` reads it
exactly as it would read UW, and a Celery worker runs every stage.  The console shows what the listener reads and
what lands in PostgreSQL, every few seconds, until ``--seconds`` pass or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from apps.core import calendar, clock
from apps.core.bench import database_url, processes_stop
from apps.ingestion.models import FlowAlert, OptionTrade, PriceTick, QuarantinedFrame
from apps.ingestion.uw.standin import UWStandin
from apps.ingestion.uw.stream import stream_state

STAGE_QUEUES = "ingestion,analytics,signals,risk,execution,distribution,commentary,ops"


class Command(BaseCommand):
    help = "Show the live ingestion path: UW stand-in -> uw_stream -> Celery workers -> PostgreSQL and Redis."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--session", type=Path, help="session file to play (default: generated for --date)")
        parser.add_argument("--date", type=date.fromisoformat, help="session day (default: the last trading day)")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--speed", type=float, default=10.0, help="recorded seconds played per wall second")
        parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (0: until Ctrl-C)")
        parser.add_argument("--every", type=float, default=5.0, help="seconds between status lines")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
            raise CommandError(
                "the live path needs PostgreSQL and Redis: set DATABASE_URL and REDIS_URL (make run-live-sim does)"
            )
        if options["speed"] <= 0 or options["every"] <= 0 or options["seconds"] < 0:
            raise CommandError("--speed and --every must be positive, --seconds zero or more")
        session = options["session"] or self._session(options)
        if not session.exists():
            raise CommandError(f"no session file at {session}")
        log_dir = Path(settings.DATA_DIR)
        log_dir.mkdir(parents=True, exist_ok=True)
        with UWStandin(session, speed=options["speed"], loop=True) as uw:
            env = self._environment(uw)
            procs = [
                self._spawn(
                    [sys.executable, "-m", "celery", "-A", "tradingplatform", "worker", "-Q", STAGE_QUEUES, "-c", "2"],
                    env,
                    log_dir / "live-sim-worker.log",
                ),
                self._spawn([sys.executable, "manage.py", "uw_stream"], env, log_dir / "live-sim-uw_stream.log"),
            ]
            self.stdout.write(
                f"stand-in {uw.ws_url} playing {session.name} at {options['speed']:g}x (looping); "
                f"logs in {log_dir}/live-sim-*.log; Ctrl-C stops"
            )
            try:
                self._watch(uw, procs, seconds=options["seconds"], every=options["every"])
            except KeyboardInterrupt:
                self.stdout.write("stopping")
            finally:
                processes_stop(procs, grace_s=20)
            self._status(uw, final=True)

    def _session(self, options: dict[str, Any]) -> Path:
        day = options["date"] or calendar.previous_trading_day(calendar.market_day(clock.now()))
        # From just before the open: the pre-market has prices only, the open brings the option tape and alerts.
        path = Path(settings.DATA_DIR) / "sessions" / f"live-{day}-seed{options['seed']}.ndjson.gz"
        if not path.exists():
            call_command("make_session", date=day.isoformat(), seed=options["seed"], out=str(path), start="09:29")
        return path

    def _environment(self, uw: UWStandin) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            UW_WS_URL=uw.ws_url,
            UW_API_URL=uw.api_url,
            UW_API_TOKEN=uw.token,
            TP_TASKS_EAGER="0",
            PYTHONUNBUFFERED="1",
        )
        return env

    def _spawn(self, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("ab")
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=handle, stderr=subprocess.STDOUT)

    def _watch(self, uw: UWStandin, procs: list[subprocess.Popen[bytes]], *, seconds: float, every: float) -> None:
        started = time.monotonic()
        while seconds == 0 or time.monotonic() - started < seconds:
            time.sleep(every)
            for proc in procs:
                if proc.poll() is not None:
                    raise CommandError(f"{proc.args!r} exited with {proc.returncode}; see its log")
            self._status(uw)

    def _status(self, uw: UWStandin, *, final: bool = False) -> None:
        state = stream_state()
        with contextlib.suppress(Exception):
            connection.close()  # counts from a fresh connection: the worker commits in another process
        line = (
            f"{'final' if final else 'live '}: listener {state.get('status', '?')}, "
            f"{state.get('frames', 0)} frames read, {state.get('frames_published', 0)} published, "
            f"{state.get('reconnects', 0)} reconnects | stored: {OptionTrade.objects.count()} trades, "
            f"{FlowAlert.objects.count()} alerts, {PriceTick.objects.count()} prices, "
            f"{QuarantinedFrame.objects.count()} quarantined | stand-in at "
            f"{datetime.fromtimestamp(uw.cursor_ms / 1000, tz=calendar.NEW_YORK):%Y-%m-%d %H:%M:%S} New York"
        )
        self.stdout.write(line)
