"""Serve a recorded session as a local Unusual Whales (socket + REST on one loopback port) until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ingestion.uw.standin import UWStandin


class Command(BaseCommand):
    help = "Serve a recorded session as a local Unusual Whales socket and REST API on 127.0.0.1 (docs/uw_standin.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="session file (NDJSON, .gz for gzip), e.g. from manage.py make_session")
        parser.add_argument("--port", type=int, default=8765, help="loopback port for both socket and REST (0: any)")
        parser.add_argument("--token", default="test-token", help="the token clients must present")
        parser.add_argument(
            "--speed", type=float, default=1.0, help="replay pace vs the recording (2 = twice as fast; 0 = flat out)"
        )
        parser.add_argument("--loop", action="store_true", help="replay again with shifted times and fresh ids")
        parser.add_argument("--rate-limit", type=int, default=120, help="REST requests allowed per rolling minute")
        parser.add_argument("--daily-limit", type=int, default=15000, help="REST requests allowed in total")

    def handle(self, *args: Any, **options: Any) -> None:
        session = Path(options["session"])
        if not session.is_file():
            raise CommandError(f"{session} is not a file")
        if options["speed"] < 0:
            raise CommandError("--speed must not be negative")
        try:
            standin = UWStandin(
                session,
                token=options["token"],
                port=options["port"],
                speed=options["speed"] or None,
                loop=options["loop"],
                requests_per_minute=options["rate_limit"],
                daily_limit=options["daily_limit"],
            )
            standin.start()
        except (ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc

        stopping = threading.Event()

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stderr.write(f"uw_standin: {signal.Signals(signum).name} received, closing connections")
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"ws:   {standin.ws_url}?token={options['token']}")
        self.stdout.write(f"http: {standin.api_url}/api/  (Authorization: Bearer {options['token']})")
        self.stdout.flush()
        # a timed wait, so the handler runs promptly; the server keeps serving REST after the session ends
        while not stopping.wait(0.5):
            continue
        standin.stop()
        sent = sum(standin.frames_sent.values())
        self.stdout.write(
            f"uw_standin: stopped; {standin.connections_opened} connections, {sent} frames sent, "
            f"{len(standin.requests)} REST requests"
        )
