"""``manage.py replay PATH [--json OUT] [--tws-sim]``: play a recorded session through every stage and print the
summary.  ``BROKER`` chooses the broker as for every command: with ``BROKER=ib`` this process owns the IB connection
(``IB_HOST``/``IB_PORT``), or, with ``--tws-sim``, a TWS simulator it starts on a loopback port that trades against
the recorded market on the replay's clock.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.core.replay import (
    DEFAULT_BATCH_LINES,
    DEFAULT_BATCH_SECONDS,
    SessionFileError,
    count_lines,
    replay_session,
    summarize,
)


class Command(BaseCommand):
    help = "Replay a recorded Unusual Whales session (NDJSON, optionally gzipped) through every stage."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="session file: one {received_at, frame} JSON object per line")
        parser.add_argument("--json", dest="json_out", type=Path, help="also write the summary as JSON to this file")
        parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS)
        parser.add_argument("--batch-lines", type=int, default=DEFAULT_BATCH_LINES)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--tws-sim",
            action="store_true",
            help="with BROKER=ib: trade against a TWS simulator on a loopback port (recorded market, replay clock)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        if options["batch_seconds"] <= 0 or options["batch_lines"] <= 0:
            raise CommandError("--batch-seconds and --batch-lines must be positive")
        try:
            total = count_lines(path)
        except SessionFileError as exc:
            raise CommandError(str(exc)) from exc
        started = time.perf_counter()
        show = not options["no_progress"]
        with ib_broker(tws_sim=options["tws_sim"]) as broker_line:
            if broker_line:
                self.stderr.write(broker_line)
            with tqdm(total=total, unit="line", desc="replay", disable=not show, file=sys.stderr) as bar:
                counts = replay_session(
                    path,
                    batch_seconds=options["batch_seconds"],
                    batch_lines=options["batch_lines"],
                    progress=bar.update,
                )
        summary = summarize(counts)
        summary["elapsed_s"] = round(time.perf_counter() - started, 2)
        accounted = counts.accepted + counts.duplicates + counts.quarantined
        if accounted != counts.lines:
            raise CommandError(f"accounting error: {accounted} frames accounted for {counts.lines} lines")
        self.stdout.write(render(summary))
        if options["json_out"]:
            out: Path = options["json_out"]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            self.stdout.write(f"summary written to {out}")


@contextmanager
def ib_broker(*, tws_sim: bool) -> Iterator[str]:
    """With BROKER=ib: connect (and reconcile) before the first signal, so the risk manager sees a live broker, and
    close the connection at the end.  Nothing to do for the paper broker."""
    if settings.BROKER != "ib":
        if tws_sim:
            raise CommandError("--tws-sim trades through the IB adapter: set BROKER=ib")
        yield ""
        return
    from apps.core import clock
    from apps.execution.brokers.ib import process_gateway, process_gateway_close
    from apps.execution.brokers.paper import PaperBroker

    simulator = None
    host, port = settings.IB_HOST, int(settings.IB_PORT)
    if tws_sim:
        from apps.execution.ib.simulator import TWSSimulator

        simulator = TWSSimulator(port=0, quotes=PaperBroker().quote, clock=clock.now).start()
        host, port = "127.0.0.1", simulator.port
    try:
        gateway = process_gateway(host=host, port=port)
        if not gateway.connected:
            raise CommandError(f"BROKER=ib: no TWS / IB Gateway answering at {host}:{port} (see docs/execution.md)")
        yield f"broker: IB at {host}:{port}{' (TWS simulator)' if simulator else ''}, account {gateway.account}"
    finally:
        process_gateway_close()
        if simulator is not None:
            simulator.stop()


def render(summary: dict[str, Any]) -> str:
    frames = summary["frames"]
    lines = [
        f"Replayed {summary['lines']} lines of {summary['day']} in {summary['elapsed_s']} s "
        f"({summary['batches']} batches)",
        f"  frames      accepted {frames['accepted']}, duplicates {frames['duplicates']}, "
        f"quarantined {frames['quarantined']}",
    ]
    if frames["quarantine_reasons"]:
        reasons = ", ".join(f"{k} {v}" for k, v in frames["quarantine_reasons"].items())
        lines.append(f"              quarantine reasons: {reasons}")
    signals = summary["signals"]
    by_strategy = ", ".join(f"{k} {v}" for k, v in signals["by_strategy"].items()) or "none"
    lines += [
        f"  signals     {signals['total']} ({by_strategy})",
        f"  risk        approved {summary['risk']['approved']}, rejected {summary['risk']['rejected']}"
        + (f" {summary['risk']['rejected_by_check']}" if summary["risk"]["rejected_by_check"] else ""),
        f"  orders      submitted {summary['orders']['submitted']}, filled {summary['orders']['filled']}, "
        f"rejected {summary['orders']['rejected']}",
        f"  trades      opened {summary['trades']['opened']}, closed {summary['trades']['closed']} "
        f"{summary['trades']['by_exit_reason']}",
        f"  positions   open {summary['positions']['open']}",
        f"  pnl         realized ${summary['pnl']['realized']}",
    ]
    tiers = summary["distribution"]["by_tier"]
    tier_text = ", ".join(f"{t} {v['sent']} sent ({v['late']} late)" for t, v in tiers.items()) or "none"
    lines.append(f"  posts       {tier_text}")
    reports = summary["reports"]
    kinds = ", ".join(f"{k} ({v})" for k, v in reports["by_kind"].items()) or "none"
    lines.append(f"  reports     {reports['count']}: {kinds}")
    explanations = summary["explanations"]
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(explanations["by_status"].items())) or "none"
    lines.append(
        f"  explained   {explanations['count']} trades ({statuses}; {explanations['template']} by the template)"
    )
    social = ", ".join(f"{k} {v}" for k, v in sorted(summary["social"]["by_status"].items())) or "none"
    lines.append(f"  social      {social}")
    pending = ", ".join(f"{k} {v}" for k, v in sorted(summary["approvals"]["pending"].items())) or "none"
    lines.append(f"  approvals   waiting: {pending}")
    return "\n".join(lines)
