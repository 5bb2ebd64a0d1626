"""The Redis keys ingestion writes (docs/pipeline.md), and the one write path that keeps them monotonic.

"Latest" hashes carry ``ts_ms``, the market-data time of the value they hold; a frame that arrives late (older data
time) never overwrites a newer value.  The check and the writes run under WATCH/MULTI, so two workers ingesting
overlapping batches cannot interleave a read and a write and rewind a key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import redis

from apps.core.store import HashMapping, get_redis

FLOW_ALERTS = "uw:flow_alerts"
FLOW_ALERTS_CAP = 1000
LATEST_NEWS = "latest:uw:news"
PRICE_TICKS_WINDOW_MS = 24 * 60 * 60 * 1000
_MAX_ATTEMPTS = 20


def latest_price_key(ticker: str) -> str:
    return f"latest:uw:price:{ticker}"


def latest_gex_key(ticker: str) -> str:
    return f"latest:uw:gex:{ticker}"


def latest_quote_key(option_symbol: str) -> str:
    return f"latest:uw:quote:{option_symbol}"


def price_ticks_key(ticker: str) -> str:
    return f"uw:price_ticks:{ticker}"


def epoch_ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


@dataclass
class LatestUpdates:
    """What one batch changes in Redis, collapsed in memory first so each key is written once per batch."""

    hashes: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)  # key -> (ts_ms, fields)
    price_ticks: dict[str, dict[str, int]] = field(default_factory=dict)  # key -> {member: score}
    flow_alerts: list[tuple[int, str]] = field(default_factory=list)  # (ts_ms, JSON)

    def offer_hash(self, key: str, ts_ms: int, fields: Mapping[str, str]) -> None:
        """Keep ``fields`` for ``key`` unless this batch already holds a newer value (equal times: later wins)."""
        current = self.hashes.get(key)
        if current is None or ts_ms >= current[0]:
            self.hashes[key] = (ts_ms, {**fields, "ts_ms": str(ts_ms)})

    def add_price_tick(self, ticker: str, ts_ms: int, close: str) -> None:
        self.price_ticks.setdefault(price_ticks_key(ticker), {})[f"{ts_ms}:{close}"] = ts_ms

    def add_flow_alert(self, ts_ms: int, data: str) -> None:
        self.flow_alerts.append((ts_ms, data))

    def __bool__(self) -> bool:
        return bool(self.hashes or self.price_ticks or self.flow_alerts)


def _stored_ms(value: str | None) -> int:
    if value is None:
        return -1
    try:
        return int(value)
    except ValueError:
        # A hand-written or foreign value: anything we hold with a real time replaces it.
        return -1


def latest_publish(*, updates: LatestUpdates) -> None:
    """Apply ``updates`` in one MULTI: hashes only where newer, ticks added and trimmed, alerts pushed newest first.

    Idempotent: re-applying the same updates leaves every key as it was (equal-time hash writes rewrite the same
    fields, tick members are set members, an alert already in the list is moved rather than doubled).
    """
    if not updates:
        return
    client = get_redis()
    keys = list(updates.hashes)
    with client.pipeline(transaction=True) as pipe:
        for _attempt in range(_MAX_ATTEMPTS):
            try:
                if keys:
                    pipe.watch(*keys)
                    # Read on another connection after WATCH: any write that lands after the read also lands after
                    # the WATCH, so EXEC aborts and we read again.
                    reader = client.pipeline(transaction=False)
                    for key in keys:
                        reader.hget(key, "ts_ms")
                    stored = reader.execute()
                else:
                    stored = []
                pipe.multi()
                for key, current in zip(keys, stored, strict=True):
                    ts_ms, fields = updates.hashes[key]
                    if ts_ms >= _stored_ms(current):
                        pipe.hset(key, mapping=cast(HashMapping, fields))
                for key, members in updates.price_ticks.items():
                    pipe.zadd(key, members)
                    newest = max(members.values())
                    pipe.zremrangebyscore(key, "-inf", f"({newest - PRICE_TICKS_WINDOW_MS}")
                for _ts, data in sorted(updates.flow_alerts, key=lambda item: item[0]):
                    pipe.lrem(FLOW_ALERTS, 0, data)
                    pipe.lpush(FLOW_ALERTS, data)
                if updates.flow_alerts:
                    pipe.ltrim(FLOW_ALERTS, 0, FLOW_ALERTS_CAP - 1)
                pipe.execute()
                return
            except redis.WatchError:
                pipe.reset()
                continue
    raise redis.WatchError(f"latest keys kept changing under {_MAX_ATTEMPTS} attempts; the batch will be retried")


def feed_last_frame_key(feed: str) -> str:
    """When a feed without a listener of its own (``ib_market``, ``uw_rest``) last stored data: epoch seconds, wall
    clock.  The metrics exporter turns it into ``tp_feed_last_frame_age_seconds``; ``uw_stream`` reports its own."""
    return f"ingestion:last_frame_at:{feed}"


def feed_frame_stamp(feed: str) -> None:
    """Stamp ``feed_last_frame_key(feed)`` with now (one SET, after the data it vouches for was stored)."""
    get_redis().set(feed_last_frame_key(feed), f"{time.time():.3f}")
