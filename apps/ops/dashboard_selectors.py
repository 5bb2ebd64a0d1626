"""Reads behind the operations dashboard (``admin/ops/dashboard/``), its JSON endpoint and the admin index headline.

The page polls every few seconds while the tick tables grow by millions of rows a day, so every read here is bounded:
Redis figures first (the listener's per-channel report, queue lengths, the kill switch key), then small tables or
indexed filters with a LIMIT.  Nothing here counts or scans a tick table (``uw_*``, ``ib_quotes``,
``analytics_snapshots``); ``tests/ops/test_dashboard.py`` holds the JSON endpoint to a fixed number of queries.
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import orjson
import redis
from django.conf import settings
from django.db.models import Sum

from apps.approvals import selectors as approvals_selectors
from apps.core import calendar, clock, queues, store
from apps.core.money import CONTRACT_MULTIPLIER, ZERO
from apps.distribution.models import DistributionPost
from apps.execution import selectors as execution_selectors
from apps.execution.models import Position
from apps.ingestion.feeds import FEEDS, IB_MARKET, UW_STREAM, feeds_state
from apps.ingestion.uw.stream import stream_state
from apps.ops.models import Alert
from apps.ops.selectors import HealthSnapshot, health_snapshot
from apps.risk.models import KillSwitchEvent
from apps.risk.selectors import broker_connected
from apps.signals.models import Signal

SERIES_KEY = "ops:dashboard:series"
# A regular session is 6.5 h: the list keeps one session of samples (older ones are trimmed as new ones arrive).
TRADING_DAY_SECONDS = 6 * 3600 + 30 * 60
# The listener reports every second; a channel figure older than this is the last word of a listener that stopped.
LISTENER_REPORT_STALE_SECONDS = 30
POSITIONS_LIMIT = 50
ORDERS_LIMIT = 50
POSTS_LIMIT = 10
APPROVALS_LIMIT = 10
SIGNALS_LIMIT = 20
ALERTS_LIMIT = 50
# The headline counts unacknowledged alerts up to here and shows "N+" past it (a bounded count, never a full one).
HEADLINE_ALERTS_CAP = 100


def series_capacity() -> int:
    """How many samples ``ops:dashboard:series`` keeps: one trading session at ``DASHBOARD_SAMPLE_SECONDS``."""
    return TRADING_DAY_SECONDS // settings.DASHBOARD_SAMPLE_SECONDS + 1


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.01")))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def redis_memory(client: redis.Redis) -> dict[str, Any]:
    """Used and maximum memory of the platform's Redis (``maxmemory`` 0 means no limit); both ``None`` for the
    embedded default's in-process store, which has no INFO."""
    try:
        info = client.info("memory")
    except redis.RedisError:  # unreachable, or the in-process store (no INFO)
        return {"used_bytes": None, "max_bytes": None, "used_pct": None}
    used, maximum = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    return {
        "used_bytes": used,
        "max_bytes": maximum or None,
        "used_pct": round(100.0 * used / maximum, 1) if maximum else None,
    }


def ingestion_figures() -> dict[str, Any]:
    """The Unusual Whales listener's own report (``uw:stream:state`` and ``uw:stream:channels``, written every second):
    per channel the frames seen, the rate and how long ago the last frame arrived, aged to now.  A listener that
    stopped reporting leaves its last rates behind; they count as zero once the report is stale.  With Redis
    unreachable the status says so and there are no channels."""
    try:
        state = stream_state()
    except redis.RedisError as exc:
        state = {"status": f"unknown: Redis unreachable ({type(exc).__name__})"}
    now = time.time()
    updated = float(state.get("updated_at") or 0)
    report_age = round(max(0.0, now - updated), 1) if updated else None
    stale = report_age is None or report_age > LISTENER_REPORT_STALE_SECONDS
    channels: list[dict[str, Any]] = []
    for name, figures in cast(dict[str, dict[str, Any]], state.get("channels", {})).items():
        last_age = figures.get("last_frame_age_s")
        channels.append(
            {
                "channel": name,
                "frames": int(figures.get("frames") or 0),
                "rate_per_s": 0.0 if stale else float(figures.get("rate_per_s") or 0.0),
                "last_frame_age_s": (
                    None if last_age is None or not updated else round(float(last_age) + (now - updated), 1)
                ),
            }
        )
    return {
        "status": state.get("status") or "not reporting",
        "report_age_seconds": report_age,
        "stale": stale,
        "frames": int(state.get("frames") or 0),
        "dropped_frames": int(state.get("dropped_frames") or 0),
        "reconnects": int(state.get("reconnects") or 0),
        "last_error": state.get("last_error", ""),
        "rate_per_s": round(sum(float(c["rate_per_s"]) for c in channels), 1),
        "channels": channels,
    }


