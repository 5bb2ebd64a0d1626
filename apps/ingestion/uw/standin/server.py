"""``UWStandin``: the Unusual Whales socket and REST API on one loopback port, serving a recorded session.

One asyncio loop in a daemon thread runs the websockets server; plain HTTP GETs (no ``Upgrade``) are answered from
websockets' ``process_request`` hook, upgrades to ``/socket`` become socket connections.  All state lives on that loop;
the control methods hop onto it and wait, so a test that calls ``drop_connections()`` can assert right after.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from apps.ingestion.uw.channels import UnknownChannel, channel_resolve

from .market import MarketState
from .rest import Failure, RestApi, json_response
from .timeline import SessionFrame, lap_shift_ms, load_frames, relap_payload
from .wire import DEFAULT_TRADE, TradeTemplate, firehose_id, text_frame, trade_templates

logger = logging.getLogger(__name__)
# websockets logs every HTTP request and connection at INFO: far too chatty for a REST client polling all day
wire_logger = logging.getLogger(f"{__name__}.wire")
wire_logger.setLevel(logging.WARNING)

T = TypeVar("T")
SOCKET_PATH = "/socket"
FLOW_CONTROL_BYTES = 4 * 1024 * 1024  # as-fast-as-possible senders wait while a reader is this far behind
SLOW_READER_BYTES = 64 * 1024 * 1024  # a paced replay drops a reader this far behind (the market does not wait)
FIREHOSE_BATCH = 512  # frames built and written per event-loop step
CONTROL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class FirehoseRun:
    """One firehose run: ``frames`` built and sent, ``deliveries`` = frames x the connections that received them."""

    frames: int
    deliveries: int
    connections: int
    first_send_ms: int | None  # wall clock, epoch ms (the frames' ``created_at``)
    last_send_ms: int | None
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Frames per second over the run."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(eq=False)
class _Client:
    number: int
    connection: ServerConnection
    channels: set[str]

    def writable(self) -> bool:
        return self.connection.protocol.state is State.OPEN and not self.connection.transport.is_closing()

    def buffered(self) -> int:
        return self.connection.transport.get_write_buffer_size()


class UWStandin:
    """A local Unusual Whales: socket ``ws://127.0.0.1:PORT/socket?token=…`` and REST ``http://127.0.0.1:PORT/api/…``.

    The session plays on its own clock from ``start()``: at ``speed`` x real time (``None``: as fast as the joined
    readers take it), once or, with ``loop``, lap after lap with shifted times and fresh ids.  A frame goes only to
    the connections joined to its channel at the moment it is due (``option_trades:T`` also to ``option_trades``);
    a frame on a channel the platform does not know goes to every connection, as drift would.  REST answers are
    built from the frames already due (``cursor_ms``).  State attributes are for assertions from the test thread.
    """

    def __init__(
        self,
        lines: Iterable[str] | Path | None = None,
        *,
        token: str = "test-token",  # noqa: S107 -- a loopback stand-in's default, not a secret
        port: int = 0,
        speed: float | None = 1.0,
        loop: bool = False,
        requests_per_minute: int = 120,
        daily_limit: int = 15000,
        host: str = "127.0.0.1",
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive or None, got {speed}")
        if requests_per_minute < 1 or daily_limit < 1:
            raise ValueError("the request limits must be positive")
        self.token = token
        self.host = host
        self.port = port
        self.speed = speed
        self.loop = loop
        self._frames: list[SessionFrame] = load_frames(lines)
        self.market = MarketState()
        self.rest = RestApi(market=self.market, token=token, per_minute=requests_per_minute, per_day=daily_limit)
        # state for assertions
        self.connections_opened = 0
        self.connections_refused = 0  # of those, closed at once for a wrong or missing token
        self.joins: list[tuple[int, str]] = []
        self.frames_sent: collections.Counter[str] = collections.Counter()  # per channel, one per delivery
        self.frames_dropped = 0  # due while stalled, not sent
        self.sent_flow_alert_ids: list[str] = []
        self.firehose_runs: list[FirehoseRun] = []
        self.laps_completed = 0
        self.replay_finished = threading.Event()

        self._clients: dict[int, _Client] = {}
        self._subscribers: dict[str, set[_Client]] = collections.defaultdict(set)
        self._known: dict[str, bool] = {}
        self._cursor_ms = self._frames[0].received_at if self._frames else int(time.time() * 1000)
        self._clock_start: float | None = None
        self._stall_until = 0.0
        self._held: list[bytes] = []  # injected while stalled, sent when the stall ends
        self._firehose_count = 0
        self._aio = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="uw-standin", daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._server: Server | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{SOCKET_PATH}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Listen and start the session clock; the port accepts connections when this returns."""
        self._thread.start()
        if not self._ready.wait(CONTROL_TIMEOUT_S):
            raise RuntimeError("the Unusual Whales stand-in did not start in time")
        if self._startup_error is not None:
            raise RuntimeError(f"the Unusual Whales stand-in could not start: {self._startup_error}")
        return self

    def stop(self) -> None:
        """Close every connection (close frame 1001), stop listening and end the loop thread; idempotent."""
        if not self._thread.is_alive():
            return
        stopping = self._stopping
        if stopping is not None:
            self._aio.call_soon_threadsafe(stopping.set)
        self._thread.join(CONTROL_TIMEOUT_S * 2)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._aio)
        try:
            self._aio.run_until_complete(self._serve())
        except OSError as exc:  # the port is taken or not bindable: reported to start()
            self._startup_error = exc
            self._ready.set()
        finally:
            self._aio.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await serve(
            self._on_socket,
            self.host,
            self.port,
            process_request=self._on_http,
            ping_interval=None,  # the client's watchdog is under test, not ours
            compression=None,
            close_timeout=1,
            max_size=1 << 20,
            logger=wire_logger,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._clock_start = self._aio.time()
        replay = asyncio.create_task(self._replay())
        self._ready.set()
        await self._stopping.wait()
        replay.cancel()
        self._stall_until = 0.0
        self._end_stall()
        self._server.close(close_connections=True)
        await self._server.wait_closed()

    def _call(self, function: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = CONTROL_TIMEOUT_S) -> T:
        if not self._thread.is_alive():
            raise RuntimeError("the Unusual Whales stand-in is not running")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(function(), self._aio)
        return future.result(timeout)

    # --- the clock ----------------------------------------------------------------------------------------------

    @property
    def cursor_ms(self) -> int:
        """The session time reached (epoch ms of the recording, plus the lap shifts): REST sees frames up to it."""
        if self.speed is None or self._clock_start is None or not self._frames:
            return self._cursor_ms
        elapsed = time.monotonic() - self._clock_start  # the loop's clock is time.monotonic
        return self._frames[0].received_at + int(elapsed * 1000 * self.speed)

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    @property
    def requests(self) -> list[tuple[str, dict[str, str], int]]:
        """Every REST request so far: (path, query parameters, status)."""
        return self.rest.requests

    def _stalled(self) -> bool:
        return self._aio.time() < self._stall_until

    async def _replay(self) -> None:
        frames = self._frames
        if not frames or self._clock_start is None:
            self.replay_finished.set()
            return
        first, shift, lap = frames[0].received_at, lap_shift_ms(frames), 0
        while True:
            for index, frame in enumerate(frames):
                at = frame.received_at + lap * shift
                if self.speed is not None:
                    delay = self._clock_start + (at - first) / 1000 / self.speed - self._aio.time()
                    if delay > 0.0005:  # frames due within the loop's timer resolution go out together
                        await asyncio.sleep(delay)
                elif index % 256 == 0:
                    await self._flow_control(list(self._clients.values()))
                payload = relap_payload(frame.payload, lap, lap * shift)
                text = frame.text if lap == 0 else orjson.dumps([frame.channel, payload])
                self._cursor_ms = at
                self.market.ingest(frame.channel, payload, at)
                self._deliver(frame.channel, text, payload)
            self.laps_completed += 1
            if not self.loop:
                break
            lap += 1
        self.replay_finished.set()

    # --- sending ------------------------------------------------------------------------------------------------

    def _targets(self, channel: str) -> Iterable[_Client]:
        known = self._known.get(channel)
        if known is None:
            try:
                channel_resolve(channel)
                known = True
            except UnknownChannel:
                known = False
            self._known[channel] = known
        if not known:
            return list(self._clients.values())
        targets = self._subscribers.get(channel, set())
        if channel.startswith("option_trades:"):
            everything = self._subscribers.get("option_trades")
            if everything:
                return targets | everything
        return targets

    def _deliver(self, channel: str, text: bytes, payload: Any) -> None:
        targets = [client for client in self._targets(channel) if client.writable()]
        if not targets:
            return
        if self._stalled():
            self.frames_dropped += 1
            return
        frame = text_frame(text)
        for client in targets:
            if self.speed is not None and client.buffered() > SLOW_READER_BYTES:
                logger.warning("dropping socket connection %s: %d bytes unread", client.number, client.buffered())
                client.connection.transport.abort()
                continue
            client.connection.transport.write(frame)
            self.frames_sent[channel] += 1
        if channel == "flow-alerts" and isinstance(payload, dict):
            self.sent_flow_alert_ids.append(str(payload.get("id")))

    async def _flow_control(self, clients: Sequence[_Client]) -> None:
        """Yield to the loop, and wait while a reader is more than ``FLOW_CONTROL_BYTES`` behind or a stall lasts."""
        await asyncio.sleep(0)
        while self._stalled() or any(c.writable() and c.buffered() > FLOW_CONTROL_BYTES for c in clients):
            await asyncio.sleep(0.001)

    def _send_control(self, client: _Client, document: Any) -> None:
        if client.writable():
            client.connection.transport.write(text_frame(orjson.dumps(document)))

    # --- connections --------------------------------------------------------------------------------------------

    def _on_http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self.rest.answer(request.path, request.headers, self._aio.time())
        if urlsplit(request.path).path != SOCKET_PATH:
            return json_response(404, {"message": f"Not found: {urlsplit(request.path).path}"})
        return None

    async def _on_socket(self, connection: ServerConnection) -> None:
        self.connections_opened += 1
        number = self.connections_opened
        query = parse_qs(urlsplit(connection.request.path if connection.request else "").query)
        if query.get("token", [""])[-1] != self.token:
            # what UW does for a plan without socket access: the upgrade succeeds, then the TCP connection closes
            self.connections_refused += 1
            connection.transport.close()
            await connection.wait_closed()
            return
        client = _Client(number, connection, set())
        self._clients[number] = client
        if self._stalled():
            connection.transport.pause_reading()
        try:
            # Dropped by the client, by drop_connections or by stop: all normal endings here.
            with contextlib.suppress(ConnectionClosed):
                async for message in connection:
                    self._on_message(client, message)
        finally:
            self._clients.pop(number, None)
            for channel in client.channels:
                self._subscribers[channel].discard(client)

    def _on_message(self, client: _Client, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            self._send_control(client, ["error", {"response": {}, "status": "error", "message": "not JSON"}])
            return
        channel = request.get("channel") if isinstance(request, dict) else None
        kind = request.get("msg_type") if isinstance(request, dict) else None
        if not isinstance(channel, str) or kind not in ("join", "leave"):
            message_text = 'expected {"channel": <name>, "msg_type": "join" | "leave"}'
            self._send_control(client, [str(channel), {"response": {}, "status": "error", "message": message_text}])
            return
        try:
            channel_resolve(channel)
        except UnknownChannel as exc:
            self._send_control(client, [channel, {"response": {}, "status": "error", "message": str(exc)}])
            return
        if kind == "join":
            client.channels.add(channel)
            self._subscribers[channel].add(client)
            self.joins.append((client.number, channel))
        else:
            client.channels.discard(channel)
            self._subscribers[channel].discard(client)
        self._send_control(client, [channel, {"response": {}, "status": "ok"}])

    # --- controls (thread-safe) ---------------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Abort every socket connection (TCP close, no close frame); the number aborted."""

        async def drop() -> int:
            clients = list(self._clients.values())
            for client in clients:
                client.connection.transport.abort()
            return len(clients)

        return self._call(drop)

    def stall(self, seconds: float) -> None:
        """For ``seconds`` from now: send no frame (frames due meanwhile are dropped) and read nothing, so pings go
        unanswered and joins wait; connections stay open.  Injected frames are held until the stall ends."""

        async def begin() -> None:
            self._stall_until = max(self._stall_until, self._aio.time() + seconds)
            for client in self._clients.values():
                client.connection.transport.pause_reading()
            self._aio.call_at(self._stall_until, self._end_stall)

        self._call(begin)

    def _end_stall(self) -> None:
        if self._stalled():
            return  # a longer stall was asked for meanwhile; its own timer ends it
        for client in list(self._clients.values()):
            if client.writable():
                client.connection.transport.resume_reading()
                for text in self._held:
                    client.connection.transport.write(text_frame(text))
        self._held.clear()

    def inject(self, text: str) -> None:
        """Send ``text`` as one text frame to every open connection, joined or not (held while stalled)."""

        async def send() -> None:
            data = text.encode("utf-8", "surrogatepass")
            if self._stalled():
                self._held.append(data)
                return
            for client in self._clients.values():
                if client.writable():
                    client.connection.transport.write(text_frame(data))

        self._call(send)

    def fail_next_requests(self, count: int, status: int = 429, retry_after: float | None = 1.0) -> None:
        """The next ``count`` authorised REST requests answer ``status``: 429 JSON with ``retry-after`` (unless
        ``None``), 5xx ``text/plain``, anything else a JSON error."""

        async def arm() -> None:
            self.rest.failures.extend(Failure(status, retry_after) for _ in range(count))

        self._call(arm)

    def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> bool:
        """Poll ``predicate()`` every 5 ms until it is true (``True``) or ``timeout`` seconds pass (``False``)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    # --- firehose -----------------------------------------------------------------------------------------------

    def firehose(
        self,
        payloads: Sequence[Mapping[str, Any] | bytes] | None = None,
        *,
        frames: int,
        rate: float | None = None,
        timeout: float | None = None,
    ) -> FirehoseRun:
        """Send ``frames`` option-trade frames to the connections joined to their channels and wait for the run.

        Frame *i* is ``payloads[i % len(payloads)]`` (default: the session's first trades, else a built-in SPY
        trade) with a fresh unique ``id`` and ``created_at`` = the wall-clock send time in epoch ms.  ``rate`` is
        frames per second (``None``: as fast as the readers take them).  Stalls pause the run.
        """
        return self.firehose_submit(payloads, frames=frames, rate=rate).result(timeout)

    def firehose_submit(
        self,
        payloads: Sequence[Mapping[str, Any] | bytes] | None = None,
        *,
        frames: int,
        rate: float | None = None,
    ) -> concurrent.futures.Future[FirehoseRun]:
        """``firehose`` without waiting: the future of its ``FirehoseRun``."""
        if frames < 0 or (rate is not None and rate <= 0):
            raise ValueError("frames must be non-negative and rate positive (or None)")
        if payloads is None:
            trades = [f.payload for f in self._frames if f.channel.startswith("option_trades:")][:64]
            payloads = trades or [DEFAULT_TRADE]
        templates = trade_templates(payloads)
        if not templates:
            raise ValueError("the firehose needs at least one payload")
        self._firehose_count += 1
        run = self._firehose_count
        return asyncio.run_coroutine_threadsafe(self._firehose(run, templates, frames, rate), self._aio)

    async def _firehose(self, run: int, templates: list[TradeTemplate], frames: int, rate: float | None) -> FirehoseRun:
        sent = deliveries = 0
        receivers: set[int] = set()
        first_ms = last_ms = None
        began = self._aio.time()
        while sent < frames:
            await self._flow_control(list(self._clients.values()))
            batch = min(FIREHOSE_BATCH, frames - sent)
            if rate is not None:
                due = int((self._aio.time() - began) * rate) + 1 - sent
                if due <= 0:
                    await asyncio.sleep((sent + 1) / rate - (self._aio.time() - began))
                    continue
                batch = min(batch, due)
            now_ms = time.time_ns() // 1_000_000
            stamp = b"%d" % now_ms
            first_ms = now_ms if first_ms is None else first_ms
            last_ms = now_ms
            chunks: dict[_Client, list[bytes]] = collections.defaultdict(list)
            for index in range(sent, sent + batch):
                template = templates[index % len(templates)]
                frame = template.frame(firehose_id(run, index), stamp)
                for client in self._targets(template.channel):
                    chunks[client].append(frame)
                    self.frames_sent[template.channel] += 1
            for client, parts in chunks.items():
                if client.writable():
                    client.connection.transport.write(b"".join(parts))
                    deliveries += len(parts)
                    receivers.add(client.number)
            sent += batch
        result = FirehoseRun(
            frames=sent,
            deliveries=deliveries,
            connections=len(receivers),
            first_send_ms=first_ms,
            last_send_ms=last_ms,
            elapsed_s=self._aio.time() - began,
        )
        self.firehose_runs.append(result)
        return result
