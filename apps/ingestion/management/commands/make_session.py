"""Write a synthetic recorded session: one trading day of Unusual Whales socket frames as NDJSON (gzip for .gz)."""

from __future__ import annotations

import sys
import time as timer
from datetime import date, time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.ingestion.sessions import DEFAULT_NOISE, DEFAULT_TICKERS, write_session


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"--date {text!r} is not a date (YYYY-MM-DD)") from exc


def _wall(option: str, text: str | None) -> time | None:
    if text is None:
        return None
    try:
        return time.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"{option} {text!r} is not a New York time (HH:MM)") from exc


class Command(BaseCommand):
    help = "Generate a realistic synthetic trading day in the Unusual Whales socket format (see docs/sessions.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", required=True, help="trading day, YYYY-MM-DD")
        parser.add_argument("--seed", type=int, required=True, help="the same seed gives the same session")
        parser.add_argument("--out", required=True, help="output path; .gz writes gzip")
        parser.add_argument("--tickers", default=",".join(DEFAULT_TICKERS), help="comma-separated underlyings")
        parser.add_argument(
            "--noise", type=float, default=DEFAULT_NOISE, help="share of noise lines (broken, repeated, unknown, …)"
        )
        parser.add_argument("--start", help="New York time to start at (default: 10 minutes before the open)")
        parser.add_argument("--end", help="New York time to stop at (default: the options close)")

    def handle(self, *args: Any, **options: Any) -> None:
        day = _day(options["date"])
        tickers = [t.strip().upper() for t in options["tickers"].split(",") if t.strip()]
        if not tickers:
            raise CommandError("--tickers names no ticker")
        noise = options["noise"]
        if not 0.0 <= noise < 0.5:
            raise CommandError(f"--noise {noise} must be a fraction from 0 up to 0.5")
        start, end = _wall("--start", options["start"]), _wall("--end", options["end"])
        out = Path(options["out"])
        bars: dict[str, tqdm] = {}
        quiet = options["verbosity"] < 1

        def progress(stage: str, done: int, total: int) -> None:
            # one bar per stage (tickers generated, lines written), opened when the stage reports first
            bar = bars.get(stage)
            if bar is None:
                unit = "ticker" if stage == "generate" else "line"
                bar = bars[stage] = tqdm(total=total, unit=unit, desc=stage, file=sys.stderr, disable=quiet)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        began = timer.monotonic()
        try:
            stats = write_session(
                out, day, options["seed"], tickers=tickers, noise=noise, start=start, end=end, progress=progress
            )
        except ValueError as exc:  # NotATradingDay included: a date without a session, a bad window
            raise CommandError(str(exc)) from exc
        finally:
            for bar in bars.values():
                bar.close()
        elapsed = timer.monotonic() - began
        self.stdout.write(f"{out}: {stats.summary()}; {stats.bytes_written} bytes in {elapsed:.1f} s")