def feed_figures(*, ingestion: dict[str, Any], broker: dict[str, Any]) -> list[dict[str, Any]]:
    """The three pausable feeds: paused or not (the Redis flag the readers obey), who paused it and why, and what the
    feed itself reports (the UW listener's status, the IB connection).  ``paused`` is ``None`` when Redis (where the
    flags live) cannot be read."""
    try:
        states: dict[str, Any] = dict(feeds_state())
    except redis.RedisError:
        states = {feed: {"paused": None, "by": "", "since": None, "reason": "Redis unreachable"} for feed in FEEDS}
    rows = []
    for feed, description in FEEDS.items():
        state = states[feed]
        if feed == UW_STREAM:
            source = ingestion["status"] + (" (stale report)" if ingestion["stale"] else "")
        elif feed == IB_MARKET:
            source = broker["detail"] if settings.BROKER == "ib" else "not used (BROKER=paper)"
        else:
            source = "beat pollers"
        rows.append(
            {
                "feed": feed,
                "description": description,
                "paused": state["paused"],
                "by": state["by"],
                "since": _iso(state["since"]),
                "reason": state["reason"],
                "source_status": source,
            }
        )
    return rows


def kill_switch_figures(*, on: bool | None) -> dict[str, Any]:
    """The kill switch as risk reads it, with its newest history row (who, why, when)."""
    event = KillSwitchEvent.objects.order_by("-at", "-id").first()
    return {
        "on": on,
        "by": event.by if event else "",
        "reason": event.reason if event else "",
        "at": _iso(event.at) if event else None,
        "flatten": bool(event and event.flatten),
    }


def pnl_figures() -> dict[str, Any]:
    """Today's PnL: the open positions' unrealized PnL (the book's marks) plus the trades closed today (New York
    day, the ``exit_at`` index), as exact decimals."""
    open_pnl = execution_selectors.open_positions().aggregate(total=Sum("unrealized_pnl"))["total"] or ZERO
    realized = execution_selectors.realized_pnl_on_day(instant=clock.now())
    return {"open": _money(open_pnl), "realized_today": _money(realized), "total": _money(open_pnl + realized)}


def open_position_rows() -> list[dict[str, Any]]:
    """Open trades (the unit an operator closes: ``position_close(trade_id)``) with the book's mark and the
    unrealized PnL at that mark; the newest ``POSITIONS_LIMIT``."""
    trades = list(
        execution_selectors.open_trades()
        .order_by("-entry_at", "-id")
        .values("id", "ticker", "strategy", "option_symbol", "quantity", "entry_price", "entry_at", "last_mark")[
            :POSITIONS_LIMIT
        ]
    )
    marks = dict(
        Position.objects.filter(option_symbol__in={t["option_symbol"] for t in trades}).values_list(
            "option_symbol", "mark"
        )
    )
    rows = []
    for trade in trades:
        mark = marks.get(trade["option_symbol"]) or trade["last_mark"]
        pnl = (mark - trade["entry_price"]) * trade["quantity"] * CONTRACT_MULTIPLIER if mark is not None else None
        rows.append(
            {
                "trade_id": trade["id"],
                "ticker": trade["ticker"],
                "strategy": trade["strategy"],
                "option_symbol": trade["option_symbol"],
                "quantity": trade["quantity"],
                "entry_price": str(trade["entry_price"]),
                "entry_at": _iso(trade["entry_at"]),
                "mark": None if mark is None else str(mark),
                "unrealized_pnl": _money(pnl),
            }
        )
    return rows


def active_order_rows() -> list[dict[str, Any]]:
    """Orders still working at the broker (pending, submitted, partially filled), oldest first (the status index)."""
    return [
        {**row, "limit_price": str(row["limit_price"]), "created_at": _iso(row["created_at"])}
        for row in execution_selectors.working_orders().values(
            "id",
            "client_order_id",
            "option_symbol",
            "side",
            "leg",
            "quantity",
            "filled_quantity",
            "limit_price",
            "status",
            "created_at",
        )[:ORDERS_LIMIT]
    ]


def recent_post_rows() -> list[dict[str, Any]]:
    """The newest distribution posts by primary key (the insertion order; no sort over the table)."""
    rows = DistributionPost.objects.order_by("-id").values(
        "id", "kind", "tier", "status", "due_at", "sent_at", "late", "lateness_ms", "last_error"
    )[:POSTS_LIMIT]
    return [
        {
            **row,
            "due_at": _iso(row["due_at"]),
            "sent_at": _iso(row["sent_at"]),
            "last_error": row["last_error"][:200],
        }
        for row in rows
    ]


