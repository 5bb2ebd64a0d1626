"""``manage.py live_sim``: the live path on this machine, with the Unusual Whales stand-in in place of UW.

A recorded session is played by the loopback stand-in (socket + REST) on a loop; ``manage.py uw_stream`` reads it
exactly as it would read UW, and Celery workers run every stage.  With ``--broker ib`` (the default) orders go
through the IB adapter: ``manage.py ib_listener`` owns the connection to ``manage.py tws_sim``, a TWS simulator on
loopback that trades against the recorded market.  The console shows what the listener reads, what lands in
PostgreSQL and what the simulator did, every few seconds, until ``--seconds`` pass or Ctrl-C.

Every process shares one clock (``TP_CLOCK_OFFSET_SECONDS``): it reads the session's first frame when the stand-in
starts.  The session is played ``--speed`` times faster by moving each frame's times (and its payload's) onto that
clock, compressed, with fresh ids, so clock, frames and quotes agree and a second run on the same database is new
data rather than duplicates.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any, cast

import orjson
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from apps.core import calendar, clock, queues, store
from apps.core.bench import celery_worker_argv, database_url, processes_stop
from apps.ingestion.models import FlowAlert, OptionTrade, PriceTick, QuarantinedFrame
from apps.ingestion.uw.standin import UWStandin
from apps.ingestion.uw.standin.timeline import LAP_GAP_MS, load_frames, relap_payload
from apps.ingestion.uw.stream import stream_state

BROKER_STATE_KEY = "execution:broker:state"  # written by the IB listener: connected "1"/"0"
STANDIN_TOKEN = "live-sim-token"
READY_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a loopback http:// URL we built)
        return orjson.loads(response.read())


class TWSSimReport:
    """What the TWS simulator says it did, read from its HTTP control (one request per report)."""

    def __init__(self, control_url: str) -> None:
        self.control_url = control_url

    def healthy(self) -> bool:
        try:
            return bool(_get_json(f"{self.control_url}/health").get("ok"))
        except (OSError, ValueError):
            return False

    def orders(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], _get_json(f"{self.control_url}/orders"))

    def executions(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], _get_json(f"{self.control_url}/executions"))

    def positions(self) -> dict[str, Any]:
        return cast(dict[str, Any], _get_json(f"{self.control_url}/positions"))


class Command(BaseCommand):
    help = (
        "Show the live path: UW stand-in -> uw_stream -> Celery workers -> PostgreSQL and Redis, "
        "orders through ib_listener to a TWS simulator (--broker ib) or the paper broker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--session", type=Path, help="session file to play (default: generated for --date)")
        parser.add_argument("--date", type=date.fromisoformat, help="session day (default: the last trading day)")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--start", type=dtime.fromisoformat, default=dtime(9, 29), help="New York time the generated session starts"
        )
        parser.add_argument("--speed", type=float, default=10.0, help="recorded seconds played per wall second")
        parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (0: until Ctrl-C)")
        parser.add_argument("--every", type=float, default=5.0, help="seconds between status lines")
        parser.add_argument(
            "--broker",
            choices=("paper", "ib"),
            default="ib",
            help="ib: the IB adapter, ib_listener and a TWS simulator on loopback; paper: the paper broker",
        )

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
        frames = load_frames(session)
        if not frames:
            raise CommandError(f"{session} holds no frames")
        self.broker = options["broker"]
        self.log_dir = Path(settings.DATA_DIR)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.first_order_pk = self._last_order_pk()
        self.sim: TWSSimReport | None = None
        self.timeline = (frames[0].received_at, frames[0].received_at, LAP_GAP_MS, 1.0)  # set when the lines are made
        self.settled = (0, 0)  # filled orders of this run: in the database, at the simulator
        # The platform clock reads the session's first frame now; the stand-in starts on it once the rest is up.
        offset = int(frames[0].received_at / 1000 - time.time())
        previous_offset = settings.TP_CLOCK_OFFSET_SECONDS
        settings.TP_CLOCK_OFFSET_SECONDS = offset
        procs: list[subprocess.Popen[bytes]] = []
        try:
            uw_port = _free_port()
            env = self._environment(uw_port, offset)
            started = time.monotonic()
            if self.broker == "ib":
                procs += self._start_ib(env)
            procs += self._start_workers(env)
            lines = self._lines_on_clock(frames, speed=options["speed"])
            with UWStandin(lines, token=STANDIN_TOKEN, speed=1.0, loop=True, port=uw_port) as uw:
                stream = self._spawn([sys.executable, "manage.py", "uw_stream"], env, "uw_stream")
                procs.append(stream)
                self.stdout.write(
                    f"stand-in {uw.ws_url} playing {session.name} at {options['speed']:g}x (looping), broker "
                    f"{self.broker}; logs in {self.log_dir}/live-sim-*.log; Ctrl-C stops"
                )
                try:
                    self._watch(uw, procs, seconds=options["seconds"], every=options["every"])
                except KeyboardInterrupt:
                    self.stdout.write("stopping")
                finally:
                    processes_stop([stream], grace_s=20)
                agreed = self._settle() if self.broker == "ib" else True
                self._status(uw, final=True)
                summary = self._summary()
        finally:
            processes_stop(procs, grace_s=20)
            settings.TP_CLOCK_OFFSET_SECONDS = previous_offset
        self.stdout.write(summary)
        self.stdout.write(f"ran {time.monotonic() - started:.1f} s")
        if not agreed:
            raise CommandError("the database and the TWS simulator disagree on the number of filled orders")

    # --- set-up -----------------------------------------------------------------------------------------------------
    def _session(self, options: dict[str, Any]) -> Path:
        day = options["date"] or calendar.previous_trading_day(calendar.market_day(clock.now()))
        start = options["start"]
        # From just before the open by default: the pre-market has prices only, the open brings the tape and alerts.
        path = Path(settings.DATA_DIR) / "sessions" / f"live-{day}-seed{options['seed']}-{start:%H%M}.ndjson.gz"
        if not path.exists():
            call_command(
                "make_session", date=day.isoformat(), seed=options["seed"], out=str(path), start=f"{start:%H:%M}"
            )
        return path

    def _environment(self, uw_port: int, offset: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            # Known before the stand-in starts, so the workers' REST client (gap backfill) can be started first.
            UW_WS_URL=f"ws://127.0.0.1:{uw_port}/socket",
            UW_API_URL=f"http://127.0.0.1:{uw_port}",
            UW_API_TOKEN=STANDIN_TOKEN,
            TP_TASKS_EAGER="0",
            TP_CLOCK_OFFSET_SECONDS=str(offset),
            BROKER=self.broker,
            PYTHONUNBUFFERED="1",
        )
        if self.broker == "ib":
            env.update(IB_HOST="127.0.0.1", IB_PORT=str(_free_port()), IB_CLIENT_ID=str(settings.IB_CLIENT_ID))
        return env

    def _lines_on_clock(self, frames: list[Any], *, speed: float) -> list[str]:
        """The session on the platform clock from now, ``speed`` times faster: every frame's ``received_at`` and its
        payload's times moved by the same amount, ids made fresh for this run."""
        base_ms = int(clock.now().timestamp() * 1000)
        first = frames[0].received_at
        run = int(time.time())  # a lap number no earlier run used: fresh ids
        lines = []
        for frame in frames:
            at = base_ms + int((frame.received_at - first) / speed)
            payload = relap_payload(frame.payload, run, at - frame.received_at)
            lines.append(orjson.dumps({"received_at": at, "frame": [frame.channel, payload]}).decode())
        lap_ms = int((frames[-1].received_at - first) / speed) + LAP_GAP_MS
        self.timeline = (first, base_ms, lap_ms, speed)
        return lines

    def _spawn(self, command: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        handle = (self.log_dir / f"live-sim-{name}.log").open("ab")
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=handle, stderr=subprocess.STDOUT)

    def _start_workers(self, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
        # The compose layout: execution has its own worker with one slot, so one order's broker events are applied
        # in the order TWS sent them (and a submit waiting for the IB listener never blocks the other stages).
        stages = ",".join(q for q in queues.ALL if q != queues.EXECUTION)
        tag = f"live-sim-{os.getpid()}"
        return [
            self._spawn(celery_worker_argv("-Q", stages, "-c", "2", "-n", f"{tag}-stages@%h"), env, "worker"),
            self._spawn(
                celery_worker_argv("-Q", queues.EXECUTION, "-c", "1", "-n", f"{tag}-execution@%h"),
                env,
                "worker-execution",
            ),
        ]

    def _start_ib(self, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
        control_port = _free_port()
        redis = store.get_redis()
        redis.delete(BROKER_STATE_KEY)  # a state left by an earlier run must not read as this listener's
        simulator = self._spawn(
            [
                sys.executable,
                "manage.py",
                "tws_sim",
                "--port",
                env["IB_PORT"],
                "--control-port",
                str(control_port),
                "--quotes",
                "platform",
                "--clock",
                "platform",
            ],
            env,
            "tws_sim",
        )
        procs = [simulator]
        try:
            self.sim = TWSSimReport(f"http://127.0.0.1:{control_port}")
            self._wait_until(self.sim.healthy, procs, "the TWS simulator's /health")
            procs.append(self._spawn([sys.executable, "manage.py", "ib_listener"], env, "ib_listener"))
            self._wait_until(
                lambda: redis.hget(BROKER_STATE_KEY, "connected") == "1", procs, "ib_listener's connection to TWS"
            )
        except BaseException:
            processes_stop(procs, grace_s=20)
            raise
        self.stdout.write(
            f"TWS simulator on 127.0.0.1:{env['IB_PORT']} (control {self.sim.control_url}); ib_listener connected"
        )
        return procs

    def _wait_until(self, ready: Any, procs: list[subprocess.Popen[bytes]], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            for proc in procs:
                if proc.poll() is not None:
                    raise CommandError(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                raise CommandError(f"no {what} within {READY_TIMEOUT_S:g} s; see {self.log_dir}/live-sim-*.log")
            time.sleep(0.2)

    # --- watching ---------------------------------------------------------------------------------------------------
    def _watch(self, uw: UWStandin, procs: list[subprocess.Popen[bytes]], *, seconds: float, every: float) -> None:
        started = time.monotonic()
        while seconds == 0 or time.monotonic() - started < seconds:
            time.sleep(every)
            for proc in procs:
                if proc.poll() is not None:
                    raise CommandError(f"{proc.args!r} exited with {proc.returncode}; see its log")
            self._status(uw)

    def _recorded(self, cursor_ms: int) -> datetime:
        """The recorded time the stand-in has reached (its cursor is on the platform clock, laps included)."""
        first, base, lap_ms, speed = self.timeline
        elapsed_ms = max(0, cursor_ms - base) % lap_ms
        return datetime.fromtimestamp((first + elapsed_ms * speed) / 1000, tz=calendar.NEW_YORK)

    def _status(self, uw: UWStandin, *, final: bool = False) -> None:
        state = stream_state()
        with contextlib.suppress(Exception):
            connection.close()  # counts from a fresh connection: the worker commits in another process
        line = (
            f"{'final' if final else 'live '}: listener {state.get('status', '?')}, "
            f"{state.get('frames', 0)} frames read, {state.get('frames_published', 0)} published, "
            f"{state.get('reconnects', 0)} reconnects | stored: {OptionTrade.objects.count()} trades, "
            f"{FlowAlert.objects.count()} alerts, {PriceTick.objects.count()} prices, "
            f"{QuarantinedFrame.objects.count()} quarantined | clock "
            f"{datetime.fromtimestamp(uw.cursor_ms / 1000, tz=calendar.NEW_YORK):%Y-%m-%d %H:%M:%S} New York, "
            f"session at {self._recorded(uw.cursor_ms):%H:%M:%S}"
        )
        if self.sim is not None:
            line += " | " + self._ib_status()
        self.stdout.write(line)

    def _ib_status(self) -> str:
        assert self.sim is not None
        connected = store.get_redis().hget(BROKER_STATE_KEY, "connected") == "1"
        try:
            orders, fills, positions = self.sim.orders(), self.sim.executions(), self.sim.positions()
        except (OSError, ValueError) as exc:
            return f"IB {'connected' if connected else 'DISCONNECTED'}, simulator unreachable ({exc})"
        open_positions = sum(1 for held in positions.values() if str(held.get("position", "0")) not in ("0", "0.0"))
        filled = sum(1 for order in orders if order.get("status") == "Filled")
        return (
            f"IB {'connected' if connected else 'DISCONNECTED'}: {len(orders)} orders at TWS ({filled} filled), "
            f"{len(fills)} fills, {open_positions} open positions"
        )

    # --- the end ----------------------------------------------------------------------------------------------------
    def _last_order_pk(self) -> int:
        from apps.execution.models import Order

        return int(Order.objects.order_by("-pk").values_list("pk", flat=True).first() or 0)

    def _run_orders(self) -> Any:
        from apps.execution.models import Order

        return Order.objects.filter(pk__gt=self.first_order_pk)

    def _filled_counts(self) -> tuple[int, int]:
        """Filled orders of this run in the database, and at the simulator."""
        from apps.execution.models import Order

        assert self.sim is not None
        with contextlib.suppress(Exception):
            connection.close()
        in_db = self._run_orders().filter(broker="ib", status=Order.Status.FILLED).count()
        at_sim = sum(1 for order in self.sim.orders() if order.get("status") == "Filled")
        return in_db, at_sim

    def _settle(self) -> bool:
        """Once the stream has stopped, give the fills on their way (ib_order_event tasks) time to land; True when the
        database and the simulator agree on the number of filled orders."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            in_db, at_sim = self._filled_counts()
            if in_db == at_sim or time.monotonic() > deadline:
                self.settled = (in_db, at_sim)
                return in_db == at_sim
            time.sleep(0.5)

    def _summary(self) -> str:
        from apps.execution.models import Fill

        orders = self._run_orders()
        by = Counter(f"{broker} {status}" for broker, status in orders.values_list("broker", "status"))
        text = [
            "orders in the database: "
            + (", ".join(f"{key} {count}" for key, count in sorted(by.items())) or "none")
            + f"; fills {Fill.objects.filter(order__in=orders).count()}"
        ]
        if self.sim is not None:
            in_db, at_sim = self.settled
            sim_orders = self.sim.orders()
            text.append(
                f"TWS simulator: {len(sim_orders)} orders, {at_sim} filled, {len(self.sim.executions())} fills; "
                + (
                    f"database and simulator agree: {in_db} filled orders"
                    if in_db == at_sim
                    else f"DISAGREE: {in_db} filled orders in the database, {at_sim} at the simulator"
                )
            )
        return "\n".join(text)
