"""Reads of the ops app: the health snapshot behind ``manage.py health``, dead-letter counts."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Min
from django.db.models.functions import Coalesce

from apps.core import clock, queues, store
from apps.execution.models import BrokerCommand, BrokerMessage, ReconciliationIssue
from apps.ops.models import DeadLetter
from apps.ops.services import CANARY_KEY
from apps.risk.selectors import BROKER_STATE_KEY, kill_switch_is_on

# The canary runs every minute; three missed runs mean no worker consumes the ops queue (or beat is down).
CANARY_STALE_AFTER_SECONDS = 180
# The IB listener answers a command within a second or two; one queued or sent for longer means it is not running,
# hung, or waiting on a TWS that does not answer.
IB_COMMAND_STUCK_AFTER_SECONDS = 30
# The listener refreshes execution:broker:state every second (its "since" is the time of that report).
IB_STATE_STALE_AFTER_SECONDS = 30


@dataclass(frozen=True)
class HealthSnapshot:
    at: str
    database_ok: bool
    database_error: str
    redis_ok: bool
    redis_error: str
    redis_in_process: bool
    redis_used_memory: int | None
    broker: str
    broker_ok: bool
    broker_error: str
    queue_depths: dict[str, int] = field(default_factory=dict)
    canary_at: str | None = None
    canary_age_seconds: float | None = None
    canary_stale: bool = True
    canary_error: str = ""
    kill_switch_on: bool | None = None
    dead_letters_last_24h: int | None = None
    # The Unusual Whales listener's last report (empty when none ever ran against this Redis) and open drift events.
    uw_stream: dict[str, Any] = field(default_factory=dict)
    uw_drift_open: int | None = None
    # Where orders go (settings.BROKER): "paper" runs in process; "ib" must be connected through the IB listener.
    trading_broker: str = "paper"
    trading_broker_ok: bool = True
    trading_broker_detail: str = ""
    # BROKER=ib only: the listener's connection report and what waits for an operator (``_trading_broker``).
    ib: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Database, Redis and the broker reachable, and with BROKER=ib the IB connection up; a stale canary, open
        reconciliation issues, unacknowledged alerts and stuck commands are reported but do not fail it."""
        return self.database_ok and self.redis_ok and self.broker_ok and self.trading_broker_ok

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def dead_letters_since(*, since: datetime) -> int:
    """How many task runs failed since ``since`` (the ``at`` index makes this a range scan)."""
    return DeadLetter.objects.filter(at__gte=since).count()


def _database_check() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return False, f"{type(exc).__name__}: {exc}".strip()
    return True, ""


