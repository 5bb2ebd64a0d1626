"""``manage.py bench pipeline|ingest --json OUT``: benchmarks that print their figures and write JSON."""

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
    help = (
        "Run a benchmark: `pipeline` (frame arrival to order at the broker, beside a bare Celery chain) or `ingest` "
        "(socket frames to committed rows: throughput and lag, beside COPY alone), `orders`, `distribution` or "
        "`dashboard` (the operations dashboard's reads over empty and filled tick tables)."
    )

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
        ingest = sub.add_parser("ingest", help="socket frames to committed rows: throughput, lag, COPY alone")
        ingest.add_argument("--json", dest="json_out", type=Path, help="write the figures as JSON here")
        ingest.add_argument("--frames", type=int, default=200_000, help="phase A: frames sent as fast as possible")
        ingest.add_argument(
            "--lag-rates",
            default="5000",
            help="phase B: comma-separated frames per second, one lag run each (default 5000)",
        )
        ingest.add_argument("--lag-seconds", type=float, default=20.0, help="phase B: seconds of each lag run")
        ingest.add_argument("--batch-frames", type=int, default=4000, help="the listener's UW_STREAM_BATCH_FRAMES")
        ingest.add_argument("--batch-ms", type=int, default=20, help="the listener's UW_STREAM_BATCH_MS")
        ingest.add_argument("--pool", choices=("solo", "prefork"), default="solo", help="the worker's Celery pool")
        ingest.add_argument("--warmup-frames", type=int, default=2000)
        ingest.add_argument("--copy-repeats", type=int, default=3, help="phase C: timed COPYs (median reported)")
        ingest.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the rows of a phase")
        ingest.add_argument(
            "--scratch", action="store_true", help="confirm the configured database and Redis db may be wiped"
        )
        ingest.add_argument("--quiet", action="store_true", help="no progress bars")
        dist = sub.add_parser("distribution", help="post lateness per Discord tier through a real worker and beat")
        dist.add_argument("--json", dest="json_out", type=Path, help="write the figures as JSON here")
        dist.add_argument("--posts", type=int, default=150, help="announcements, each posted to every tier")
        dist.add_argument("--rate", type=float, default=2.0, help="announcements per second")
        dist.add_argument(
            "--tiers",
            default="premium:0,standard:10,free:30",
            help="name:delay_seconds,... (the production delays 0/60/300 take over 5 minutes)",
        )
        dist.add_argument(
            "--scratch", action="store_true", help="confirm the configured database and Redis db may be wiped"
        )
        orders = sub.add_parser("orders", help="decision to booked fill: paper, IB direct, IB through ib_listener")
        orders.add_argument("--json", dest="json_out", type=Path, help="write the figures as JSON here")
        orders.add_argument("--orders", type=int, default=200, help="orders per path")
        orders.add_argument(
            "--scratch", action="store_true", help="confirm the configured database and Redis db may be wiped"
        )
        dashboard = sub.add_parser(
            "dashboard", help="the operations dashboard's reads over empty and filled tick tables"
        )
        dashboard.add_argument("--json", dest="json_out", type=Path, help="write the figures as JSON here")
        dashboard.add_argument(
            "--rows", type=int, default=1_000_000, help="uw_option_trades rows (others in proportion)"
        )
        dashboard.add_argument("--repeat", type=int, default=50, help="timed calls per endpoint and phase")
        dashboard.add_argument("--warmup", type=int, default=5, help="untimed calls per endpoint first")
        dashboard.add_argument("--count-repeat", type=int, default=5, help="timed naive COUNT(*)s per phase")
        dashboard.add_argument(
            "--scratch", action="store_true", help="confirm the configured database and Redis db may be wiped"
        )
        dashboard.add_argument("--quiet", action="store_true", help="no progress bar or per-endpoint lines")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["which"] == "ingest":
            self.handle_ingest(options)
            return
        if options["which"] == "orders":
            self.handle_orders(options)
            return
        if options["which"] == "distribution":
            self.handle_distribution(options)
            return
        if options["which"] == "dashboard":
            self.handle_dashboard(options)
            return
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

    def handle_orders(self, options: dict[str, Any]) -> None:
        from apps.execution.bench import PATHS, bench_orders

        if options["orders"] <= 0:
            raise CommandError("--orders must be positive")
        with tqdm(total=options["orders"] * len(PATHS), unit="order", desc="bench orders", file=sys.stderr) as bar:
            try:
                result = bench_orders(
                    orders=options["orders"], scratch=options["scratch"], log_dir=Path("var"), progress=bar.update
                )
            except BenchError as exc:
                raise CommandError(str(exc)) from exc
        figures, ratios = result["decision_to_booked_fill_ms"], result["ratio_to_paper"]
        for path in PATHS:
            f = figures[path]
            ratio = ratios.get(path)
            versus = f"  x paper: p50 {ratio['p50']}, p99 {ratio['p99']}" if ratio else "  (baseline)"
            self.stdout.write(
                f"{path:<12} decision -> booked fill: p50 {f['p50']} ms, p99 {f['p99']} ms, n={f['n']}{versus}"
            )
        self._write_json(options, result)

    def handle_distribution(self, options: dict[str, Any]) -> None:
        from apps.distribution.bench import DistributionBenchConfig, bench_distribution

        try:
            tiers = tuple(
                (name.strip(), int(delay)) for name, _, delay in (p.partition(":") for p in options["tiers"].split(","))
            )
        except ValueError as exc:
            raise CommandError(f"--tiers must look like premium:0,standard:60,free:300 ({exc})") from exc
        if options["posts"] <= 0 or options["rate"] <= 0 or not tiers or any(d < 0 or not n for n, d in tiers):
            raise CommandError("--posts and --rate must be positive and every tier needs a name and a delay >= 0")
        cfg = DistributionBenchConfig(posts=options["posts"], rate=options["rate"], tiers=tiers)
        total = cfg.posts * len(tiers)
        with tqdm(total=total, unit="post", desc="bench distribution", file=sys.stderr) as bar:
            try:
                result = bench_distribution(
                    cfg=cfg, scratch=options["scratch"], log_dir=Path("var"), progress=bar.update
                )
            except BenchError as exc:
                raise CommandError(str(exc)) from exc
        base = result["baseline_direct_send_ms"]
        self.stdout.write(f"baseline (one direct webhook send): p50 {base['p50']} ms, p99 {base['p99']} ms")
        for name, t in result["tiers"].items():
            f = t["lateness_ms"]
            self.stdout.write(
                f"{name:<10} +{t['delay_seconds']:>3} s  lateness p50 {f['p50']} ms, p99 {f['p99']} ms, "
                f"max {f['max']} ms, n={f['n']}, late {t['late']}, early {t['early']}"
            )
        self.stdout.write(f"429 answers from the stand-in: {result['rate_limited_answers']}")
        self._write_json(options, result)

    def handle_dashboard(self, options: dict[str, Any]) -> None:
        from apps.ops.bench import ENDPOINTS, DashboardBenchConfig, bench_dashboard, tick_row_counts

        cfg = DashboardBenchConfig(
            rows=options["rows"],
            repeat=options["repeat"],
            warmup=options["warmup"],
            count_repeat=options["count_repeat"],
        )
        quiet = options["quiet"]
        total = sum(tick_row_counts(cfg.rows).values()) if cfg.rows > 0 else 0
        with tqdm(total=total, unit="row", desc="bench dashboard fill", file=sys.stderr, disable=quiet) as bar:
            try:
                result = bench_dashboard(
                    cfg,
                    scratch=options["scratch"],
                    progress=bar.update,
                    log=None if quiet else lambda message: bar.write(f"bench dashboard: {message}", file=sys.stderr),
                )
            except BenchError as exc:
                raise CommandError(str(exc)) from exc
        phases = [result[phase] for phase in ("empty", "small", "large", "empty_after")]
        to_empty, to_small = result["ratio_large_to_empty"], result["ratio_large_to_small"]
        lines = [
            f"{'median / p95 ms':<26} {'empty':>17} {'small':>17} {'large':>17} {'empty after':>17} {'queries':>9} "
            f"{'large/empty':>13} {'large/small':>13}"
        ]
        for name in ENDPOINTS:
            cells = " ".join(f"{p[name]['median_ms']:>8.2f} / {p[name]['p95_ms']:<6.2f}" for p in phases)
            e, s = to_empty[name], to_small[name]
            lines.append(
                f"{name:<26} {cells} {phases[0][name]['queries']:>3} -> {phases[2][name]['queries']:<3} "
                f"{e['median']!s:>5} / {e['p95']!s:<5} {s['median']!s:>5} / {s['p95']!s:<5}"
            )
        lines.append(
            f"{'PostgreSQL blocks touched':<26} "
            + " ".join(f"{n:>17}" for n in ("empty", "small", "large", "empty after"))
        )
        for name in ENDPOINTS:
            lines.append(f"{name:<26} " + " ".join(f"{p[name]['db_blocks']:>17,}" for p in phases))
        count = result["naive_count_ms"]
        lines.append(
            f"avoided: a naive COUNT(*) of uw_option_trades at {count['large']['rows']:,} rows: median "
            f"{count['large']['median_ms']} ms, {count['large']['db_blocks']:,} blocks "
            f"(empty: {count['empty']['median_ms']} ms), "
            f"{result['naive_count_over_dashboard_data']}x one dashboard poll"
        )
        lines.append(f"tick tables filled in {result['fill_seconds']['total']} s: {result['config']['tick_rows']}")
        self.stdout.write("\n".join(lines))
        self._write_json(options, result)

    def _write_json(self, options: dict[str, Any], result: dict[str, Any]) -> None:
        if options["json_out"]:
            out: Path = options["json_out"]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
            self.stdout.write(f"written to {out}")

    def handle_ingest(self, options: dict[str, Any]) -> None:
        from apps.ingestion.bench import IngestBenchConfig, bench_ingest

        try:
            rates = tuple(float(part) for part in options["lag_rates"].split(",") if part.strip())
        except ValueError as exc:
            raise CommandError(f"--lag-rates must be numbers separated by commas: {exc}") from exc
        cfg = IngestBenchConfig(
            frames=options["frames"],
            lag_rates=rates,
            lag_seconds=options["lag_seconds"],
            batch_frames=options["batch_frames"],
            batch_ms=options["batch_ms"],
            pool=options["pool"],
            warmup_frames=options["warmup_frames"],
            copy_repeats=options["copy_repeats"],
            commit_timeout_s=options["timeout"],
        )
        quiet = options["quiet"]
        try:
            result = bench_ingest(
                cfg,
                scratch=options["scratch"],
                log_dir=Path("var"),
                quiet=quiet,
                log=None if quiet else lambda message: self.stderr.write(f"bench ingest: {message}"),
            )
        except BenchError as exc:
            raise CommandError(str(exc)) from exc
        t = result["throughput"]
        lines = [
            f"socket -> committed rows: {result['frames_per_s']:>9,} frames/s  "
            f"({result['frames']:,} frames in {result['elapsed_s']} s; listener read {t['listener_read_per_s']}/s, "
            f"stand-in sent {t['firehose_send_per_s']:,}/s, "
            f"{t['worker_batches']} worker batches of {t['mean_batch_frames']} frames)",
            f"COPY alone (same rows):   {result['copy_rows_per_s']:>9,} rows/s    "
            f"ratio {result['copy_ratio']}  (target >= 0.333)",
            f"COPY rows + archive:      {result['copy_rows_plus_archive_per_s']:>9,} rows/s    "
            f"ratio {result['copy_plus_archive_ratio']}",
        ]
        for lag in result["lag_ms_runs"]:
            lines.append(
                f"lag @ {lag['rate']:,.0f}/s (sent to committed): p50 {lag['p50']} ms, p99 {lag['p99']} ms, "
                f"mean {lag['mean']} ms, n={lag['n']:,} (histogram buckets, linear inside)"
            )
        lines.append(f"targets met: {result['targets_met']}")
        self.stdout.write("\n".join(lines))
        if options["json_out"]:
            out: Path = options["json_out"]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
            self.stdout.write(f"written to {out}")
