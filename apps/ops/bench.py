"""``manage.py bench dashboard``: the operations dashboard's reads do not grow with the tick tables.

The dashboard polls every few seconds while ``uw_option_trades`` and its siblings grow by millions of rows a day, so
every read behind it is meant to be bounded (``apps.ops.dashboard_selectors``, ``apps.core.lean_admin``).  This
benchmark checks that claim with figures, in one run against a scratch database and Redis db:

1. **empty**: the database wiped (``apps.core.bench.wipe_state``), the operator's world seeded (a few hundred signals,
   trades, orders, posts, some alerts; the UW listener's report, a session of chart samples, canaries in Redis) and
   every measured request timed with the tick tables empty;
2. **small**: the tick tables filled with ``generate_series`` INSERT … SELECT to ``SMALL_ROWS`` option trades (and
   in proportion flow alerts, raw frames, IB quotes and analytics snapshots), ``VACUUM ANALYZE``d as a long-lived
   table would be: every admin list shows a full page and its bounded count is at its cap;
3. **large**: filled on to ``rows`` option trades, and every request timed again;
4. **empty_after**: the tick tables truncated and every request timed a last time.

``ratio_large_to_empty`` divides the large figures by the mean of both empty phases (so a shared machine getting
busier or quieter during the run is not mistaken for growth with the tables); ``ratio_large_to_small`` divides them
by the small phase's, the same pages with the same rows on them over ten times fewer rows in the tables.

Measured each time, ``repeat`` samples after ``warmup`` calls, in this process through Django's test client (the
full middleware stack, a staff superuser's session; no HTTP server, so the figures are Django's own time):
``dashboard_snapshot()`` called directly, the JSON endpoint as the page polls it (``?since=`` a refresh ago), the
dashboard page, the first page of the ``uw_option_trades`` and ``uw_flow_alerts`` admin lists, the web's ``/metrics``
(with the scrape-time ``PlatformCollector``) and a bare ``SELECT 1`` (the floor of one database round trip).  Each
gets a median, a p95 and its number of SQL queries (counted on one extra call).  The claim: the same number of queries
in every phase and ratios near 1 (for the admin lists, ``ratio_large_to_small``: an empty list renders no rows).
``naive_count_ms`` times ``SELECT COUNT(*) FROM uw_option_trades`` in each phase: the scan the dashboard avoids.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, reset_queries
from django.http import HttpResponseBase
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from apps.core import clock, queues, store
from apps.core.bench import BenchError, check_preconditions, percentile, wipe_state

# What every tick table gets for ``rows`` option trades (the proportions of a recorded session's tables).
TICK_SHARES: dict[str, float] = {
    "uw_option_trades": 1.0,
    "uw_flow_alerts": 0.1,
    "uw_raw_frames": 0.25,
    "ib_quotes": 0.5,
    "analytics_snapshots": 0.05,
}
# The small phase's option trades: the fewest for which every measured list's bounded count (``COUNT_CAP`` rows of
# ``apps.core.lean_admin``) is at its cap (11,000 flow alerts) and every list page full.  Past it, nothing the
# dashboard or a list reads should grow: ``ratio_large_to_small`` checks that.
SMALL_ROWS = 110_000
# Rows per INSERT … SELECT: one statement's work stays bounded and the progress bar moves.
FILL_CHUNK = 100_000
# The generated rows spread over this many days before now, as a table kept for a month would.
SPREAD_DAYS = 30
TICKERS = ("SPY", "QQQ", "IWM", "AAPL", "TSLA", "NVDA")
# The operator's world beside the ticks: what an active book looks like on the dashboard.
SIGNALS = 300  # each with an entry order; the first OPEN_TRADES are open trades with a position
OPEN_TRADES = 40
CLOSED_TRADES = 160
WORKING_ORDERS = 30
POSTS = 400
ALERTS = 25  # unacknowledged; as many again acknowledged and resolved
BENCH_USER = "bench-dashboard"
# The endpoints, in the order they are measured and printed.
ENDPOINTS = (
    "select_1",
    "snapshot_direct",
    "dashboard_data",
    "dashboard_page",
    "changelist_option_trades",
    "changelist_flow_alerts",
    "metrics",
)


@dataclass(frozen=True)
class DashboardBenchConfig:
    rows: int = 1_000_000
    repeat: int = 50
    warmup: int = 5
    count_repeat: int = 5  # naive COUNT(*) samples per phase (each is a scan at the large size)


def _ticker_sql(column: str = "g") -> str:
    """The ticker of generated row ``g``: cycles through ``TICKERS``."""
    names = ",".join(f"'{t}'" for t in TICKERS)
    return f"(ARRAY[{names}])[({column} % {len(TICKERS)}) + 1]"


# The OCC symbol of row ``g``: one of 80 strikes around 400-795, a call or a put, expiring within 5 weeks (the
# contracts a session trades), built as apps.core.occ.build writes it.
_EXPIRY = "(current_date + ((g % 5) * 7)::int)"
_RIGHT = "(CASE WHEN g % 2 = 0 THEN 'C' ELSE 'P' END)"
_STRIKE = "(400 + (g % 80) * 5)"
_SYMBOL = f"{_ticker_sql()} || to_char({_EXPIRY}, 'YYMMDD') || {_RIGHT} || lpad(({_STRIKE} * 1000)::text, 8, '0')"
_AT = "(now() - make_interval(secs => ({n} - g) * {step}))"

FILL_SQL: dict[str, str] = {
    "uw_option_trades": f"""
        INSERT INTO uw_option_trades (uw_id, ticker, option_symbol, expiry, "right", strike, price, size, premium,
            nbbo_bid, nbbo_ask, underlying_price, volume, open_interest, implied_volatility, delta, gamma, theta,
            vega, side, tags, exchange, executed_at, uw_created_at)
        SELECT 'bench-' || g, {_ticker_sql()}, {_SYMBOL}, {_EXPIRY}, {_RIGHT}, {_STRIKE},
            1 + (g % 500) / 100.0, 1 + g % 50, (1 + (g % 500) / 100.0) * (1 + g % 50) * 100,
            1 + (g % 500) / 100.0 - 0.02, 1 + (g % 500) / 100.0 + 0.02, 400 + (g % 400), g % 100000, g % 50000,
            0.2 + (g % 30) / 100.0, (g % 100) / 100.0, 0.01, -0.05, 0.1,
            (CASE WHEN g % 3 = 0 THEN 'ask' WHEN g % 3 = 1 THEN 'bid' ELSE 'mid' END),
            '["sweep"]'::jsonb, 'XCBO', {_AT}, {_AT}
        FROM generate_series({{low}}, {{high}}) AS g""",  # noqa: S608 - this module's own SQL
    "uw_flow_alerts": f"""
        INSERT INTO uw_flow_alerts (uw_id, rule_name, ticker, option_symbol, expiry, "right", strike,
            underlying_price, price, bid, ask, volume, total_size, total_premium, total_ask_side_prem,
            total_bid_side_prem, has_sweep, has_floor, has_multileg, all_opening_trades, open_interest,
            volume_oi_ratio, trade_count, executed_at, raw_frame_id)
        SELECT 'bench-' || g, 'RepeatedHits', {_ticker_sql()}, {_SYMBOL}, {_EXPIRY}, {_RIGHT}, {_STRIKE},
            400 + (g % 400), 1 + (g % 500) / 100.0, 0.98, 1.02, g % 100000, 10 + g % 990, 25000 + g % 975000,
            20000, 5000, g % 4 = 0, false, g % 7 = 0, g % 2 = 0, g % 50000, 1.5, 1 + g % 40, {_AT}, NULL
        FROM generate_series({{low}}, {{high}}) AS g""",  # noqa: S608 - this module's own SQL
    "uw_raw_frames": f"""
        INSERT INTO uw_raw_frames (frame_hash, channel, received_at, payload, source, stored_at)
        SELECT encode(sha256(('bench-' || g)::bytea), 'hex'),
            (CASE WHEN g % 4 = 0 THEN 'flow-alerts' ELSE 'option_trades' END), {_AT},
            jsonb_build_object('id', 'bench-' || g, 'ticker', {_ticker_sql()}, 'option_symbol', {_SYMBOL},
                'price', 1 + (g % 500) / 100.0, 'size', 1 + g % 50, 'nbbo_bid', 0.98, 'nbbo_ask', 1.02,
                'underlying_price', 400 + (g % 400), 'tags', jsonb_build_array('sweep', 'ask_side'),
                'executed_at', (extract(epoch FROM {_AT}) * 1000)::bigint),
            'websocket', {_AT}
        FROM generate_series({{low}}, {{high}}) AS g""",  # noqa: S608 - this module's own SQL
    "ib_quotes": f"""
        INSERT INTO ib_quotes (key, sec_type, con_id, bid, ask, last, bid_size, ask_size, last_size, implied_vol,
            delta, gamma, underlying_price, quoted_at, received_at)
        SELECT {_SYMBOL}, 'OPT', 500000000 + g % 4000, 0.98 + (g % 500) / 100.0, 1.02 + (g % 500) / 100.0,
            1 + (g % 500) / 100.0, 1 + g % 90, 1 + g % 80, 1 + g % 10, 0.2 + (g % 30) / 100.0, (g % 100) / 100.0,
            0.01, 400 + (g % 400), {_AT}, {_AT}
        FROM generate_series({{low}}, {{high}}) AS g""",  # noqa: S608 - this module's own SQL
    "analytics_snapshots": f"""
        INSERT INTO analytics_snapshots (ticker, bucket, as_of, schema_version, event_id, features, confidence,
            created_at)
        SELECT {_ticker_sql()}, (ARRAY['0dte', '1dte', '14d', 'moc'])[(g / {len(TICKERS)}) % 4 + 1],
            now() - make_interval(secs => g), 1, 'bench-' || g,
            jsonb_build_object('net_premium', g % 100000, 'sweep_ratio', (g % 100) / 100.0, 'gex', g % 5000 - 2500,
                'iv_rank', (g % 100) / 100.0, 'flow_bias', (CASE WHEN g % 2 = 0 THEN 'bull' ELSE 'bear' END)),
            0.5 + (g % 50) / 100.0, now() - make_interval(secs => g)
        FROM generate_series({{low}}, {{high}}) AS g""",  # noqa: S608 - this module's own SQL
}


def tick_row_counts(rows: int) -> dict[str, int]:
    """How many rows each tick table gets for ``rows`` option trades (at least one each)."""
    return {table: max(1, round(rows * share)) for table, share in TICK_SHARES.items()}


def tick_tables_fill(rows: int, *, start_rows: int = 0, progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Fill the tick tables up to ``tick_row_counts(rows)`` from ``tick_row_counts(start_rows)`` (what an earlier call
    put there) in chunks of ``FILL_CHUNK`` rows, each its own statement and commit, then ``VACUUM ANALYZE`` them: a
    month-old table has its statistics and visibility map, and the planner's choices here should be the ones it makes
    in production.  Returns the seconds it took per table."""
    starts = tick_row_counts(start_rows) if start_rows > 0 else dict.fromkeys(TICK_SHARES, 0)
    seconds: dict[str, float] = {}
    with connection.cursor() as cursor:
        for table, count in tick_row_counts(rows).items():
            step = SPREAD_DAYS * 86400 / count
            sql = FILL_SQL[table].replace("{n}", str(count)).replace("{step}", f"{step:.6f}")
            # No parameters (the statements use the modulo operator ``%``): the bounds are our own integers.
            started = time.perf_counter()
            for low in range(starts[table] + 1, count + 1, FILL_CHUNK):
                high = min(low + FILL_CHUNK - 1, count)
                cursor.execute(sql.replace("{low}", str(low)).replace("{high}", str(high)))
                if progress is not None:
                    progress(high - low + 1)
            cursor.execute(f"VACUUM ANALYZE {table}")
            seconds[table] = round(time.perf_counter() - started, 2)
    return seconds


