"""Serving the metrics: the web process's ``/metrics`` view, the endpoint of workers and listeners on ``METRICS_PORT``,
and the scrape-time gauges read from Redis and PostgreSQL (``PlatformCollector``).

Every process group sums the values its processes recorded (``prometheus_client``'s ``MultiProcessCollector`` over
``PROMETHEUS_MULTIPROC_DIR``, see ``tradingplatform.metrics_dir``).  Only the web process adds ``PlatformCollector``:
the queues, the kill switch and the feeds are one fact each, read once per scrape, not once per worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, cast

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from apps.core import clock, queues, store
from apps.ops.metrics import PLATFORM_GAUGES

logger = logging.getLogger(__name__)

CANARY_QUEUE_KEY = "ops:canary:{queue}"
# The canary every worker of the ops queue stamps (``apps.ops.services.CANARY_KEY``) is that queue's canary.
CANARY_DEFAULT_QUEUE = queues.OPS
# A scrape must answer within Prometheus's timeout (10 s by default) even when a store hangs.
STORE_TIMEOUT_SECONDS = 2.0


def registry_multiprocess() -> CollectorRegistry:
    """A registry summing every process of this group (the files in ``PROMETHEUS_MULTIPROC_DIR``)."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry)
    return registry


# --- the web process -------------------------------------------------------------------------------------------------
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` of the web process: what its processes recorded (requests, database, the platform's counters)
    plus the scrape-time gauges.  Not behind authentication: scrape it from inside the network only."""
    registry = registry_multiprocess()
    registry.register(PlatformCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# --- workers and listeners -------------------------------------------------------------------------------------------
_endpoint_lock = threading.Lock()
_endpoint_port: int | None = None


def metrics_endpoint_start(*, port: int | None = None, address: str | None = None) -> int | None:
    """Serve this process group's metrics on ``port`` (default ``METRICS_PORT``; 0 = none) from a daemon thread of
    this process, and return the port, or None when there is none to serve (a port taken is logged at ERROR).  Call
    it in the process that owns the group: a worker's main process, a listener.  A second call in the same process
    serves nothing new."""
    global _endpoint_port
    port = settings.METRICS_PORT if port is None else port
    if not port:
        return None
    address = settings.METRICS_ADDRESS if address is None else address
    with _endpoint_lock:
        if _endpoint_port is None:
            try:
                start_http_server(port, addr=address, registry=registry_multiprocess())
            except OSError as exc:
                # A worker or a listener keeps doing its work without an endpoint rather than stop trading over a
                # port; the ERROR says why its target is down in Prometheus.
                logger.error("metrics NOT served: cannot listen on %s:%d: %s", address, port, exc)
                return None
            _endpoint_port = port
            logger.info("metrics served on http://%s:%d/metrics", address, port, extra={"metrics_port": port})
    return _endpoint_port


# --- scrape-time gauges ----------------------------------------------------------------------------------------------
class PlatformCollector:
    """The gauges of ``apps.ops.metrics.PLATFORM_GAUGES``, read at each scrape.

    Reads are bounded: one Redis pipeline, one LLEN per stage queue on the broker, the replication lag (one row) and
    the open alerts grouped by severity (at most one open row per alert key).  Each store is read on its own: with
    Redis or the database down, the scrape still answers with what the other could tell, and the failure is logged
    once until that store answers again.
    """

    _failing: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        families = {
            name: GaugeMetricFamily(name, text, labels=list(labels)) for name, (text, labels) in PLATFORM_GAUGES.items()
        }
        self._guarded("redis", lambda: self._redis(families))
        self._guarded("broker", lambda: self._queues(families))
        self._guarded("database", lambda: self._database(families))
        yield from families.values()

    def describe(self) -> Iterable[Metric]:
        return []

    def _guarded(self, store_name: str, read: Any) -> None:
        try:
            read()
        except (redis.RedisError, DatabaseError, OSError, ValueError) as exc:
            if store_name not in self._failing:
                self._failing.add(store_name)
                logger.warning("metrics: %s not readable for this scrape: %s: %s", store_name, type(exc).__name__, exc)
            return
        if store_name in self._failing:
            self._failing.discard(store_name)
            logger.info("metrics: %s readable again", store_name)

    def _redis(self, families: dict[str, GaugeMetricFamily]) -> None:
        from apps.ingestion import redis_keys
        from apps.ingestion.feeds import FEEDS, IB_MARKET, UW_REST, UW_STREAM, feed_pause_key
        from apps.ingestion.uw.stream import CHANNELS_KEY, STATE_KEY
        from apps.ops.selectors import IB_STATE_STALE_AFTER_SECONDS
        from apps.ops.services import CANARY_KEY
        from apps.risk.selectors import BROKER_STATE_KEY, KILL_SWITCH_KEY, kill_switch_is_on

        client = _redis_client()
        canary_keys = [CANARY_KEY, *(CANARY_QUEUE_KEY.format(queue=q) for q in queues.ALL)]
        stamped_feeds = (IB_MARKET, UW_REST)
        pipe = client.pipeline(transaction=False)
        pipe.get(KILL_SWITCH_KEY)
        pipe.hgetall(BROKER_STATE_KEY)
        pipe.mget(canary_keys)
        pipe.mget([feed_pause_key(feed) for feed in FEEDS])
        pipe.mget([redis_keys.feed_last_frame_key(feed) for feed in stamped_feeds])
        pipe.hgetall(STATE_KEY)
        pipe.hgetall(CHANNELS_KEY)
        kill, broker_state, canaries, paused, stamps, stream_state, stream_channels = pipe.execute()
        wall = time.time()
        now = clock.now()

        if kill is None:
            # A flushed Redis: risk's own reading falls back to the newest history row (and restores the key).
            try:
                kill = "1" if kill_switch_is_on() else "0"
            except DatabaseError:
                kill = None  # the database section reports its own failure; the other Redis gauges still count
        if kill is not None:
            families["tp_kill_switch_engaged"].add_metric([], 1.0 if kill == "1" else 0.0)

        state = cast(dict[str, str], broker_state)
        if state or settings.BROKER == "ib":
            families["tp_ib_connected"].add_metric(
                [], 1.0 if _ib_live(state, now, IB_STATE_STALE_AFTER_SECONDS) else 0.0
            )

        ages: dict[str, float] = {}
        by_queue = dict(zip(queues.ALL, canaries[1:], strict=True))
        if by_queue.get(CANARY_DEFAULT_QUEUE) is None and canaries[0] is not None:
            by_queue[CANARY_DEFAULT_QUEUE] = canaries[0]
        for queue, value in by_queue.items():
            age = _age_seconds(value, now=now, wall=wall)
            if age is not None:
                ages[queue] = age
        for queue, age in ages.items():
            families["tp_canary_age_seconds"].add_metric([queue], age)

        for feed, flag in zip(FEEDS, paused, strict=True):
            families["tp_feed_paused"].add_metric([feed], 1.0 if flag else 0.0)
        feed_ages: dict[str, float | None] = {
            UW_STREAM: _uw_stream_age(cast(dict[str, str], stream_state), cast(dict[str, str], stream_channels), wall)
        }
        for feed, stamp in zip(stamped_feeds, stamps, strict=True):
            feed_ages[feed] = _age_seconds(stamp, now=now, wall=wall)
        for feed, feed_age in feed_ages.items():
            if feed_age is not None:
                families["tp_feed_last_frame_age_seconds"].add_metric([feed], feed_age)

        try:
            memory = cast(dict[str, Any], client.info("memory"))
        except redis.ResponseError:
            return  # the embedded default's in-process store has no INFO
        families["tp_redis_memory_used_bytes"].add_metric([], float(memory.get("used_memory", 0)))
        families["tp_redis_maxmemory_bytes"].add_metric([], float(memory.get("maxmemory", 0)))

    def _queues(self, families: dict[str, GaugeMetricFamily]) -> None:
        from apps.ops.selectors import queue_depths

        for queue, depth in queue_depths().items():
            families["tp_queue_depth"].add_metric([queue], float(depth))

    def _database(self, families: dict[str, GaugeMetricFamily]) -> None:
        from apps.ops.models import Alert

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT CASE WHEN pg_is_in_recovery() "
                    "THEN COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) ELSE 0 END"
                )
                row = cursor.fetchone()
            families["tp_postgres_replication_lag_seconds"].add_metric([], float(row[0]) if row else 0.0)
        counts = dict.fromkeys(Alert.Severity.values, 0)
        for severity, n in (
            Alert.objects.filter(resolved_at__isnull=True)
            .order_by()
            .values_list("severity")
            .annotate(n=Count("id"))
            .values_list("severity", "n")
        ):
            counts[severity] = n
        for severity, n in counts.items():
            families["tp_alerts_open"].add_metric([severity], float(n))


_clients: dict[str, redis.Redis] = {}


def _redis_client() -> redis.Redis:
    """The platform's Redis with short timeouts (a hung Redis must not hang the scrape); the in-process store on the
    embedded default."""
    url = settings.REDIS_URL
    if not url:
        return store.get_redis()
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=STORE_TIMEOUT_SECONDS,
            socket_connect_timeout=STORE_TIMEOUT_SECONDS,
        )
    return client


def _age_seconds(value: object, *, now: datetime, wall: float) -> float | None:
    """Seconds since a stamp: an ISO timestamp (platform clock, like the canary) or epoch seconds (wall clock)."""
    if value is None or value == "":
        return None
    text = str(value)
    with contextlib.suppress(ValueError):  # not epoch seconds: an ISO timestamp, below
        return max(0.0, wall - float(text))
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return max(0.0, (now - stamp).total_seconds())


def _ib_live(state: dict[str, str], now: datetime, stale_after: float) -> bool:
    """Connected, and reported recently: the listener refreshes its report every second, so an old report means the
    listener is gone whatever it last said."""
    if state.get("connected") != "1":
        return False
    age = _age_seconds(state.get("since"), now=now, wall=time.time())
    return age is not None and age <= stale_after


def _uw_stream_age(state: dict[str, str], channels: dict[str, str], wall: float) -> float | None:
    """The listener writes each channel's last-frame age as of its report (``updated_at``): the newest frame's age now
    is the smallest of those plus the time since the report."""
    import orjson

    try:
        updated = float(state.get("updated_at") or "")
    except ValueError:
        return None
    since_report = max(0.0, wall - updated)
    best: float | None = None
    for raw in channels.values():
        try:
            age = float(orjson.loads(raw)["last_frame_age_s"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        best = age if best is None else min(best, age)
    return None if best is None else best + since_report
