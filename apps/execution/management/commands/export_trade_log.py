"""``manage.py export_trade_log [--date YYYY-MM-DD] [--out DIR]``: one New York day's trade log and trades as CSV."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core import calendar, clock
from apps.execution.trade_log_export import export_paths, exports_dir, trade_log_export


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"--date must be YYYY-MM-DD, got {text!r}") from exc


class Command(BaseCommand):
    help = (
        "Write trade_log-YYYY-MM-DD.csv (every order state change of the New York day) and trades-YYYY-MM-DD.csv "
        "(the trades entered or exited that day); a re-run replaces both files."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", help="the New York day, YYYY-MM-DD (default: today in New York)")
        parser.add_argument("--out", type=Path, help="output directory (default: TP_DATA_DIR/exports)")

    def handle(self, *args: Any, **options: Any) -> None:
        day = calendar.market_day(clock.now()) if options["date"] is None else _day(options["date"])
        out_dir: Path = options["out"] or exports_dir()
        try:
            path = trade_log_export(day=day, out_dir=out_dir)
        except OSError as exc:
            raise CommandError(f"cannot write the export to {out_dir}: {exc}") from exc
        trades_path = export_paths(day=day, out_dir=out_dir)[1]
        self.stdout.write(f"written: {path} and {trades_path}")
