"""Every Prometheus metric of the platform, defined once, and the one-line helpers the code paths record them with.

Two kinds:

- **Recorded** where the work happens (counters and histograms below).  ``prometheus_client`` runs in multiprocess
  mode (``tradingplatform.metrics_dir``), so a value recorded in a prefork child is a write to a memory-mapped file:
  no Redis or database round trip, safe to call on hot paths and from any process.  Each process group serves the
  sum of its processes (``apps.ops.exporter``).
- **Read at scrape time** from Redis and PostgreSQL by ``apps.ops.exporter.PlatformCollector``, only in the web
  process (one reading, not one per worker).  Their names and help texts are in ``PLATFORM_GAUGES`` here.

Label values are bounded: each helper maps what it is given onto a short known set (a channel family, a stage, an
outcome) and anything else onto ``other``, so a bad frame or a file name never creates a new time series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from prometheus_client import Counter, Histogram

OTHER = "other"

# --- label bounds ----------------------------------------------------------------------------------------------------
# Where frames come from: the UW socket listener, the UW REST pollers, Interactive Brokers; replays, files and
# benchmarks are "other".
SOURCES = frozenset({"uw_ws", "uw_rest", "ib"})
# Label values are short lower-case names (channel families, REST endpoints, dotted task names, drift streams such as
# ``ws:price``); ``_NAME_RE`` keeps anything else (a garbled channel from the wire) out.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,79}$")
# At most this many distinct values per label: a label that keeps growing is a bug, capped rather than exploding.
_MAX_VALUES = 64
_seen: dict[str, set[str]] = {}


def _bounded(label: str, value: str) -> str:
    """``value`` when it looks like a name and ``label`` has not reached ``_MAX_VALUES`` distinct values yet."""
    if not _NAME_RE.match(value):
        return OTHER
    seen = _seen.setdefault(label, set())
    if value in seen:
        return value
    if len(seen) >= _MAX_VALUES:
        return OTHER
    seen.add(value)
    return value


def source_label(source: str) -> str:
    return source if source in SOURCES else OTHER


def channel_label(channel: str) -> str:
    """The family of a socket channel (``price:SPY`` -> ``price``), an IB or REST feed name as is."""
    return _bounded("channel", channel.partition(":")[0].lower())


# --- recorded metrics ------------------------------------------------------------------------------------------------
FRAMES_IN = Counter(
    "tp_frames_in_total",
    "Frames (socket lines, REST items, IB ticks) that reached ingestion, by source and channel family.",
    ["source", "channel"],
)
FRAMES_QUARANTINED = Counter(
    "tp_frames_quarantined_total",
    "Frames ingestion could not read and kept in the quarantine (uw_quarantine) or skipped (IB ticks).",
    ["source", "channel"],
)
DRIFT_EVENTS = Counter(
    "tp_drift_events_total",
    "New schema drift events (a new, missing or re-typed field) per UW stream (ws:<family>, rest:<endpoint>).",
    ["stream", "kind"],
)
TASKS = Counter(
    "tp_tasks_total",
    "Celery task runs that ended, by task name, stage (the name's first part) and outcome.",
    ["task", "stage", "outcome"],
)
STAGE_LATENCY = Histogram(
    "tp_stage_latency_seconds",
    "Seconds from a task's publication (the message's tp_published_at header) to the end of its run: queue wait "
    "plus run time, per stage.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
ORDER_OUTCOMES = Counter(
    "tp_order_outcomes_total",
    "Orders that reached a terminal state (filled, cancelled, rejected), counted after the commit.",
    ["outcome"],
)
DELIVERY_LAG = Histogram(
    "tp_delivery_lag_seconds",
    "Seconds a delivery went out after it was due: Discord posts per tier (vs due_at), X and Reddit posts (vs the "
    "earliest time they were allowed out).",
    ["channel", "tier"],
    buckets=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
AI_TOKENS = Counter(
    "tp_ai_tokens_total",
    "Tokens of answered Claude calls, by kind of call (report, explanation) and direction (input, output).",
    ["kind", "direction"],
)
DEAD_LETTERS = Counter("tp_dead_letters_total", "Failed task runs recorded as dead letters (ops_dead_letters).")

TASK_OUTCOMES = frozenset({"success", "failure", "retry", "revoked", "ignored", "rejected"})
ORDER_TERMINAL = frozenset({"filled", "cancelled", "rejected"})

# --- scrape-time gauges (apps.ops.exporter.PlatformCollector) ------------------------------------------------------
PLATFORM_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "tp_queue_depth": ("Messages waiting in each stage queue of the Redis broker (LLEN).", ("queue",)),
    "tp_ib_connected": ("1 while the IB listener reports a live TWS connection (execution:broker:state).", ()),
    "tp_feed_last_frame_age_seconds": ("Seconds since the newest frame of each market data feed.", ("feed",)),
    "tp_feed_paused": ("1 while an operator has paused the feed (control:<feed>:paused).", ("feed",)),
    "tp_kill_switch_engaged": ("1 while the kill switch is on (risk:kill_switch).", ()),
    "tp_redis_memory_used_bytes": ("Redis used_memory.", ()),
    "tp_redis_maxmemory_bytes": ("Redis maxmemory (0: no limit).", ()),
    "tp_postgres_replication_lag_seconds": (
        "Seconds the database replica is behind its primary (0 on a primary).",
        (),
    ),
    "tp_canary_age_seconds": (
        "Seconds since a worker last ran the ops canary (ops:canary = queue 'all', ops:canary:<queue> per queue).",
        ("queue",),
    ),
    "tp_alerts_open": ("Open (unresolved) alerts by severity (ops_alerts).", ("severity",)),
}


# --- recording helpers -----------------------------------------------------------------------------------------------
def frames_in(*, source: str, channel: str, n: int = 1) -> None:
    if n > 0:
        FRAMES_IN.labels(source_label(source), channel_label(channel)).inc(n)


def frames_quarantined(*, source: str, channel: str, n: int = 1) -> None:
    if n > 0:
        FRAMES_QUARANTINED.labels(source_label(source), channel_label(channel)).inc(n)


def frames_counted(*, source: str, arrived: Mapping[str, int], quarantined: Mapping[str, int]) -> None:
    """One ingestion batch: lines per channel that arrived, and those of them quarantined."""
    for channel, n in arrived.items():
        frames_in(source=source, channel=channel, n=n)
    for channel, n in quarantined.items():
        frames_quarantined(source=source, channel=channel, n=n)


def drift_event(*, stream: str, kind: str) -> None:
    DRIFT_EVENTS.labels(_bounded("stream", stream), _bounded("drift_kind", kind)).inc()


def task_finished(*, task: str, outcome: str, latency_seconds: float | None) -> None:
    """One task run ended; ``latency_seconds`` from its publication, when its message carried the time."""
    stage = _bounded("stage", task.partition(".")[0] or OTHER)
    TASKS.labels(_bounded("task", task), stage, outcome if outcome in TASK_OUTCOMES else OTHER).inc()
    if latency_seconds is not None and latency_seconds >= 0:
        STAGE_LATENCY.labels(stage).observe(latency_seconds)


def order_outcome(*, outcome: str) -> None:
    ORDER_OUTCOMES.labels(outcome if outcome in ORDER_TERMINAL else OTHER).inc()


def delivery_lag(*, channel: str, tier: str, seconds: float) -> None:
    DELIVERY_LAG.labels(_bounded("delivery_channel", channel), _bounded("tier", tier.lower())).observe(
        max(seconds, 0.0)
    )


def ai_tokens(*, kind: str, input_tokens: int, output_tokens: int) -> None:
    label = _bounded("ai_kind", kind)
    if input_tokens > 0:
        AI_TOKENS.labels(label, "input").inc(input_tokens)
    if output_tokens > 0:
        AI_TOKENS.labels(label, "output").inc(output_tokens)


def dead_letter() -> None:
    DEAD_LETTERS.inc()