def pending_approval_rows() -> list[dict[str, Any]]:
    """What waits for a person's decision, oldest first (the status index)."""
    return [
        {**row, "created_at": _iso(row["created_at"]), "expires_at": _iso(row["expires_at"])}
        for row in approvals_selectors.pending().values(
            "id", "subject_type", "subject_id", "title", "created_at", "expires_at"
        )[:APPROVALS_LIMIT]
    ]


def pending_signal_rows() -> list[dict[str, Any]]:
    """Signals not yet decided by risk, oldest first (the status index): normally empty within a second of their
    creation, so a row that stays here means the risk stage is behind or down, and an operator may decide it."""
    rows = Signal.objects.filter(status=Signal.Status.PENDING).order_by("created_at", "id")
    return [
        {
            **row,
            "limit_price": str(row["limit_price"]),
            "confidence": str(row["confidence"]),
            "created_at": _iso(row["created_at"]),
        }
        for row in rows.values(
            "signal_id", "strategy", "ticker", "direction", "option_symbol", "limit_price", "confidence", "created_at"
        )[:SIGNALS_LIMIT]
    ]


def unacknowledged_alert_rows() -> list[dict[str, Any]]:
    """Alerts nobody acknowledged yet, newest first (the partial index ``ops_alert_unacked``)."""
    rows = Alert.objects.filter(acknowledged_at__isnull=True).order_by("-raised_at", "-id")
    return [
        {
            **row,
            "raised_at": _iso(row["raised_at"]),
            "last_seen_at": _iso(row["last_seen_at"]),
            "resolved_at": _iso(row["resolved_at"]),
        }
        for row in rows.values(
            "id", "key", "rule", "severity", "source", "summary", "raised_at", "last_seen_at", "resolved_at"
        )[:ALERTS_LIMIT]
    ]


def _health_figures(health: HealthSnapshot, memory: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": health.ok,
        "database_ok": health.database_ok,
        "database_error": health.database_error,
        "redis_ok": health.redis_ok,
        "redis_error": health.redis_error,
        "redis_memory": memory,
        "broker_ok": health.broker_ok,
        "broker_error": health.broker_error,
        "queue_depths": health.queue_depths,
        "canary_age_seconds": health.canary_age_seconds,
        "canary_stale": health.canary_stale,
        "dead_letters_last_24h": health.dead_letters_last_24h,
        "uw_drift_open": health.uw_drift_open,
    }


def dashboard_snapshot() -> dict[str, Any]:
    """Everything the dashboard shows at one instant, JSON-ready (money as decimal strings, times ISO 8601 UTC).

    ``health_snapshot()`` supplies database, Redis, queue depths, the canary and the kill switch; each panel adds its
    own bounded read.  Redis being unreachable is shown, not raised: the page is most needed during an incident (the
    database is reachable, or Django could not have authenticated the request).
    """
    health = health_snapshot()
    memory = redis_memory(store.get_redis())
    try:
        connected, detail = broker_connected()
    except redis.RedisError as exc:  # BROKER=ib: the connection state lives in Redis
        connected, detail = False, f"unknown: Redis unreachable ({type(exc).__name__})"
    broker = {"broker": settings.BROKER, "connected": connected, "detail": detail}
    ingestion = ingestion_figures()
    return {
        "at": clock.now().isoformat(),
        "health": _health_figures(health, memory),
        "broker": broker,
        "ingestion": ingestion,
        "feeds": feed_figures(ingestion=ingestion, broker=broker),
        "kill_switch": kill_switch_figures(on=health.kill_switch_on),
        "pnl": pnl_figures(),
        "positions": open_position_rows(),
        "orders": active_order_rows(),
        "posts": recent_post_rows(),
        "approvals": pending_approval_rows(),
        "signals": pending_signal_rows(),
        "alerts": unacknowledged_alert_rows(),
    }


def queue_depths() -> dict[str, int]:
    """LLEN of each stage queue on the Celery broker (a kombu queue on Redis is a list named after it); empty when
    the broker is not Redis (the embedded default runs tasks in process)."""
    url = settings.CELERY_BROKER_URL
    if url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        return {}
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in queues.ALL:
                pipe.llen(name)
            return dict(zip(queues.ALL, (int(n) for n in pipe.execute()), strict=True))
    finally:
        client.close()


