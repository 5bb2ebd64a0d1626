"""The Unusual Whales socket listener: frames in, Celery ingestion batches out, nothing lost silently.

One thread reads the socket (websocket-client), stamps each text frame with its receive time as a session line
(``{"received_at": <ms>, "frame": <the frame as received>}``) and cuts batches by count or age; a second thread
publishes the batches to Celery (``ingestion.ingest_batch``).  The listener never parses payloads: normalization,
drift detection and quarantine are the workers' job.

Failure handling:
- **Reconnects** with exponential backoff plus jitter, re-joining every channel, then asks for a flow-alert **gap
  backfill** over REST (``ingestion.flow_alerts_backfill``) because the socket does not replay what it sent while
  we were away.  The same happens at start, which covers a restart after a crash.
- **Stall watchdog**: after ``ping_after`` seconds without any frame it pings; no pong within ``pong_timeout`` and
  the connection is dropped and re-opened.
- **Broker unreachable**: batches wait in memory (bounded by ``buffer_frames``) and are published in order when it
  returns; past the bound the oldest are dropped, counted and logged as errors — never silently.
- **SIGTERM**: the current batch is flushed and the buffer drained (for a bounded time) before exit.
- **Pause**: while the operations console's pause flag is set the socket is closed and nothing is read.

State for the console and metrics is written to Redis every second (``uw:stream:state``, ``uw:stream:channels``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import redis
import websocket
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError

from apps.core.store import HashMapping, get_redis

if TYPE_CHECKING:
    from apps.ingestion.models import StreamControl

logger = logging.getLogger(__name__)

SOURCE = "uw_ws"
INGEST_TASK = "ingestion.ingest_batch"
INGEST_QUEUE = "ingestion"  # the Redis list the Celery broker keeps the queue in
BACKFILL_TASK = "ingestion.flow_alerts_backfill"
STATE_KEY = "uw:stream:state"
CHANNELS_KEY = "uw:stream:channels"
PAUSE_KEY = "control:uw_stream:paused"
STATE_EVERY_SECONDS = 1.0
PAUSE_CHECK_SECONDS = 1.0
DRAIN_SECONDS = 10.0
FLOW_ALERTS = "flow-alerts"
# The gap backfill starts this long before the last alert received: alerts do not arrive strictly in time order.
BACKFILL_MARGIN_SECONDS = 120.0


def socket_url(base: str, token: str) -> str:
    """``base`` with the token in the query string, as UW expects it."""
    parts = urlsplit(base)
    query = "&".join(filter(None, [parts.query, urlencode({"token": token})]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redacted(url: str) -> str:
    """The socket URL without its query string (the token), for logs."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def backoff_delay(attempt: int, *, minimum: float, maximum: float, rng: random.Random | None = None) -> float:
    """``minimum`` doubling per attempt up to ``maximum``, plus up to 25 % jitter so listeners do not reconnect in
    lockstep after an outage."""
    base = min(maximum, minimum * (2 ** max(0, attempt)))
    return base + (rng or random).uniform(0, base / 4)


def channel_of(frame: str) -> str:
    """The channel name of a ``[channel, payload]`` text frame, without parsing the payload."""
    if frame.startswith('["'):
        end = frame.find('"', 2)
        if 2 < end <= 66:
            return frame[2:end]
    return "?"


