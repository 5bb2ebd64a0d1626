"""``manage.py kill_switch on|off|status [--flatten] --reason TEXT --by NAME``: the kill switch from a shell."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.risk.models import KillSwitchEvent
from apps.risk.selectors import broker_connected, kill_switch_is_on
from apps.risk.services import kill_switch_engage, kill_switch_release


class Command(BaseCommand):
    help = (
        "Engage (on), release (off) or show (status) the risk kill switch. 'on --flatten' also closes every open "
        "trade (risk.flatten_all on the execution queue). Each change is a history row and an audit log entry."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("on", "off", "status"))
        parser.add_argument("--flatten", action="store_true", help="with on: close every open trade as well")
        parser.add_argument("--reason", default="", help="why (required with on and off; kept in the audit log)")
        parser.add_argument("--by", default="", help="who (default: shell:<user>)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "status":
            self._status()
            return
        reason = options["reason"].strip()
        if not reason:
            raise CommandError(f"kill_switch {action} needs --reason")
        if options["flatten"] and action != "on":
            raise CommandError("--flatten goes with 'on' only")
        by = options["by"] or f"shell:{getpass.getuser()}"
        if action == "on":
            event = kill_switch_engage(by=by, reason=reason, flatten=options["flatten"])
            flattening = "; flattening every open trade (risk.flatten_all)" if event.flatten else ""
            self.stdout.write(f"kill switch ON by {by}: {reason}{flattening}")
        else:
            kill_switch_release(by=by, reason=reason)
            self.stdout.write(f"kill switch off by {by}: {reason}")

    def _status(self) -> None:
        connected, connection = broker_connected()
        self.stdout.write(f"kill switch {'ON' if kill_switch_is_on() else 'off'}")
        self.stdout.write(f"broker: {connection}" + ("" if connected else " -> reduce-only: no new entries"))
        latest = KillSwitchEvent.objects.order_by("-at", "-id").first()
        if latest is None:
            self.stdout.write("no kill switch events")
            return
        self.stdout.write(
            f"last change: {'engaged' if latest.engaged else 'released'} by {latest.by} at {latest.at.isoformat()}:"
            f" {latest.reason}"
        )
        if latest.flatten:
            if latest.flattened_at is None:
                self.stdout.write("flatten requested, not finished yet")
            else:
                left = ", ".join(t["option_symbol"] for t in latest.still_open) or "nothing"
                self.stdout.write(f"flattened at {latest.flattened_at.isoformat()}; left open: {left}")