def dashboard_sample() -> dict[str, Any]:
    """One point of the dashboard's charts: PnL (total, open, realized today), the ingestion rate (all channels and
    per channel) and each stage queue's depth, at the platform clock's time (``t``, epoch seconds).

    Beat takes one every ``DASHBOARD_SAMPLE_SECONDS``, so it reads only what the charts draw: two small queries
    (open positions, today's closed trades) and three Redis round trips.  Chart figures are floats: they are drawn,
    never added up; the exact decimals stay in the book.
    """
    pnl = pnl_figures()
    ingestion = ingestion_figures()
    return {
        "t": round(clock.now().timestamp(), 3),
        "pnl_total": float(pnl["total"]),
        "pnl_open": float(pnl["open"]),
        "pnl_realized": float(pnl["realized_today"]),
        "ingest_rate": ingestion["rate_per_s"],
        "channel_rates": {c["channel"]: c["rate_per_s"] for c in ingestion["channels"]},
        "queues": queue_depths(),
    }


def _session_start(now: datetime) -> float:
    """Midnight New York of the day containing ``now``: the intraday charts start there."""
    day = calendar.market_day(now)
    return datetime.combine(day, datetime.min.time(), tzinfo=calendar.NEW_YORK).timestamp()


def dashboard_series(*, since: float | None = None) -> list[dict[str, Any]]:
    """Today's samples (New York day), oldest first; with ``since`` only the ones after it.

    Samples are appended in time order, so a poll asking for what is new reads only the list's tail (about
    ``(now - since) / DASHBOARD_SAMPLE_SECONDS`` entries), not the whole day.
    """
    now = clock.now()
    start = _session_start(now)
    floor = max(start, since) if since is not None else start
    client = store.get_redis()
    try:
        if since is not None:
            wanted = int((now.timestamp() - since) / settings.DASHBOARD_SAMPLE_SECONDS) + 2
            tail = min(max(wanted, 2), series_capacity())
            raw = client.lrange(SERIES_KEY, -tail, -1)
        else:
            raw = client.lrange(SERIES_KEY, 0, -1)
    except redis.RedisError:
        return []  # the charts keep what they have; the Health panel says why
    samples = []
    for item in cast(list[str], raw):
        try:
            sample = orjson.loads(item)
        except orjson.JSONDecodeError:
            continue  # a foreign entry in our key is skipped, never drawn
        if isinstance(sample, dict) and float(sample.get("t", 0)) > floor:
            samples.append(sample)
    return samples


def headline_status() -> dict[str, Any]:
    """The admin index's status line: a few figures, each with a level (``ok``, ``warn``, ``bad``), so a person
    opening the console sees at once whether anything needs them.  Bounded like the dashboard."""
    health = health_snapshot()
    items: list[dict[str, str]] = []

    def item(label: str, value: str, level: str) -> None:
        items.append({"label": label, "value": value, "level": level})

    item("Database", "ok" if health.database_ok else "DOWN", "ok" if health.database_ok else "bad")
    item("Redis", "ok" if health.redis_ok else "DOWN", "ok" if health.redis_ok else "bad")
    kill = health.kill_switch_on
    item(
        "Kill switch",
        "unknown" if kill is None else ("ENGAGED" if kill else "off"),
        "warn" if kill is None else ("bad" if kill else "ok"),
    )
    if health.redis_ok:
        connected, _detail = broker_connected()
        item(
            "Broker", f"{settings.BROKER} {'connected' if connected else 'DISCONNECTED'}", "ok" if connected else "bad"
        )
        paused = [feed for feed, state in feeds_state().items() if state["paused"]]
        item("Feeds", f"paused: {', '.join(paused)}" if paused else "all live", "warn" if paused else "ok")
        backlog = sum(health.queue_depths.values())
        item("Queued tasks", str(backlog), "ok" if backlog < 1000 else "warn")
        item(
            "Worker canary",
            "stale" if health.canary_stale else f"{health.canary_age_seconds:.0f} s ago",
            "warn" if health.canary_stale else "ok",
        )
    if health.database_ok:
        open_alerts = Alert.objects.filter(acknowledged_at__isnull=True, resolved_at__isnull=True)
        count = open_alerts[: HEADLINE_ALERTS_CAP + 1].count()
        shown = f"{HEADLINE_ALERTS_CAP}+" if count > HEADLINE_ALERTS_CAP else str(count)
        item("Unacknowledged alerts", shown, "ok" if count == 0 else "bad")
        pnl = pnl_figures()
        item("PnL today", f"${pnl['total']}", "ok" if Decimal(pnl["total"]) >= 0 else "warn")
    return {"ok": health.ok, "at": clock.now().isoformat(), "items": items}