@dataclass
class StreamConfig:
    url: str
    token: str
    channels: Sequence[str]
    batch_frames: int = 4000
    batch_ms: int = 20
    # While the workers have batches waiting, a batch may grow this long (ms, up to batch_frames): bigger batches
    # cost the workers less per frame, so a backlog drains instead of growing.  0 keeps batch_ms always.
    backlog_batch_ms: int = 100
    buffer_frames: int = 500_000
    ping_after: float = 30.0
    pong_timeout: float = 10.0
    backoff_min: float = 5.0
    backoff_max: float = 60.0
    connect_timeout: float = 10.0

    @classmethod
    def from_settings(cls) -> StreamConfig:
        from django.conf import settings

        return cls(
            url=settings.UW_WS_URL,
            token=settings.UW_API_TOKEN,
            channels=settings.UW_CHANNELS,
            batch_frames=settings.UW_STREAM_BATCH_FRAMES,
            batch_ms=settings.UW_STREAM_BATCH_MS,
            backlog_batch_ms=settings.UW_STREAM_BACKLOG_BATCH_MS,
            buffer_frames=settings.UW_STREAM_BUFFER_FRAMES,
            ping_after=settings.UW_STREAM_PING_AFTER_SECONDS,
            pong_timeout=settings.UW_STREAM_PONG_TIMEOUT_SECONDS,
            backoff_min=settings.UW_STREAM_BACKOFF_MIN_SECONDS,
            backoff_max=settings.UW_STREAM_BACKOFF_MAX_SECONDS,
        )


@dataclass
class StreamStats:
    """Counters since the process started (also written to ``uw:stream:state``)."""

    status: str = "starting"
    connections: int = 0
    reconnects: int = 0
    stalls: int = 0
    frames: int = 0
    batches_published: int = 0
    frames_published: int = 0
    publish_failures: int = 0
    dropped_frames: int = 0
    backfills_requested: int = 0
    joined: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    last_error: str = ""
    connected_since: float = 0.0
    channel_frames: dict[str, int] = field(default_factory=dict)
    channel_last: dict[str, float] = field(default_factory=dict)  # channel -> wall time of its last frame


def celery_publish(lines: list[str]) -> None:
    """Publish one batch to the ingestion queue; raises ``BrokerError`` when the broker cannot take it."""
    from celery import current_app

    current_app.send_task(INGEST_TASK, args=(lines, SOURCE), retry=False)


def celery_backfill(since_iso: str | None) -> None:
    from celery import current_app

    current_app.send_task(BACKFILL_TASK, kwargs={"since": since_iso}, retry=False)


class _Stall(Exception):  # noqa: N818 - a reason to reconnect, not a failure of the listener
    """No pong came back in time."""


