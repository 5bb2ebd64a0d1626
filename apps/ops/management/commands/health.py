"""Print the platform's health: database, Redis, queue depths, the worker canary, the kill switch, the UW listener and
the trading broker (with Interactive Brokers: its connection, reconciliation issues, alerts and stuck commands)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.ops.selectors import (
    CANARY_STALE_AFTER_SECONDS,
    IB_COMMAND_STUCK_AFTER_SECONDS,
    IB_STATE_STALE_AFTER_SECONDS,
    HealthSnapshot,
    health_snapshot,
)

# The listener writes its state every second; a report older than this means it is not running (or hung).
STREAM_STALE_AFTER_SECONDS = 30


class Command(BaseCommand):
    help = (
        "Show database and Redis reachability, Redis memory, Celery queue depths, the ops canary's age and the kill "
        "switch, the UW listener and the trading broker. Exits with status 1 when the database, Redis or the broker is "
        "unreachable or, with BROKER=ib, when Interactive Brokers is disconnected or has reported no state (usable as "
        "a container healthcheck), and with --require-fresh-canary also when the canary is stale."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        parser.add_argument(
            "--require-fresh-canary",
            action="store_true",
            help="also exit with status 1 when the ops canary is missing or stale (beat or the workers stopped)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        snapshot = health_snapshot()
        if options["json"]:
            self.stdout.write(json.dumps(snapshot.as_dict(), sort_keys=True))
        else:
            self.stdout.write(self._text(snapshot))
        if not snapshot.ok or (options["require_fresh_canary"] and snapshot.canary_stale):
            raise SystemExit(1)

    def _text(self, snapshot: HealthSnapshot) -> str:
        def state(ok: bool, error: str) -> str:
            return "ok" if ok else f"UNREACHABLE ({error})"

        lines = [
            f"health at {snapshot.at}: {'OK' if snapshot.ok else 'FAILING'}",
            f"  database     {state(snapshot.database_ok, snapshot.database_error)}",
            f"  redis        {state(snapshot.redis_ok, snapshot.redis_error)}"
            + (", in-process store (REDIS_URL is not set)" if snapshot.redis_in_process else "")
            + (f", used_memory {snapshot.redis_used_memory} bytes" if snapshot.redis_used_memory is not None else ""),
            f"  broker       {snapshot.broker} {state(snapshot.broker_ok, snapshot.broker_error)}",
        ]
        if snapshot.queue_depths:
            lines.append("  queues       " + ", ".join(f"{q}={n}" for q, n in snapshot.queue_depths.items()))
        else:
            lines.append("  queues       (depths are read only when the broker is Redis)")
        if snapshot.canary_error:
            lines.append(f"  canary       UNREADABLE ({snapshot.canary_error})")
        elif snapshot.canary_at is None:
            lines.append("  canary       MISSING (no worker has run ops.canary yet; is beat running?)")
        else:
            verdict = f"STALE (older than {CANARY_STALE_AFTER_SECONDS} s)" if snapshot.canary_stale else "fresh"
            lines.append(f"  canary       {verdict}: {snapshot.canary_age_seconds} s ago at {snapshot.canary_at}")
        kill = {True: "ON", False: "off", None: "unknown (Redis unreachable)"}[snapshot.kill_switch_on]
        lines.append(f"  kill switch  {kill}")
        if snapshot.dead_letters_last_24h is not None:
            count = snapshot.dead_letters_last_24h
            lines.append(f"  dead letters {count} in the last 24 h (admin: Operations > Dead letters)")
        stream = snapshot.uw_stream
        if not stream:
            lines.append("  uw stream    not reporting (manage.py uw_stream has not run against this Redis)")
        else:
            stale = " STALE" if stream["report_age_seconds"] > STREAM_STALE_AFTER_SECONDS else ""
            lines.append(
                f"  uw stream    {stream['status']}{' (paused)' if stream['paused'] else ''}, reported "
                f"{stream['report_age_seconds']} s ago{stale}; {stream['frames']} frames, {stream['buffered_frames']} "
                f"buffered, {stream['dropped_frames']} dropped, {stream['reconnects']} reconnects"
                + (f"; last error: {stream['last_error']}" if stream["last_error"] else "")
            )
        if snapshot.uw_drift_open:
            lines.append(
                f"  uw drift     {snapshot.uw_drift_open} unacknowledged drift event(s) "
                "(admin: Ingestion > Drift events; docs/ingestion_drift.md)"
            )
        lines.extend(self._ib_lines(snapshot))
        return "\n".join(lines)

    def _ib_lines(self, snapshot: HealthSnapshot) -> list[str]:
        if snapshot.trading_broker != "ib":
            return [f"  ib           not used (BROKER={snapshot.trading_broker}): {snapshot.trading_broker_detail}"]
        ib, state = snapshot.ib, snapshot.ib.get("state")
        if state is None:
            lines = [f"  ib           FAILING: {snapshot.trading_broker_detail}"]
        else:
            verdict = "connected" if state["connected"] else "FAILING: DISCONNECTED"
            age = state["report_age_seconds"]
            stale = f" STALE (no report for {IB_STATE_STALE_AFTER_SECONDS} s: is ib_listener running?)"
            lines = [
                f"  ib           {verdict}, reported {age if age is not None else '?'} s ago"
                + (stale if state["stale"] else "")
                + (f"; {state['detail']}" if state["detail"] else "")
                + (f"; account {state['account']}" if state["account"] else "")
                + (f", client {state['client_id']} at {state['host']}" if state["host"] else "")
            ]
        if ib.get("open_reconciliation_issues"):
            lines.append(
                f"  ib issues    {ib['open_reconciliation_issues']} open reconciliation issue(s) "
                "(admin: Execution > Reconciliation issues; docs/operations.md)"
            )
        if ib.get("unacknowledged_alerts"):
            lines.append(
                f"  ib alerts    {ib['unacknowledged_alerts']} unacknowledged alert(s) (admin: Execution > Broker "
                "messages, filter alert: yes, acknowledged: no)"
            )
        if ib.get("stuck_commands"):
            lines.append(
                f"  ib commands  {ib['stuck_commands']} queued or sent for more than {IB_COMMAND_STUCK_AFTER_SECONDS} s"
                f" (oldest {ib['oldest_stuck_command_age_seconds']} s): is ib_listener running? "
                "(admin: Execution > Broker commands)"
            )
        return lines
