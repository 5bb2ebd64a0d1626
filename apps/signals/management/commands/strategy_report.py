"""``manage.py strategy_report --session PATH [--session PATH …] [--out DIR]``: replay, then report per strategy."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.core import calendar
from apps.core.replay import SessionFileError, count_lines, replay_session
from apps.signals.report import report_table, strategy_report, strategy_report_write


class Command(BaseCommand):
    help = (
        "Replay one or more sessions through every stage, then report per strategy: signals, trades, win rate, "
        "average return, max drawdown, with an equity-curve chart and an HTML page."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--session", type=Path, action="append", required=True, help="session file (repeatable)")
        parser.add_argument("--out", type=Path, default=Path("var/strategy-report"), help="output directory")
        parser.add_argument(
            "--no-replay",
            action="store_true",
            help="report on the sessions' days as already recorded, without replaying",
        )
        parser.add_argument(
            "--examples", type=int, default=5, help="signals shown with their explanation, per strategy"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = []
        for path in options["session"]:
            try:
                total = count_lines(path)
            except SessionFileError as exc:
                raise CommandError(str(exc)) from exc
            if options["no_replay"]:
                first = _first_time(path)
                if first is None:
                    raise CommandError(f"{path}: no line with a receive time")
                days.append(calendar.market_day(first))
                continue
            with tqdm(total=total, unit="line", desc=f"replay {path.name}", file=sys.stderr) as bar:
                counts = replay_session(path, progress=bar.update)
            if counts.first_received_at is None:
                raise CommandError(f"{path}: no line with a receive time")
            days.append(calendar.market_day(counts.first_received_at))
        days = sorted(set(days))
        report = strategy_report(days=days, examples=options["examples"])
        paths = strategy_report_write(report, options["out"])
        self.stdout.write(report_table(report))
        self.stdout.write(f"written: {paths['html']} (chart {paths['chart'].name}, data {paths['json'].name})")


def _first_time(path: Path) -> Any:
    from apps.core.replay import _open_lines, _received_at

    for line in _open_lines(path):
        moment = _received_at(line)
        if moment is not None:
            return moment
    return None
