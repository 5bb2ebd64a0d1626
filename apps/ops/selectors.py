"""Reads of the ops app: the health snapshot behind ``manage.py health``, dead-letter counts."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from apps.core import clock, queues, store
from apps.ops.models import DeadLetter
from apps.ops.services import CANARY_KEY
from apps.risk.selectors import kill_switch_is_on

# The canary runs every minute; three missed runs mean no worker consumes the ops queue (or beat is down).
CANARY_STALE_AFTER_SECONDS = 180


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

    @property
    def ok(self) -> bool:
        """Database, Redis and the broker reachable; a stale canary is reported but does not make them unreachable."""
        return self.database_ok and self.redis_ok and self.broker_ok

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
    )


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
