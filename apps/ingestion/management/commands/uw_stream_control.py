"""``manage.py uw_stream_control pause|resume|status``: the listener's pause flag and its state, from a shell."""

from __future__ import annotations

import getpass
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.ingestion.uw.stream import stream_pause_set, stream_state

# The listener reports every second; a report this old means it is gone or hung.
STALE_AFTER_SECONDS = 30


class Command(BaseCommand):
    help = "Pause or resume the Unusual Whales listener (it closes the socket while paused), or show its state."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("pause", "resume", "status"))
        parser.add_argument("--reason", default="", help="why (kept in the audit log)")
        parser.add_argument("--actor", default="", help="who (default: the shell user)")
        parser.add_argument(
            "--check",
            action="store_true",
            help=f"with status: exit 1 unless the listener reported within {STALE_AFTER_SECONDS} s (a healthcheck)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action in ("pause", "resume"):
            actor = options["actor"] or f"shell:{getpass.getuser()}"
            stream_pause_set(paused=action == "pause", actor=actor, reason=options["reason"])
            self.stdout.write(f"uw_stream {'paused' if action == 'pause' else 'resumed'} by {actor}")
            return
        state = stream_state()
        if not state.get("status"):
            self.stdout.write("uw_stream has not reported any state (not started against this Redis)")
            if options["check"]:
                raise SystemExit(1)
            return
        age = time.time() - float(state.get("updated_at") or 0)
        if options["check"] and (age > STALE_AFTER_SECONDS or state["status"] == "stopped"):
            self.stdout.write(f"uw_stream is {state['status']}, last report {age:.1f} s ago: unhealthy")
            raise SystemExit(1)
        self.stdout.write(
            f"status {state['status']} (reported {age:.1f} s ago, pid {state.get('pid')}), paused={state['paused']}\n"
            f"frames {state.get('frames')} read, {state.get('frames_published')} published, "
            f"{state.get('buffered_frames')} buffered, {state.get('dropped_frames')} dropped; "
            f"reconnects {state.get('reconnects')}, stalls {state.get('stalls')}; "
            f"last error: {state.get('last_error') or '-'}"
        )
        for name, figures in state["channels"].items():
            self.stdout.write(
                f"  {name:<24} {figures['frames']:>10} frames  {figures['rate_per_s']:>8}/s  "
                f"last {figures['last_frame_age_s']} s ago"
            )
