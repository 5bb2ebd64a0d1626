"""``manage.py bench pipeline --json OUT``: benchmarks that print their figures and write JSON."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.core import calendar, clock
from apps.core.bench import BenchError, PipelineBenchConfig, bench_pipeline


class Command(BaseCommand):
    help = "Run a benchmark: `pipeline` (frame arrival to order at the broker, beside a bare Celery chain)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="which", required=True)
        pipeline = sub.add_parser("pipeline", help="latency through the real Celery pipeline")
        pipeline.add_argument("--json", dest="json_out", type=Path, help="write the figures as JSON here")
        pipeline.add_argument("--day", type=date.fromisoformat, help="session day (default: the last trading day)")
        pipeline.add_argument("--seed", type=int, default=11)
        pipeline.add_argument("--window-minutes", type=int, default=20)
        pipeline.add_argument("--speedup", type=float, default=10.0, help="recorded seconds sent per wall second")
        pipeline.add_argument("--bare-chains", type=int, default=200)
        pipeline.add_argument("--concurrency", type=int, default=2, help="stage worker processes")
        pipeline.add_argument(
            "--scratch", action="store_true", help="confirm the configured database and Redis db may be wiped"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        day = options["day"] or calendar.previous_trading_day(calendar.market_day(clock.now()))
        cfg = PipelineBenchConfig(
            day=day,
            seed=options["seed"],
            window_minutes=options["window_minutes"],
            speedup=options["speedup"],
            bare_chains=options["bare_chains"],
            worker_concurrency=options["concurrency"],
        )
        if cfg.window_minutes <= 0 or cfg.speedup <= 0 or cfg.bare_chains <= 0 or cfg.worker_concurrency <= 0:
            raise CommandError("--window-minutes, --speedup, --bare-chains and --concurrency must be positive")
        with tqdm(unit="frame", desc="bench pipeline", file=sys.stderr) as bar:
            try:
                result = bench_pipeline(cfg, scratch=options["scratch"], log_dir=Path("var"), progress=bar.update)
            except BenchError as exc:
                raise CommandError(str(exc)) from exc
        p, b = result["pipeline_ms"], result["bare_chain_ms"]
        self.stdout.write(
            f"pipeline (frame arrival -> order at broker): p50 {p['p50']} ms, p99 {p['p99']} ms, n={p['n']}\n"
            f"bare 4-hop Celery chain:                      p50 {b['p50']} ms, p99 {b['p99']} ms, n={b['n']}\n"
            f"ratio pipeline/bare: p50 {result['ratio']['p50']}x, p99 {result['ratio']['p99']}x; "
            f"{result['frames_sent']} frames in {result['batches_sent']} batches, {result['orders']} orders"
        )
        if options["json_out"]:
            out: Path = options["json_out"]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
            self.stdout.write(f"written to {out}")
