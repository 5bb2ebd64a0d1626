"""Run the TWS simulator and its HTTP control on loopback until SIGTERM/SIGINT (docs/tws_simulator.md)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.execution.brokers.base import BrokerQuote
from apps.execution.ib.simulator import ControlServer, TWSSimulator

logger = logging.getLogger(__name__)


def _platform_quotes() -> Callable[[str], BrokerQuote | None]:
    """The platform's recorded market (Redis hash, else the newest option trade), as the paper broker reads it.

    A Redis or database outage reads as "no quote" (orders rest) instead of ending the simulator's threads.
    """
    from django.db import DatabaseError, close_old_connections
    from redis.exceptions import RedisError

    from apps.execution.brokers.paper import PaperBroker

    broker = PaperBroker()

    def quote(key: str) -> BrokerQuote | None:
        try:
            return broker.quote(key)
        except (RedisError, DatabaseError) as exc:
            logger.warning("tws_sim: no platform quote for %s: %s", key, exc)
            close_old_connections()
            return None

    return quote


class Command(BaseCommand):
    help = "Serve a simulated TWS (the real socket protocol) and a JSON control API on loopback."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
        parser.add_argument("--port", type=int, default=7497, help="TWS API port (0: any free port)")
        parser.add_argument("--control-port", type=int, default=7498, help="HTTP control port (0: any free port)")
        parser.add_argument("--account", default="DU1234567", help="the account the simulator manages")
        parser.add_argument(
            "--quotes",
            choices=("book", "platform"),
            default="book",
            help="book: only quotes set through the control API; platform: the platform's recorded market",
        )
        parser.add_argument(
            "--clock", choices=("wall", "platform"), default="wall", help="wall clock or apps.core.clock.now"
        )
        parser.add_argument("--state", default=None, help="JSON file keeping orders, fills and positions across runs")

    def handle(self, *args: Any, **options: Any) -> None:
        quotes = _platform_quotes() if options["quotes"] == "platform" else None
        clock: Callable[[], datetime] | None = None
        if options["clock"] == "platform":
            from apps.core import clock as platform_clock

            clock = platform_clock.now
        state_path = Path(options["state"]) if options["state"] else None
        try:
            simulator = TWSSimulator(
                host=options["host"],
                port=options["port"],
                account=options["account"],
                quotes=quotes,
                clock=clock,
                state_path=state_path,
            ).start()
        except (ValueError, OSError) as exc:
            raise CommandError(f"cannot start the simulator: {exc}") from exc
        try:
            control = ControlServer(simulator, host=options["host"], port=options["control_port"]).start()
        except (ValueError, OSError) as exc:
            simulator.stop()
            raise CommandError(f"cannot start the control server: {exc}") from exc

        stopping = threading.Event()

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stderr.write(f"tws_sim: {signal.Signals(signum).name} received, closing connections")
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(
            f"tws_sim: TWS API on {simulator.host}:{simulator.port}, control http://{control.host}:{control.port}"
            f" (account {simulator.account}, quotes {options['quotes']}, clock {options['clock']})"
        )
        self.stdout.flush()
        try:
            # Waiting in short steps keeps the main thread responsive to the signal handlers.
            while not stopping.is_set():
                stopping.wait(0.5)
        finally:
            control.stop()
            simulator.stop()