def _execute(cursor: Any, sql: str, values: dict[str, Any] | None = None) -> None:
    """Run ``sql`` with its ``{name}`` markers replaced by ``values`` written as SQL literals (our own integers and
    instants only; no parameters, so the modulo operator ``%`` needs no escaping)."""
    for name, value in (values or {}).items():
        literal = f"'{value.isoformat()}'::timestamptz" if isinstance(value, datetime) else str(int(value))
        sql = sql.replace("{" + name + "}", literal)
    cursor.execute(sql)


def world_seed() -> User:
    """The operator's world beside the ticks, in the tables and keys the platform writes: signals with entry orders,
    open and closed trades with their book positions, working orders, distribution posts, alerts, the UW listener's
    per-channel report, a full session of chart samples and every queue's canary.  Returns the staff superuser the
    requests are made as."""
    from apps.ingestion.uw.stream import CHANNELS_KEY, STATE_KEY
    from apps.ops.dashboard_selectors import SERIES_KEY, series_capacity
    from apps.ops.services import canary_beat

    now = clock.now()
    with connection.cursor() as cursor:
        _execute(
            cursor,
            f"""
            INSERT INTO signals (signal_id, strategy, bucket, strategy_version, ticker, direction, option_symbol,
                expiry, "right", strike, limit_price, quantity_hint, profit_target_pct, stop_loss_pct, time_exit_at,
                entry_deadline, rule, rationale, features, contributions, evidence, confidence, status, as_of,
                created_at)
            SELECT 'bench' || lpad(g::text, 8, '0'), 'zero_dte', '0dte', 1, {_ticker_sql()},
                (CASE WHEN g % 2 = 0 THEN 'bullish' ELSE 'bearish' END),
                {_ticker_sql()} || to_char(current_date, 'YYMMDD') || {_RIGHT} || lpad(((400 + g) * 1000)::text, 8,
                '0'), current_date, {_RIGHT}, 400 + g, 1.20, 5, 0.5, 0.3, {{now}} + interval '4 hours', NULL,
                'bench rule', 'a benchmark signal', '{{}}'::jsonb, '{{}}'::jsonb, '{{}}'::jsonb, 0.7,
                (CASE WHEN g <= {{open}} THEN 'active' WHEN g <= {{traded}} THEN 'closed' ELSE 'rejected' END),
                {{now}} - make_interval(secs => g * 60), {{now}} - make_interval(secs => g * 60)
            FROM generate_series(1, {{signals}}) AS g""",  # noqa: S608 - this module's own SQL
            {"now": now, "open": OPEN_TRADES, "traded": OPEN_TRADES + CLOSED_TRADES, "signals": SIGNALS},
        )
        _execute(
            cursor,
            """
            INSERT INTO trades (signal_id, strategy, ticker, option_symbol, quantity, entry_price, entry_at,
                exit_price, exit_at, exit_reason, exit_note, realized_pnl, status, fees, last_mark, last_mark_at,
                stop_price, target_price)
            SELECT s.id, s.strategy, s.ticker, s.option_symbol, 2, 1.20, s.created_at + interval '5 seconds',
                CASE WHEN s.status = 'closed' THEN 1.35 END,
                CASE WHEN s.status = 'closed' THEN {now} - make_interval(secs => s.id) END,
                CASE WHEN s.status = 'closed' THEN 'target' ELSE '' END, '',
                CASE WHEN s.status = 'closed' THEN 30 END,
                CASE WHEN s.status = 'closed' THEN 'closed' ELSE 'open' END, 1.30, 1.40, {now}, 0.84, 1.80
            FROM signals s WHERE s.status IN ('active', 'closed')""",
            {"now": now},
        )
        _execute(
            cursor,
            """
            INSERT INTO execution_positions (option_symbol, ticker, quantity, avg_cost, realized_pnl, mark,
                unrealized_pnl, updated_at)
            SELECT option_symbol, ticker, quantity, entry_price, 0, 1.40, (1.40 - entry_price) * quantity * 100,
                {now}
            FROM trades WHERE status = 'open'""",
            {"now": now},
        )
        _execute(
            cursor,
            """
            INSERT INTO execution_orders (client_order_id, leg, attempt, exit_reason, option_symbol, side, quantity,
                limit_price, status, broker, broker_order_id, reject_reason, created_at, submitted_at, filled_at,
                avg_fill_price, filled_quantity, decision_id, signal_id, trade_id)
            SELECT 'bench-' || s.id, 'entry', 0, '', s.option_symbol, 'buy', 2, 1.20,
                (CASE WHEN t.id IS NOT NULL THEN 'filled' ELSE 'rejected' END),
                'paper', 'P' || s.id, '', s.created_at, s.created_at, t.entry_at, t.entry_price,
                (CASE WHEN t.id IS NOT NULL THEN 2 ELSE 0 END), NULL, s.id, t.id
            FROM signals s LEFT JOIN trades t ON t.signal_id = s.id""",
        )
        # WORKING_ORDERS of the untraded signals' orders are still working at the broker; the others were rejected.
        _execute(
            cursor,
            """
            UPDATE execution_orders SET status = 'submitted', filled_quantity = 0
            WHERE id IN (SELECT id FROM execution_orders WHERE trade_id IS NULL ORDER BY id LIMIT {n_working})""",
            {"n_working": WORKING_ORDERS},
        )
        _execute(
            cursor,
            """
            INSERT INTO distribution_posts (kind, trade_id, ref, tier, due_at, release_at, status, content, sink,
                message_id, claimed_at, sent_at, lateness_ms, late, attempts, failures, last_error, created_at,
                amends_id, claim_token, dispatched_for)
            SELECT 'entry', NULL, 'bench:' || (g / 3), (ARRAY['premium', 'standard', 'free'])[g % 3 + 1],
                {now} - make_interval(secs => g * 30), {now} - make_interval(secs => g * 30), 'sent',
                '{"content": "bench post"}'::jsonb, 'discord', 'm' || g, NULL,
                {now} - make_interval(secs => g * 30) + interval '120 milliseconds', 120, false, 1, 0, '',
                {now} - make_interval(secs => g * 30), NULL, '', NULL
            FROM generate_series(0, {posts} - 1) AS g""",
            {"now": now, "posts": POSTS},
        )
        _execute(
            cursor,
            """
            INSERT INTO ops_alerts (key, rule, severity, source, summary, detail, raised_at, last_seen_at,
                resolved_at, acknowledged_at, acknowledged_by, delivered_at, delivery_error)
            SELECT 'bench:' || g, (ARRAY['FeedStale', 'QueueBacklog', 'DeadLettersGrowing'])[g % 3 + 1],
                (CASE WHEN g % 4 = 0 THEN 'critical' ELSE 'warning' END), 'platform', 'bench alert ' || g,
                '{}'::jsonb, {now} - make_interval(secs => g * 90), {now},
                CASE WHEN g >= {open} THEN {now} END,
                CASE WHEN g >= {open} THEN {now} END,
                CASE WHEN g >= {open} THEN 'operator' ELSE '' END, {now}, ''
            FROM generate_series(0, {total} - 1) AS g""",
            {"now": now, "open": ALERTS, "total": ALERTS * 2},
        )

    client = store.get_redis()
    wall = time.time()
    channels = ("option_trades", "flow-alerts", *(f"price:{t}" for t in TICKERS), "gex:SPY", "news")
    client.hset(
        STATE_KEY,
        mapping={
            "status": "connected",
            "updated_at": f"{wall:.3f}",
            "frames": "1250000",
            "dropped_frames": "0",
            "reconnects": "2",
        },
    )
    client.hset(
        CHANNELS_KEY,
        mapping={
            name: orjson.dumps({"frames": 1_250_000 // len(channels), "rate_per_s": 350.0, "last_frame_age_s": 0.2})
            for name in channels
        },
    )
    step = settings.DASHBOARD_SAMPLE_SECONDS
    samples = [
        orjson.dumps(
            {
                "t": round(wall - (series_capacity() - i) * step, 3),
                "pnl_total": 12.5 * i,
                "pnl_open": 8.0 * i,
                "pnl_realized": 4.5 * i,
                "ingest_rate": 2800.0,
                "channel_rates": {name: 350.0 for name in channels},
                "queues": {name: i % 7 for name in queues.ALL},
            }
        )
        for i in range(series_capacity())
    ]
    client.delete(SERIES_KEY)
    client.rpush(SERIES_KEY, *samples)
    for queue in queues.ALL:
        canary_beat(queue=queue)

    return User.objects.create_superuser(BENCH_USER, f"{BENCH_USER}@example.invalid", None)


def _summary(samples: list[float], queries: int, database: dict[str, float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "median_ms": round(percentile(samples, 50), 3),
        "p95_ms": round(percentile(samples, 95), 3),
        "max_ms": round(max(samples), 3),
        "queries": queries,
        **database,
    }


def database_work(statements: list[str]) -> dict[str, float]:
    """What PostgreSQL did for ``statements`` (one request's queries, as Django logged them with their values):
    each SELECT run again under ``EXPLAIN (ANALYZE, BUFFERS)``.  ``db_blocks`` (8 kB buffers touched, cached or read,
    the top plan node counting its children's) does not depend on how busy the machine is, unlike a wall time: a
    read that scans a table touches blocks in proportion to its rows, a bounded one a nearly fixed few (an index
    one level deeper costs one block per lookup).  ``db_exec_ms`` is the server's own execution time."""
    blocks, exec_ms = 0, 0.0
    with connection.cursor() as cursor:
        for sql in statements:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
            raw = cursor.fetchone()[0]
            plan = (orjson.loads(raw) if isinstance(raw, str | bytes) else raw)[0]
            blocks += int(plan["Plan"].get("Shared Hit Blocks", 0)) + int(plan["Plan"].get("Shared Read Blocks", 0))
            exec_ms += float(plan.get("Execution Time", 0.0))
    return {"db_blocks": blocks, "db_exec_ms": round(exec_ms, 3)}


def _probes(client: Client) -> dict[str, Callable[[], Any]]:
    """One callable per measured endpoint; the request ones check the answer (a redirect to the login page or a 500
    timed as fast would prove nothing)."""
    from apps.ops.dashboard_selectors import dashboard_snapshot

    def get(url: str, **query: str) -> Callable[[], HttpResponseBase]:
        def call() -> HttpResponseBase:
            data = {key: value() if callable(value) else value for key, value in query.items()}
            response = client.get(url, data, secure=True)
            if response.status_code != 200:
                raise BenchError(f"GET {url} answered {response.status_code}, not 200")
            return response

        return call

    def select_1() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def poll() -> HttpResponseBase:
        # As the page polls: the chart samples after the previous poll, a refresh interval ago.
        response = client.get(
            reverse("admin:ops_dashboard_data"),
            {"since": f"{time.time() - settings.DASHBOARD_REFRESH_SECONDS:.3f}"},
            secure=True,
        )
        if response.status_code != 200:
            raise BenchError(f"the dashboard's JSON endpoint answered {response.status_code}, not 200")
        return response

    return {
        "select_1": select_1,
        "snapshot_direct": dashboard_snapshot,
        "dashboard_data": poll,
        "dashboard_page": get(reverse("admin:ops_dashboard")),
        "changelist_option_trades": get(reverse("admin:ingestion_optiontrade_changelist")),
        "changelist_flow_alerts": get(reverse("admin:ingestion_flowalert_changelist")),
        "metrics": get("/metrics"),
    }


def measure(user: User, cfg: DashboardBenchConfig, *, log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Time every endpoint: ``warmup`` calls and one call counting its SQL queries each, then ``repeat`` rounds of
    one timed call per endpoint.  Round-robin, not endpoint after endpoint: a burst of load from another process on
    a shared machine then lands on every endpoint's samples alike instead of on one endpoint's whole series."""
    client = Client()
    client.force_login(user)
    probes = _probes(client)
    database: dict[str, tuple[int, dict[str, float]]] = {}
    for name, call in probes.items():
        for _ in range(cfg.warmup):
            call()
        # The log is cleared first: a request clears it at its start (``reset_queries``), and a capture entered with
        # older entries in it would then slice past the request's own queries.
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            call()
        # now: the next request clears the log these slice
        statements = [query["sql"] for query in captured.captured_queries]
        database[name] = (len(statements), database_work(statements))
    samples: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(cfg.repeat):
        for name, call in probes.items():
            started = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - started) * 1000)
    figures: dict[str, Any] = {}
    for name in probes:
        figures[name] = f = _summary(samples[name], *database[name])
        if log is not None:
            log(
                f"{name:<26} median {f['median_ms']:>8} ms  p95 {f['p95_ms']:>8} ms  {f['queries']:>2} queries  "
                f"{f['db_blocks']:>6} blocks"
            )
    return figures


def naive_count(cfg: DashboardBenchConfig) -> dict[str, Any]:
    """``SELECT COUNT(*) FROM uw_option_trades``: the full count the dashboard and the lean admin lists never run."""
    samples, rows = [], 0
    with connection.cursor() as cursor:
        for _ in range(cfg.count_repeat):
            started = time.perf_counter()
            cursor.execute("SELECT COUNT(*) FROM uw_option_trades")
            rows = int(cursor.fetchone()[0])
            samples.append((time.perf_counter() - started) * 1000)
    return {**_summary(samples, 1, database_work(["SELECT COUNT(*) FROM uw_option_trades"])), "rows": rows}


def _ratio(large: float, empty: float) -> float | None:
    return round(large / empty, 2) if empty else None


def bench_dashboard(
    cfg: DashboardBenchConfig,
    *,
    scratch: bool,
    progress: Callable[[int], Any] | None = None,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """The whole run (see the module docstring); the database and Redis db must be scratch: they are wiped first."""
    if cfg.rows <= 0 or cfg.repeat <= 0 or cfg.warmup < 0 or cfg.count_repeat <= 0:
        raise BenchError("--rows, --repeat and --count-repeat must be positive and --warmup at least 0")
    check_preconditions(scratch=scratch)

    def say(message: str) -> None:
        if log is not None:
            log(message)

    wipe_state()
    user = world_seed()
    # The test client's host; the request goes through every middleware (HTTPS redirect included: secure=True).
    with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"]):
        say(f"phase empty: tick tables empty, {cfg.repeat} samples per endpoint after {cfg.warmup} warm-up calls")
        empty = measure(user, cfg, log=log)
        empty_count = naive_count(cfg)
        say(f"naive COUNT(*) of uw_option_trades (empty): median {empty_count['median_ms']} ms")

        counts = tick_row_counts(cfg.rows)
        small_rows = min(cfg.rows, SMALL_ROWS)
        say(f"filling the tick tables to {', '.join(f'{t} {n:,}' for t, n in tick_row_counts(small_rows).items())}")
        first = tick_tables_fill(small_rows, progress=progress)
        say(f"phase small ({small_rows:,} option trades: every list's bounded count at its cap)")
        small = measure(user, cfg, log=log)
        small_count = naive_count(cfg)

        say(f"filling the tick tables to {', '.join(f'{t} {n:,}' for t, n in counts.items())}")
        rest = tick_tables_fill(cfg.rows, start_rows=small_rows, progress=progress)
        fill_seconds = {table: round(first[table] + rest[table], 2) for table in TICK_SHARES}
        fill_total = round(sum(fill_seconds.values()), 1)
        say(f"filled in {fill_total} s (VACUUM ANALYZE included)")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_total_relation_size('uw_option_trades'), version()")
            size_bytes, pg_version = cursor.fetchone()

        say("phase large: the same endpoints over the filled tables")
        large = measure(user, cfg, log=log)
        large_count = naive_count(cfg)
        say(f"naive COUNT(*) of uw_option_trades ({large_count['rows']:,} rows): median {large_count['median_ms']} ms")

        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(TICK_SHARES)}")
        say("phase empty_after: the tick tables truncated, the same endpoints again (brackets the load's drift)")
        empty_after = measure(user, cfg, log=log)

    # The empty figure each ratio divides by: the mean of the two empty phases, one before and one after the large
    # one, so a machine getting busier or quieter during the run does not pass for growth with the tables.
    baseline = {
        name: {key: (empty[name][key] + empty_after[name][key]) / 2 for key in ("median_ms", "p95_ms")}
        for name in ENDPOINTS
    }

    def ratios(base: dict[str, dict[str, float]], queries: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {
                "median": _ratio(large[name]["median_ms"], base[name]["median_ms"]),
                "p95": _ratio(large[name]["p95_ms"], base[name]["p95_ms"]),
                "queries": large[name]["queries"] - queries[name]["queries"],
                "db_blocks": _ratio(large[name]["db_blocks"], queries[name]["db_blocks"]),
            }
            for name in ENDPOINTS
        }

    info = store.get_redis().info("server")
    return {
        "config": {
            "rows": cfg.rows,
            "repeat": cfg.repeat,
            "warmup": cfg.warmup,
            "count_repeat": cfg.count_repeat,
            "tick_rows": counts,
            "small_tick_rows": tick_row_counts(small_rows),
            "spread_days": SPREAD_DAYS,
            "world": {
                "signals": SIGNALS,
                "open_trades": OPEN_TRADES,
                "closed_trades": CLOSED_TRADES,
                "working_orders": WORKING_ORDERS,
                "posts": POSTS,
                "unacknowledged_alerts": ALERTS,
            },
        },
        "fill_seconds": {**fill_seconds, "total": fill_total},
        "empty": empty,
        "large": large,
        "empty_after": empty_after,
        "small": small,
        "ratio_large_to_empty": ratios(baseline, empty),
        "ratio_large_to_small": ratios(small, small),
        "naive_count_ms": {"empty": empty_count, "small": small_count, "large": large_count},
        "naive_count_over_dashboard_data": _ratio(large_count["median_ms"], large["dashboard_data"]["median_ms"]),
        "uw_option_trades_bytes": int(size_bytes),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgres": str(pg_version).split(" on ")[0],
            "redis": info.get("redis_version"),
        },
        "at": clock.now().isoformat(),
    }
