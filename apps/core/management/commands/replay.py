"""``manage.py replay PATH [--json OUT]``: play a recorded session through every stage and print the summary."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

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
    return "\n".join(lines)