class StreamListener:
    """A long-lived socket client; ``run`` until ``stop`` is set.  Tests drive it against the loopback stand-in."""

    def __init__(
        self,
        config: StreamConfig,
        *,
        publish: Callable[[list[str]], None] = celery_publish,
        request_backfill: Callable[[str | None], None] | None = celery_backfill,
        store: redis.Redis | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stats = StreamStats()
        self.stop = threading.Event()
        self._publish = publish
        self._request_backfill = request_backfill
        self._store = store
        self._rng = rng or random.Random()
        self._queue: deque[list[str]] = deque()
        self._queued_frames = 0
        self._lock = threading.Condition()
        self._sender = threading.Thread(target=self._send_loop, name="uw-stream-publisher", daemon=True)
        self._sender_done = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._state_written = 0.0
        self._rates: dict[str, tuple[float, int]] = {}
        self._batch_s = config.batch_ms / 1000  # the age at which the reader cuts a batch (grows with a backlog)
        self._depth_checked = 0.0

    # --- public ------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Connect, read, reconnect until ``stop``; then flush and drain the buffer (bounded) and return."""
        self._sender.start()
        attempt = 0
        try:
            while not self.stop.is_set():
                if self._paused():
                    self._set_status("paused")
                    self.stop.wait(PAUSE_CHECK_SECONDS)
                    continue
                started = time.monotonic()
                try:
                    self._connection()
                except (OSError, websocket.WebSocketException, _Stall) as exc:
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    logger.warning("UW socket %s: %s", redacted(self.config.url), self.stats.last_error)
                finally:
                    self._close()
                if self.stop.is_set():
                    break
                # A connection that lived a while resets the backoff; a flapping one keeps doubling it.
                attempt = 0 if time.monotonic() - started > max(30.0, self.config.backoff_max) else attempt + 1
                if self._paused():
                    continue
                delay = backoff_delay(
                    attempt - 1, minimum=self.config.backoff_min, maximum=self.config.backoff_max, rng=self._rng
                )
                self._set_status("backoff")
                logger.info("UW socket: reconnecting in %.2f s", delay)
                self.stop.wait(delay)
                self.stats.reconnects += 1
        finally:
            self._set_status("draining")
            with self._lock:
                self._lock.notify_all()
            self._sender_done.wait(DRAIN_SECONDS + 1)
            if self._queued_frames:
                logger.error("UW stream stopped with %d frames not published", self._queued_frames)
            self._set_status("stopped")

    def request_stop(self) -> None:
        self.stop.set()
        ws = self._ws
        if ws is not None:
            # Wake the reader out of recv(); the loop sees ``stop`` and flushes.
            sock = ws.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @property
    def queued_frames(self) -> int:
        return self._queued_frames

    # --- one connection -----------------------------------------------------------------------------------------

    def _connection(self) -> None:
        cfg = self.config
        self._set_status("connecting")
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        self._ws = ws
        ws.connect(socket_url(cfg.url, cfg.token), timeout=cfg.connect_timeout)
        self.stats.connections += 1
        self.stats.connected_since = time.time()
        self.stats.joined = []
        for channel in cfg.channels:
            ws.send(orjson.dumps({"channel": channel, "msg_type": "join"}).decode())
        self._set_status("connected")
        logger.info("UW socket connected to %s; joined %d channels", redacted(cfg.url), len(cfg.channels))
        if self._request_backfill is not None:
            # Whatever was sent while we were away (or before a restart) comes back over REST: from the last alert
            # this listener (or the one before it, per the state in Redis) received, less a margin for alerts that
            # arrive out of time order.  Without any, the backfill starts from the newest alert stored.
            last_ms = self._last_alert_ms()
            since = None
            if last_ms:
                since = datetime.fromtimestamp(last_ms / 1000 - BACKFILL_MARGIN_SECONDS, tz=UTC).isoformat()
            try:
                self._request_backfill(since)
                self.stats.backfills_requested += 1
            except (BrokerError, OSError, redis.RedisError) as exc:
                logger.error("UW gap backfill could not be requested: %s", exc)
        self._read(ws)

    def _read(self, ws: websocket.WebSocket) -> None:
        cfg = self.config
        batch: list[str] = []
        batch_started = 0.0
        last_rx = time.monotonic()
        ping_sent = 0.0
        last_pause_check = last_rx
        idle_timeout = min(1.0, cfg.ping_after / 2, cfg.pong_timeout / 2)
        # Frames are stamped on the platform's clock (``TP_CLOCK_OFFSET_SECONDS`` shifts it for a rehearsal, as for
        # every process); last-frame ages stay on the wall clock.
        offset_ms = int(getattr(settings, "TP_CLOCK_OFFSET_SECONDS", 0)) * 1000
        stats = self.stats
        channel_frames = stats.channel_frames
        channel_last = stats.channel_last
        timeout: float | None = None
        try:
            while not self.stop.is_set():
                batch_s = self._batch_s
                wanted = batch_s if batch else idle_timeout
                if wanted != timeout:
                    ws.settimeout(wanted)
                    timeout = wanted
                try:
                    opcode, data = ws.recv_data(control_frame=True)
                except websocket.WebSocketTimeoutException:
                    opcode, data = 0, b""
                now = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    last_rx = now
                    ping_sent = 0.0
                    text = data.decode("utf-8", "replace")
                    wall_ms = time.time_ns() // 1_000_000
                    received_ms = wall_ms + offset_ms
                    batch.append(f'{{"received_at":{received_ms},"frame":{text}}}')
                    if len(batch) == 1:
                        batch_started = now
                    channel = channel_of(text)
                    if len(text) < 300 and '"response"' in text:
                        self._join_ack(channel, text)
                    channel_frames[channel] = channel_frames.get(channel, 0) + 1
                    channel_last[channel] = wall_ms / 1000
                    stats.frames += 1
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise websocket.WebSocketConnectionClosedException("the server closed the connection")
                elif opcode in (websocket.ABNF.OPCODE_PONG, websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_BINARY):
                    last_rx = now
                    ping_sent = 0.0
                if batch and (len(batch) >= cfg.batch_frames or now - batch_started >= batch_s):
                    self._enqueue(batch)
                    batch = []
                if now - last_rx >= cfg.ping_after:
                    if not ping_sent:
                        ws.ping()
                        ping_sent = now
                    elif now - ping_sent >= cfg.pong_timeout:
                        stats.stalls += 1
                        raise _Stall(f"no frame for {now - last_rx:.1f} s and no pong within {cfg.pong_timeout:.1f} s")
                if now - self._state_written >= STATE_EVERY_SECONDS:
                    self._write_state()
                if now - last_pause_check >= PAUSE_CHECK_SECONDS:
                    last_pause_check = now
                    if self._paused():
                        logger.warning("UW stream paused from the operations console: closing the socket")
                        return
        finally:
            if batch:
                self._enqueue(batch)

    def _last_alert_ms(self) -> int:
        seen = self.stats.channel_last.get(FLOW_ALERTS)
        if seen:
            return int(seen * 1000)
        try:
            stored = self._redis().hget(STATE_KEY, "last_flow_alert_ms")
        except redis.RedisError:
            return 0
        return int(cast(str, stored)) if stored and str(stored).isdigit() else 0

    def _join_ack(self, channel: str, text: str) -> None:
        try:
            payload = orjson.loads(text)[1]
        except (orjson.JSONDecodeError, IndexError, TypeError):
            return
        if not isinstance(payload, dict) or "status" not in payload:
            return
        if payload.get("status") == "ok":
            if channel not in self.stats.joined:
                self.stats.joined.append(channel)
        else:
            self.stats.refused[channel] = str(payload.get("message") or payload.get("status"))[:200]

    def _close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close(timeout=0.5)
            except (OSError, websocket.WebSocketException):
                ws.shutdown()

    # --- publishing ---------------------------------------------------------------------------------------------

    def _enqueue(self, batch: list[str]) -> None:
        with self._lock:
            self._queue.append(batch)
            self._queued_frames += len(batch)
            while self._queued_frames > self.config.buffer_frames and len(self._queue) > 1:
                lost = self._queue.popleft()
                self._queued_frames -= len(lost)
                self.stats.dropped_frames += len(lost)
                logger.error(
                    "UW stream buffer full (%d frames): dropped the oldest %d frames; %d dropped so far",
                    self.config.buffer_frames,
                    len(lost),
                    self.stats.dropped_frames,
                )
            self._lock.notify()

    def _send_loop(self) -> None:
        failures = 0
        deadline: float | None = None
        try:
            while True:
                with self._lock:
                    while not self._queue and not self.stop.is_set():
                        self._lock.wait(0.5)
                    if not self._queue:
                        return  # stopped and drained
                    batch = self._queue[0]
                if self.stop.is_set() and deadline is None:
                    deadline = time.monotonic() + DRAIN_SECONDS
                if deadline is not None and time.monotonic() > deadline:
                    return
                try:
                    self._publish(batch)
                except (BrokerError, OSError, redis.RedisError) as exc:
                    failures += 1
                    self.stats.publish_failures += 1
                    if failures == 1 or failures % 50 == 0:
                        logger.error(
                            "Celery broker unreachable (%s); holding %d frames in memory", exc, self._queued_frames
                        )
                    time.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                    continue
                if failures:
                    logger.warning("Celery broker reachable again after %d failed publishes", failures)
                    failures = 0
                with self._lock:
                    if self._queue and self._queue[0] is batch:
                        self._queue.popleft()
                        self._queued_frames -= len(batch)
                self.stats.batches_published += 1
                self.stats.frames_published += len(batch)
                self._adapt_batch_age()
        finally:
            self._sender_done.set()

    def _adapt_batch_age(self) -> None:
        """Grow batches while the ingestion queue has a backlog, shrink them back when it is empty (checked at most
        every 100 ms, and only when the Celery broker is this Redis)."""
        cfg = self.config
        now = time.monotonic()
        if not cfg.backlog_batch_ms or now - self._depth_checked < 0.1 or not self._queue_depth_readable:
            return
        self._depth_checked = now
        try:
            depth = int(cast(int, self._redis().llen(INGEST_QUEUE)))
        except redis.RedisError:
            return
        wanted = max(cfg.batch_ms, cfg.backlog_batch_ms) if depth > 0 else cfg.batch_ms
        self._batch_s = wanted / 1000

    @property
    def _queue_depth_readable(self) -> bool:
        if self._store is not None:
            return True
        from django.conf import settings

        return bool(settings.REDIS_URL) and settings.CELERY_BROKER_URL == settings.REDIS_URL

    # --- control and state ----------------------------------------------------------------------------------------

    def _redis(self) -> redis.Redis:
        return self._store if self._store is not None else get_redis()

    def _paused(self) -> bool:
        try:
            return bool(self._redis().get(PAUSE_KEY))
        except redis.RedisError:
            return False  # Redis down: keep reading (the frames are buffered), do not stop on a missing flag

    def _set_status(self, status: str) -> None:
        self.stats.status = status
        self._write_state()

    def _write_state(self) -> None:
        now = time.monotonic()
        self._state_written = now
        stats = self.stats
        wall = time.time()
        channels: dict[str, str] = {}
        for channel, count in stats.channel_frames.items():
            previous = self._rates.get(channel)
            rate = 0.0
            if previous is not None and now > previous[0]:
                rate = (count - previous[1]) / (now - previous[0])
            self._rates[channel] = (now, count)
            last = stats.channel_last.get(channel, 0.0)
            channels[channel] = orjson.dumps(
                {"frames": count, "rate_per_s": round(rate, 1), "last_frame_age_s": round(wall - last, 3)}
            ).decode()
        state = {
            "status": stats.status,
            "pid": str(os.getpid()),
            "updated_at": f"{wall:.3f}",
            "connected_since": f"{stats.connected_since:.3f}",
            "connections": str(stats.connections),
            "reconnects": str(stats.reconnects),
            "stalls": str(stats.stalls),
            "frames": str(stats.frames),
            "frames_published": str(stats.frames_published),
            "batches_published": str(stats.batches_published),
            "buffered_frames": str(self._queued_frames),
            "batch_ms": str(round(self._batch_s * 1000)),
            "dropped_frames": str(stats.dropped_frames),
            "publish_failures": str(stats.publish_failures),
            "backfills_requested": str(stats.backfills_requested),
            "last_error": stats.last_error,
            "joined": ",".join(stats.joined),
            "last_flow_alert_ms": str(self._last_alert_ms() or ""),
            "refused": orjson.dumps(stats.refused).decode(),
        }
        try:
            with self._redis().pipeline(transaction=False) as pipe:
                pipe.hset(STATE_KEY, mapping=cast(HashMapping, state))
                if channels:
                    pipe.hset(CHANNELS_KEY, mapping=cast(HashMapping, channels))
                pipe.execute()
        except redis.RedisError as exc:
            logger.debug("UW stream state not written: %s", exc)


def stream_state(*, store: redis.Redis | None = None) -> dict[str, Any]:
    """The listener's last written state and per-channel figures (for the console, health and metrics)."""
    client = store if store is not None else get_redis()
    state: dict[str, Any] = dict(cast(dict[str, str], client.hgetall(STATE_KEY)))
    channels = cast(dict[str, str], client.hgetall(CHANNELS_KEY))
    state["channels"] = {name: orjson.loads(value) for name, value in sorted(channels.items())}
    state["paused"] = bool(client.get(PAUSE_KEY))
    return state


def stream_pause_set(*, paused: bool, actor: str, reason: str = "") -> StreamControl:
    """Set or clear the pause flag the listener obeys (``feeds.feed_pause_set`` for ``uw_stream``): the change is a
    ``StreamControl`` row and an audit entry, the Redis flag is written after the commit."""
    from apps.ingestion.feeds import UW_STREAM, feed_pause_set

    return feed_pause_set(feed=UW_STREAM, paused=paused, actor=actor, reason=reason)