def _broker_kind(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else url


def _queue_depths(broker_url: str) -> dict[str, int]:
    """LLEN of each stage queue: with Redis as the broker (kombu), a queue is a list named after it."""
    client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        pipe = client.pipeline(transaction=False)
        for name in queues.ALL:
            pipe.llen(name)
        return dict(zip(queues.ALL, (int(n) for n in pipe.execute()), strict=True))
    finally:
        client.close()


def _used_memory(client: redis.Redis) -> int | None:
    try:
        return int(client.info("memory").get("used_memory", 0))
    except redis.ResponseError:
        # The embedded default's in-process store answers PING but has no INFO: memory is simply not known there.
        return None


def health_snapshot() -> HealthSnapshot:
    """Database, Redis, broker queue depths, the worker canary's age and the kill switch, each checked separately so
    one unreachable store does not hide the state of the others."""
    now = clock.now()
    database_ok, database_error = _database_check()
    dead_letters = dead_letters_since(since=now - timedelta(hours=24)) if database_ok else None

    redis_ok, redis_error, used_memory = False, "", None
    canary_at = None
    canary_age = None
    canary_error = ""
    kill_switch = None
    client = store.get_redis()
    try:
        client.ping()
        used_memory = _used_memory(client)
        canary_raw = client.get(CANARY_KEY)
        redis_ok = True
    except redis.RedisError as exc:
        redis_error = f"{type(exc).__name__}: {exc}"
    else:
        if canary_raw:
            try:
                stamp = datetime.fromisoformat(cast(str, canary_raw))  # decode_responses
            except ValueError:
                canary_error = f"{CANARY_KEY} holds {canary_raw!r}, not an ISO timestamp"
            else:
                canary_at = stamp.isoformat()
                canary_age = round((now - stamp).total_seconds(), 3)

    if redis_ok:
        # Risk's own reading: the Redis key, or its newest history row when the key is missing (a flushed Redis).
        try:
            kill_switch = kill_switch_is_on()
        except (redis.RedisError, DatabaseError):
            kill_switch = None

    broker_url = settings.CELERY_BROKER_URL
    broker = _broker_kind(broker_url)
    broker_ok, broker_error = True, ""
    depths: dict[str, int] = {}
    if broker in ("redis", "rediss", "unix"):
        try:
            depths = _queue_depths(broker_url)
        except redis.RedisError as exc:
            broker_ok, broker_error = False, f"{type(exc).__name__}: {exc}"

    return HealthSnapshot(
        at=now.isoformat(),
        database_ok=database_ok,
        database_error=database_error,
        redis_ok=redis_ok,
        redis_error=redis_error,
        redis_in_process=not settings.REDIS_URL,
        redis_used_memory=used_memory,
        broker=broker,
        broker_ok=broker_ok,
        broker_error=broker_error,
        queue_depths=depths,
        canary_at=canary_at,
        canary_age_seconds=canary_age,
        canary_stale=canary_age is None or canary_age > CANARY_STALE_AFTER_SECONDS,
        canary_error=canary_error,
        kill_switch_on=kill_switch,
        dead_letters_last_24h=dead_letters,
        uw_stream=_uw_stream(client) if redis_ok else {},
        uw_drift_open=_uw_drift_open(client) if redis_ok else None,
        **_trading_broker(client, now=now, redis_ok=redis_ok, database_ok=database_ok),
    )


def _trading_broker(client: redis.Redis, *, now: datetime, redis_ok: bool, database_ok: bool) -> dict[str, Any]:
    """The ``trading_broker*`` and ``ib`` fields of the snapshot.  With the paper broker there is nothing to reach;
    with IB, a missing or disconnected ``execution:broker:state`` fails the health (orders cannot reach the broker)."""
    if settings.BROKER != "ib":
        return {
            "trading_broker": settings.BROKER,
            "trading_broker_ok": True,
            "trading_broker_detail": "paper broker in process",
            "ib": {},
        }
    ib: dict[str, Any] = {"state": None}
    ok, detail = False, "connection state unknown: Redis is unreachable"
    if redis_ok:
        try:
            state = cast(dict[str, str], client.hgetall(BROKER_STATE_KEY))  # decode_responses
        except redis.RedisError as exc:
            detail = f"connection state unreadable ({type(exc).__name__}: {exc})"
        else:
            ok, detail, ib["state"] = _ib_state(state, now=now)
    if database_ok:
        ib.update(_ib_waiting(now=now))
    return {"trading_broker": "ib", "trading_broker_ok": ok, "trading_broker_detail": detail, "ib": ib}


def _ib_state(state: dict[str, str], *, now: datetime) -> tuple[bool, str, dict[str, Any] | None]:
    if not state:
        return False, f"the IB listener has reported no connection state ({BROKER_STATE_KEY} is missing)", None
    connected = state.get("connected") == "1"
    since = state.get("since", "")
    try:
        age: float | None = round((now - datetime.fromisoformat(since)).total_seconds(), 1)
    except (TypeError, ValueError):  # not a timestamp, or one without a time zone
        age = None
    report = {
        "connected": connected,
        "since": since,
        "report_age_seconds": age,
        "stale": age is None or age > IB_STATE_STALE_AFTER_SECONDS,
        "detail": state.get("detail", ""),
        "account": state.get("account", ""),
        "host": state.get("host", ""),
        "client_id": state.get("client_id", ""),
    }
    words = f"{'connected' if connected else 'DISCONNECTED'} (reported {since or '?'})"
    if report["detail"]:
        words += f": {report['detail']}"
    return connected, words, report


def _ib_waiting(*, now: datetime) -> dict[str, Any]:
    """What waits for an operator or for the listener: open reconciliation issues, unacknowledged alerts, and
    commands queued or sent (a queued one has no ``sent_at``) longer than ``IB_COMMAND_STUCK_AFTER_SECONDS`` ago."""
    cutoff = now - timedelta(seconds=IB_COMMAND_STUCK_AFTER_SECONDS)
    try:
        stuck = (
            BrokerCommand.objects.filter(status__in=(BrokerCommand.Status.QUEUED, BrokerCommand.Status.SENT))
            .annotate(waiting_since=Coalesce("sent_at", "created_at"))
            .filter(waiting_since__lt=cutoff)
            .aggregate(count=Count("id"), oldest=Min("waiting_since"))
        )
        return {
            "open_reconciliation_issues": ReconciliationIssue.objects.filter(resolved=False).count(),
            "unacknowledged_alerts": BrokerMessage.objects.filter(alert=True, acknowledged=False).count(),
            "stuck_commands": stuck["count"],
            "oldest_stuck_command_age_seconds": (
                round((now - stuck["oldest"]).total_seconds(), 1) if stuck["oldest"] else None
            ),
        }
    except DatabaseError:
        return {}


def _uw_stream(client: redis.Redis) -> dict[str, Any]:
    from apps.ingestion.uw.stream import stream_state

    try:
        state = stream_state(store=client)
    except (redis.RedisError, ValueError):
        return {}
    if not state.get("status"):
        return {}
    updated = float(state.get("updated_at") or 0)
    return {
        "status": state["status"],
        "paused": state["paused"],
        "report_age_seconds": round(max(0.0, time.time() - updated), 1),
        "frames": int(state.get("frames") or 0),
        "buffered_frames": int(state.get("buffered_frames") or 0),
        "dropped_frames": int(state.get("dropped_frames") or 0),
        "reconnects": int(state.get("reconnects") or 0),
        "last_error": state.get("last_error", ""),
    }


def _uw_drift_open(client: redis.Redis) -> int | None:
    from apps.ingestion.drift import OPEN_KEY, OPEN_TOTAL

    try:
        total = client.hget(OPEN_KEY, OPEN_TOTAL)
    except redis.RedisError:
        return None
    return int(cast(str, total)) if total else 0


# --- Readings of the alert evaluator (apps/ops/alerts.py) and the metrics -------------------------------------------


@dataclass(frozen=True)
class FeedReading:
    """One market data feed as the alerting sees it: in use here, paused by an operator, and the age of its newest
    frame (``None`` when it never delivered one that is still known)."""

    feed: str
    in_use: bool
    paused: bool
    last_frame_at: datetime | None
    age_seconds: float | None


def _wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _uw_stream_last_frame(client: redis.Redis) -> datetime | None:
    """The listener reports every second, with each channel's last-frame age as of that report (wall clock)."""
    from apps.ingestion.uw.stream import stream_state

    state = stream_state(store=client)
    ages = [float(c["last_frame_age_s"]) for c in state.get("channels", {}).values() if "last_frame_age_s" in c]
    reported = float(state.get("updated_at") or 0)
    if not ages or not reported:
        return None
    return _wall(reported - min(ages))


def _stamped_last_frame(client: redis.Redis, feed: str) -> datetime | None:
    """Feeds without a listener of their own stamp ``ingestion:last_frame_at:<feed>`` (epoch seconds) after storing."""
    from apps.ingestion.redis_keys import feed_last_frame_key

    raw = client.get(feed_last_frame_key(feed))
    try:
        return _wall(float(cast(str, raw))) if raw else None
    except ValueError:
        return None


def feed_readings() -> list[FeedReading]:
    """Each feed of ``apps.ingestion.feeds.FEEDS``: whether this deployment uses it (the UW feeds with a UW token,
    ``ib_market`` with ``BROKER=ib``), its pause flag, and its newest frame, aged on the wall clock that stamped it."""
    from apps.ingestion.feeds import FEEDS, IB_MARKET, UW_STREAM, feed_is_paused

    client = store.get_redis()
    now = _wall(time.time())
    readings = []
    for feed in FEEDS:
        last = _uw_stream_last_frame(client) if feed == UW_STREAM else _stamped_last_frame(client, feed)
        in_use = settings.BROKER == "ib" if feed == IB_MARKET else bool(settings.UW_API_TOKEN)
        age = round(max(0.0, (now - last).total_seconds()), 3) if last is not None else None
        readings.append(FeedReading(feed, in_use, feed_is_paused(feed, store=client), last, age))
    return readings


@dataclass(frozen=True)
class CanaryReading:
    """One stage queue's canary: when a worker last consumed one, and since when one has been waiting unconsumed."""

    queue: str
    consumed_at: datetime | None
    age_seconds: float | None
    pending_since: datetime | None
    pending_seconds: float | None
    last_sent_at: datetime | None


def _stamp(raw: object) -> datetime | None:
    try:
        return datetime.fromisoformat(cast(str, raw)) if raw else None
    except ValueError:
        return None


def canary_readings() -> list[CanaryReading]:
    """Every stage queue's canary keys (``ops:canary:<queue>``, ``ops:canary:pending:<queue>``,
    ``ops:canary:sent:<queue>``, written by ``apps.ops.services``), aged on the platform clock that stamped them."""
    from apps.ops.services import canary_consumed_key, canary_pending_key, canary_sent_key

    client = store.get_redis()
    pipe = client.pipeline(transaction=False)
    for name in queues.ALL:
        pipe.get(canary_consumed_key(name))
        pipe.get(canary_pending_key(name))
        pipe.get(canary_sent_key(name))
    raw = pipe.execute()
    now = clock.now()

    def age(moment: datetime | None) -> float | None:
        return round((now - moment).total_seconds(), 3) if moment is not None else None

    readings = []
    for index, name in enumerate(queues.ALL):
        consumed, pending, sent = (_stamp(value) for value in raw[3 * index : 3 * index + 3])
        readings.append(CanaryReading(name, consumed, age(consumed), pending, age(pending), sent))
    return readings


def redis_memory() -> tuple[int, int] | None:
    """Redis ``used_memory`` and ``maxmemory`` (0: no limit), or ``None`` where there is no INFO (in-process store)."""
    try:
        info = store.get_redis().info("memory")
    except redis.ResponseError:
        return None
    return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))


def queue_depths() -> dict[str, int]:
    """Messages waiting in each stage queue of the Redis broker; empty when the broker is not Redis (in process)."""
    broker_url = settings.CELERY_BROKER_URL
    if _broker_kind(broker_url) not in ("redis", "rediss", "unix"):
        return {}
    return _queue_depths(broker_url)
