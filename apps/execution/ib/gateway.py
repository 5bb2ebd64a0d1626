"""The owner of one Interactive Brokers connection: connect and reconnect, order ids, placement, reconciliation
snapshots, market data subscriptions, account values, and every error code accounted for.

One process owns a client id (``manage.py ib_listener`` live; the replay process itself with ``BROKER=ib``).  The
gateway runs in that process's main thread: ``pump()`` drains the events the ibapi thread produced and hands them,
in order, to a sink (``apps.execution.ib.dispatch.TaskSink``: Celery tasks, run inline when tasks are eager).

Ordering that the services rely on:
- an execution is handed on together with its commission report (held until the report arrives, 3 s at most);
- an order's status events wait behind its executions still waiting for their commission, so "Cancelled" after a
  partial fill never overtakes the fill.
"""

from __future__ import annotations

import logging
import queue
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from ibapi.execution import ExecutionFilter
from ibapi.order import Order as IBOrder

from apps.core import clock, store
from apps.execution.ib import connection as ev
from apps.execution.ib.contracts import contract_for, option_contract
from apps.execution.models import IBOrderIdCounter, Order

logger = logging.getLogger(__name__)

STATE_KEY = "execution:broker:state"
ACCOUNT_KEY = "risk:account:broker"
ACCOUNT_TAGS = (
    "NetLiquidation,TotalCashValue,BuyingPower,AvailableFunds,GrossPositionValue,MaintMarginReq,InitMarginReq,"
    "UnrealizedPnL,RealizedPnL"
)
COMMISSION_WAIT_SECONDS = 3.0
ACKED = frozenset({"PreSubmitted", "Submitted", "Filled", "PendingCancel", "PendingSubmit", "ApiPending"})
DEAD = frozenset({"Cancelled", "ApiCancelled", "Inactive"})
# Error codes that end an order at the broker (rejections and refusals); 202 is a confirmed cancel.
REJECT_CODES = frozenset(
    {103, 104, 105, 106, 107, 109, 110, 116, 117, 118, 119, 120, 121, 122, 133, 135, 136, 200, 201, 203, 321, 382}
    | {383, 387, 388, 10268, 10269}
)
CONNECTIVITY_CODES = frozenset({326, 502, 504, 1100, 1101, 1102, 1300, 2110})
DATA_FARM_BROKEN = frozenset({2103, 2105, 2157})
ALERT_CODES = frozenset({100, 326, 502, 504, 1100, 1300, 2110}) | DATA_FARM_BROKEN


class GatewaySink(Protocol):
    """Where the gateway's platform events go (in order)."""

    def order_event(self, kind: str, data: dict[str, Any]) -> None: ...

    def broker_message(self, data: dict[str, Any]) -> None: ...

    def account(self, values: dict[str, str]) -> None: ...

    def ticks(self, ticks: list[dict[str, Any]]) -> None: ...

    def reconcile(self, snapshot: dict[str, Any]) -> None: ...


def setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def parse_exec_time(text: str) -> datetime:
    """TWS writes execution times as ``YYYYMMDD  HH:MM:SS`` in exchange time (America/New_York), sometimes with a
    zone name after it; the result is aware UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    parts = text.split()
    if len(parts) < 2:
        raise ValueError(f"not a TWS execution time: {text!r}")
    naive = datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S")
    zone = ZoneInfo("America/New_York")
    if len(parts) > 2:
        try:
            zone = ZoneInfo(parts[2])
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("unknown time zone %r in execution time; taking New York", parts[2])
    return naive.replace(tzinfo=zone).astimezone(UTC)


@dataclass
class OrderTrack:
    """What this connection saw of one order (by orderRef)."""

    order_ref: str
    ib_order_id: int
    status: str = ""
    acked: bool = False
    reject: tuple[int, str] | None = None
    perm_id: int = 0

    @property
    def answered(self) -> bool:
        return self.acked or self.reject is not None or self.status in DEAD

    @property
    def finished(self) -> bool:
        return self.reject is not None or self.status in DEAD or self.status == "Filled"


@dataclass
class Snapshot:
    taken_at: datetime
    positions: list[dict[str, Any]] = field(default_factory=list)
    open_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def refs(self) -> set[str]:
        return set(self.open_orders) | set(self.completed) | {e["order_ref"] for e in self.executions.values()}

    def as_payload(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "positions": self.positions,
            "open_orders": list(self.open_orders.values()),
            "completed": list(self.completed.values()),
            "executions": list(self.executions.values()),
        }


class IBGateway:
    def __init__(
        self,
        *,
        sink: GatewaySink,
        host: str | None = None,
        port: int | None = None,
        client_id: int | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.sink = sink
        self.host = host or settings.IB_HOST
        self.port = int(port or settings.IB_PORT)
        self.client_id = int(settings.IB_CLIENT_ID if client_id is None else client_id)
        self.connect_timeout = float(connect_timeout or setting("IB_CONNECT_TIMEOUT_SECONDS", 10))
        self.events: queue.Queue[ev.IBEvent] = queue.Queue()
        self.conn: ev.IBConnection | None = None
        self.account = ""
        self.next_valid_id = 0
        self.link_ok = False  # False between 1100 and 1101/1102
        self.tracks: dict[str, OrderTrack] = {}
        self.refs_by_id: dict[int, str] = {}
        self.cancels_requested: set[int] = set()
        # (execId, reqId) -> (monotonic time seen, execution): a live fill and its copy in a snapshot are two entries
        self._pending_execs: dict[tuple[str, int], tuple[float, ev.ExecutionEvent]] = {}
        self._held: dict[int, list[ev.IBEvent]] = defaultdict(list)
        self._snapshot: Snapshot | None = None
        self._snapshot_execs_req = -1
        self._req_id = 1000
        self._md_by_req: dict[int, tuple[str, str]] = {}  # reqId -> (key, secType)
        self._md_keys: dict[str, int] = {}
        self._ticks: list[dict[str, Any]] = []
        self._account_values: dict[str, str] = {}
        self._account_req: int | None = None
        self.account_stale = False  # a live fill since the last account request
        self._failures = 0
        self._next_attempt = 0.0
        self.needs_reconcile = False
        self.commands_waiting = False
        self.connected_since: datetime | None = None

    # --- connection -------------------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.is_ready

    def ensure_connected(self) -> bool:
        """Connected and ready, or one connection attempt when the backoff allows (5 s doubling to 60 s, +25 %
        jitter).  Returns whether the gateway is connected."""
        if self.connected:
            return True
        if self.conn is not None:
            self._lost("the connection closed")
        if time.monotonic() < self._next_attempt:
            return False
        conn = ev.IBConnection(self.events)
        if conn.open(host=self.host, port=self.port, client_id=self.client_id, timeout=self.connect_timeout):
            self.conn = conn
            self._failures = 0
            self.link_ok = True
            self.connected_since = clock.now()
            self.needs_reconcile = True
            # Drain the handshake's events now: the Ready event sets the account and the next id.
            self.pump(0)
            self._resubscribe_all()
            self._publish_state(connected=True, detail=f"connected to {self.host}:{self.port} as {self.account}")
            logger.info(
                "IB connected to %s:%s client %s, account %s", self.host, self.port, self.client_id, self.account
            )
            return True
        refused = conn.refused
        self._failures += 1
        low, high = float(setting("IB_BACKOFF_MIN_SECONDS", 5)), float(setting("IB_BACKOFF_MAX_SECONDS", 60))
        delay = min(high, low * (2 ** (self._failures - 1))) * (1 + random.random() * 0.25)
        self._next_attempt = time.monotonic() + delay
        why = f"IB {refused.code}: {refused.message}" if refused else "no answer"
        self._publish_state(connected=False, detail=f"cannot connect to {self.host}:{self.port} ({why})")
        logger.warning("IB connect to %s:%s failed (%s); next attempt in %.1fs", self.host, self.port, why, delay)
        return False

    def _lost(self, reason: str) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        self.link_ok = False
        self._next_attempt = time.monotonic()  # first reconnect attempt at once, backoff after that
        self._publish_state(connected=False, detail=f"disconnected: {reason}")
        logger.error("IB connection lost: %s", reason)

    def close(self) -> None:
        self.flush_pending(force=True)
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close()
        self._publish_state(connected=False, detail="closed by the platform")

    def _publish_state(self, *, connected: bool, detail: str) -> None:
        mapping = {
            "broker": "ib",
            "connected": "1" if connected and self.link_ok else "0",
            "since": clock.now().isoformat(),
            "detail": detail,
            "host": f"{self.host}:{self.port}",
            "client_id": str(self.client_id),
            "account": self.account,
        }
        try:
            store.get_redis().hset(STATE_KEY, mapping=cast(Any, mapping))
        except Exception:
            logger.exception("could not publish the IB connection state")

    def heartbeat(self) -> None:
        """Refresh the connection state in Redis (readers treat an old ``since`` with connected=1 as live)."""
        self._publish_state(connected=self.connected, detail="connected" if self.connected else "disconnected")

    # --- the event pump ---------------------------------------------------------------------------------------------
    def pump(self, timeout: float = 0.05) -> int:
        """Handle every queued event (waiting up to ``timeout`` for the first).  Returns how many."""
        handled = 0
        try:
            event = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            self.flush_pending()
            return 0
        while True:
            self._handle(event)
            handled += 1
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
        self.flush_pending()
        return handled

    def _handle(self, event: ev.IBEvent) -> None:
        match event:
            case ev.CommandsWaiting():
                self.commands_waiting = True
            case ev.Ready(next_valid_id=next_id, accounts=accounts):
                self.account = accounts[0]
                self.next_valid_id = max(self.next_valid_id, next_id)
            case ev.NextValidId(order_id=next_id):
                self.next_valid_id = max(self.next_valid_id, next_id)
            case ev.Closed(reason=reason):
                if self.conn is not None and not self.conn.is_ready:
                    self._lost(reason)
            case ev.ErrorEvent():
                self._on_error(event)
            case ev.OpenOrderEvent():
                self._on_open_order(event)
            case ev.OpenOrderEnd():
                if self._snapshot is not None:
                    self._snapshot.done.add("open_orders")
            case ev.OrderStatusEvent():
                if self._pending_for_order(event.order_id):
                    self._held[event.order_id].append(event)
                else:
                    self._on_status(event)
            case ev.ExecutionEvent():
                self._pending_execs[(event.exec_id, event.req_id)] = (time.monotonic(), event)
            case ev.CommissionEvent():
                self._on_commission(event)
            case ev.ExecutionsEnd(req_id=req_id):
                if self._snapshot is not None and req_id == self._snapshot_execs_req:
                    self._snapshot.done.add("executions")
            case ev.CompletedOrderEvent():
                if self._snapshot is not None and event.order_ref:
                    self._snapshot.completed[event.order_ref] = {
                        "order_ref": event.order_ref,
                        "perm_id": event.perm_id,
                        "key": event.key,
                        "status": event.status,
                        "filled": str(event.filled),
                    }
            case ev.CompletedOrdersEnd():
                if self._snapshot is not None:
                    self._snapshot.done.add("completed")
            case ev.PositionEvent():
                if self._snapshot is not None:
                    self._snapshot.positions.append(
                        {
                            "account": event.account,
                            "key": event.key,
                            "position": str(event.position),
                            "avg_cost": str(event.avg_cost),
                        }
                    )
            case ev.PositionEnd():
                if self._snapshot is not None:
                    self._snapshot.done.add("positions")
            case ev.AccountValueEvent(tag=tag, value=value):
                self._account_values[tag] = value
            case ev.AccountSummaryEnd():
                if self._account_values:
                    self.sink.account({**self._account_values, "account": self.account})
            case ev.TickEvent():
                self._on_tick(event)

    def _pending_for_order(self, order_id: int) -> bool:
        """A live fill of the order still waits for its commission report (a snapshot's copy of an execution is
        history: the order's statuses never wait behind it)."""
        return any(e.order_id == order_id and e.req_id == -1 for _, e in self._pending_execs.values())

    def flush_pending(self, *, force: bool = False) -> None:
        """Hand on executions whose commission report did not come within ``COMMISSION_WAIT_SECONDS``."""
        now = time.monotonic()
        for pending, (since, _execution) in list(self._pending_execs.items()):
            if force or now - since > COMMISSION_WAIT_SECONDS:
                logger.warning("IB execution %s: no commission report after %.1fs", pending[0], now - since)
                self._release_execution(pending, None)
        if self._ticks:
            ticks, self._ticks = self._ticks, []
            self.sink.ticks(ticks)

    def _on_commission(self, event: ev.CommissionEvent) -> None:
        if self._snapshot is not None and event.exec_id in self._snapshot.executions:
            self._snapshot.executions[event.exec_id]["commission"] = str(event.commission)
        for pending in [p for p in self._pending_execs if p[0] == event.exec_id]:
            self._release_execution(pending, event.commission)

    def _release_execution(self, pending: tuple[str, int], commission: Decimal | None) -> None:
        _since, execution = self._pending_execs.pop(pending)
        exec_id = execution.exec_id
        order_ref = execution.order_ref or self.refs_by_id.get(execution.order_id, "")
        data = {
            "order_ref": order_ref,
            "ib_order_id": execution.order_id,
            "perm_id": execution.perm_id,
            "exec_id": execution.exec_id,
            "key": execution.key,
            "side": execution.side,
            "shares": str(execution.shares),
            "price": str(execution.price),
            "commission": str(commission) if commission is not None else None,
            "at": parse_exec_time(execution.time).isoformat(),
        }
        if self._snapshot is not None and execution.req_id == self._snapshot_execs_req:
            # A requested execution: the reconciliation books it if the database does not have it yet.
            self._snapshot.executions[exec_id] = data
            return
        if execution.req_id != -1:
            return  # the answer to a snapshot that already ended
        self.sink.order_event("execution", data)
        self.account_stale = True  # a fill moves cash and margin: the listener asks for the account again
        if not self._pending_for_order(execution.order_id):
            for held in self._held.pop(execution.order_id, []):
                if isinstance(held, ev.OrderStatusEvent):
                    self._on_status(held)

    def _on_open_order(self, event: ev.OpenOrderEvent) -> None:
        if event.order_ref:
            self.refs_by_id[event.order_id] = event.order_ref
        if self._snapshot is not None and event.order_ref:
            self._snapshot.open_orders[event.order_ref] = {
                "order_ref": event.order_ref,
                "ib_order_id": event.order_id,
                "perm_id": event.perm_id,
                "key": event.key,
                "action": event.action,
                "quantity": str(event.quantity),
                "status": event.status,
            }
        track = self.tracks.get(event.order_ref)
        if track is not None:
            track.perm_id = event.perm_id or track.perm_id
            if event.status in ACKED and not track.acked:
                track.acked = True
                self.sink.order_event(
                    "ack",
                    {
                        "order_ref": event.order_ref,
                        "ib_order_id": event.order_id,
                        "perm_id": event.perm_id,
                        "status": event.status,
                    },
                )

    def _on_status(self, event: ev.OrderStatusEvent) -> None:
        order_ref = self.refs_by_id.get(event.order_id, "")
        track = self.tracks.get(order_ref)
        if track is not None:
            track.status = event.status
            track.perm_id = event.perm_id or track.perm_id
            if event.status in ACKED:
                track.acked = True
        self.sink.order_event(
            "status",
            {
                "order_ref": order_ref,
                "ib_order_id": event.order_id,
                "perm_id": event.perm_id,
                "status": event.status,
                "filled": str(event.filled),
                "remaining": str(event.remaining),
                "why_held": event.why_held,
                "cancel_requested": event.order_id in self.cancels_requested,
            },
        )

    def _on_error(self, event: ev.ErrorEvent) -> None:
        code, req_id = event.code, event.req_id
        order_ref = self.refs_by_id.get(req_id, "") if req_id > 0 else ""
        if order_ref:
            category = "order"
        elif code in CONNECTIVITY_CODES:
            category = "connectivity"
        elif code in DATA_FARM_BROKEN or req_id in self._md_by_req or 2100 <= code < 2200 or code in (354, 10167):
            category = "market_data" if code not in (2104, 2106, 2158, 2107, 2108) else "info"
        else:
            category = "other"
        alert = code in ALERT_CODES or (category == "other" and code < 2000)
        level = logging.ERROR if alert else logging.WARNING if category == "order" else logging.INFO
        logger.log(level, "IB %s (req %s, %s): %s", code, req_id, category, event.message)
        self.sink.broker_message(
            {"code": code, "req_id": req_id, "message": event.message, "category": category, "alert": alert}
            | ({"order_ref": order_ref} if order_ref else {})
        )
        if order_ref and code in REJECT_CODES:
            track = self.tracks.get(order_ref)
            if track is not None:
                track.reject = (code, event.message)
            self.sink.order_event(
                "rejected", {"order_ref": order_ref, "ib_order_id": req_id, "code": code, "message": event.message}
            )
        if code == 1100:
            self.link_ok = False
            self._publish_state(connected=False, detail=f"IB 1100: {event.message}")
        elif code in (1101, 1102):
            self.link_ok = True
            self.needs_reconcile = True
            if code == 1101:
                # Connectivity restored with data lost: every market data subscription must be made again.
                self._resubscribe_all()
            self._publish_state(connected=True, detail=f"IB {code}: {event.message}")
        elif code == 326:
            self._lost(f"client id {self.client_id} is in use (326)")

    # --- orders -----------------------------------------------------------------------------------------------------
    def _allocate_id(self) -> int:
        """The next order id: above the stored counter, TWS's nextValidId and every id this platform used; the
        counter is raised and committed before the id is used."""
        counter, _ = IBOrderIdCounter.objects.select_for_update().get_or_create(
            client_id=self.client_id, defaults={"next_id": 1, "updated_at": clock.now()}
        )
        highest = Order.objects.filter(ib_order_id__isnull=False).aggregate(top=Max("ib_order_id"))["top"] or 0
        order_id = max(counter.next_id, self.next_valid_id, highest + 1)
        counter.next_id = order_id + 1
        counter.updated_at = clock.now()
        counter.save(update_fields=["next_id", "updated_at"])
        self.next_valid_id = order_id + 1
        return order_id

    def place(self, *, order_pk: int, new_id: bool = False) -> OrderTrack:
        """Send an order (a limit order, IOC, on SMART) with the platform's client order id as ``orderRef``.  The IB
        order id is persisted before sending and reused on a retry; ``new_id`` takes a fresh one (an order with no
        trace at the broker is sent again under a new id and the same orderRef)."""
        if self.conn is None or not self.connected:
            raise ConnectionError("IB is not connected")
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=order_pk)
            if order.ib_order_id is None or new_id:
                order.ib_order_id = self._allocate_id()
                Order.objects.filter(pk=order.pk).update(ib_order_id=order.ib_order_id)
        assert order.ib_order_id is not None
        contract = option_contract(order.option_symbol)
        ib_order = IBOrder()
        ib_order.action = "BUY" if order.side == Order.Side.BUY else "SELL"
        ib_order.orderType = "LMT"
        ib_order.totalQuantity = Decimal(order.quantity)
        ib_order.lmtPrice = float(order.limit_price)
        ib_order.tif = "IOC"  # marketable limits: filled now at the limit or not at all, never left resting unwatched
        ib_order.orderRef = order.client_order_id
        ib_order.account = self.account
        ib_order.transmit = True
        ib_order.eTradeOnly = False  # current TWS rejects both when true (10268 / 10269)
        ib_order.firmQuoteOnly = False
        track = OrderTrack(order_ref=order.client_order_id, ib_order_id=order.ib_order_id)
        self.tracks[order.client_order_id] = track
        self.refs_by_id[order.ib_order_id] = order.client_order_id
        logger.info(
            "IB placeOrder %s %s %s %s @ %s ref %s",
            order.ib_order_id,
            ib_order.action,
            order.quantity,
            order.option_symbol,
            order.limit_price,
            order.client_order_id,
        )
        self.conn.placeOrder(order.ib_order_id, contract, ib_order)
        return track

    def cancel(self, *, ib_order_id: int) -> None:
        if self.conn is None or not self.connected:
            raise ConnectionError("IB is not connected")
        self.cancels_requested.add(ib_order_id)
        self.conn.cancelOrder(ib_order_id)

    def wait(self, track: OrderTrack, *, finished: bool, timeout: float) -> OrderTrack:
        """Pump events until ``track`` is answered (acknowledged or rejected) or, with ``finished``, done (filled,
        cancelled, rejected), or ``timeout`` passes or the connection drops."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (track.finished if finished else track.answered) and not self._pending_for_order(track.ib_order_id):
                break
            if not self.connected:
                break
            self.pump(min(0.05, max(deadline - time.monotonic(), 0.001)))
        return track

    # --- reconciliation ---------------------------------------------------------------------------------------------
    def snapshot(self, *, timeout: float = 10.0) -> Snapshot:
        """What the broker holds now: positions, open orders, completed orders and executions (with their
        commissions), requested together; other events keep flowing to the sink meanwhile."""
        if self.conn is None or not self.connected:
            raise ConnectionError("IB is not connected")
        snap = Snapshot(taken_at=clock.now())
        self._snapshot = snap
        self._req_id += 1
        self._snapshot_execs_req = self._req_id
        try:
            self.conn.reqPositions()
            self.conn.reqOpenOrders()
            self.conn.reqCompletedOrders(True)
            self.conn.reqExecutions(self._snapshot_execs_req, ExecutionFilter())
            deadline = time.monotonic() + timeout
            needed = {"positions", "open_orders", "executions", "completed"}
            while not needed <= snap.done and time.monotonic() < deadline and self.connected:
                self.pump(0.05)
            if not needed <= snap.done:
                missing = ", ".join(sorted(needed - snap.done))
                raise TimeoutError(f"IB reconciliation snapshot incomplete after {timeout}s: no end of {missing}")
            # Commission reports of requested executions follow them: give them a moment, then take what came.
            grace = time.monotonic() + 1.0
            while any(
                e.req_id == self._snapshot_execs_req for _, e in self._pending_execs.values()
            ) and time.monotonic() < min(grace, deadline):
                self.pump(0.05)
            for pending in [p for p in self._pending_execs if p[1] == self._snapshot_execs_req]:
                self._release_execution(pending, None)
            self.conn.cancelPositions()
        finally:
            self._snapshot = None
            self._snapshot_execs_req = -1
        for ref in snap.refs():
            order_id = snap.open_orders.get(ref, {}).get("ib_order_id")
            if order_id:
                self.refs_by_id[int(order_id)] = ref
        for execution in snap.executions.values():
            if execution["order_ref"]:
                self.refs_by_id.setdefault(int(execution["ib_order_id"]), execution["order_ref"])
        self.needs_reconcile = False
        return snap

    def reconcile(self, *, timeout: float = 10.0) -> Snapshot:
        """Take a snapshot and hand it to the sink (the reconciliation service compares it with the database)."""
        snap = self.snapshot(timeout=timeout)
        self.sink.reconcile(snap.as_payload())
        return snap

    # --- account and market data ------------------------------------------------------------------------------------
    def request_account(self) -> None:
        """Ask for the account summary; the values reach the sink when TWS ends the answer."""
        if self.conn is None or not self.connected:
            return
        self.account_stale = False
        if self._account_req is not None:
            self.conn.cancelAccountSummary(self._account_req)
        self._req_id += 1
        self._account_req = self._req_id
        self._account_values = {}
        self.conn.reqAccountSummary(self._req_id, "All", ACCOUNT_TAGS)

    def _resubscribe_all(self) -> None:
        """Every quote subscription again under new request ids (after a reconnect, or 1101: data lost)."""
        keys = sorted(self._md_keys)
        self._md_by_req.clear()
        self._md_keys.clear()
        self.subscribe_quotes(keys)

    def subscribe_quotes(self, keys: Iterable[str]) -> int:
        """Stream quotes for ``keys`` (OCC symbols or tickers) not yet subscribed; returns how many were new."""
        if self.conn is None or not self.connected:
            return 0
        added = 0
        for key in keys:
            if key in self._md_keys:
                continue
            contract = contract_for(key)
            self._req_id += 1
            self._md_keys[key] = self._req_id
            self._md_by_req[self._req_id] = (key, contract.secType)
            self.conn.reqMktData(self._req_id, contract, "", False, False, [])
            added += 1
        return added

    def unsubscribe_quotes(self, keys: Iterable[str]) -> None:
        for key in keys:
            req_id = self._md_keys.pop(key, None)
            if req_id is not None:
                self._md_by_req.pop(req_id, None)
                if self.conn is not None and self.connected:
                    self.conn.cancelMktData(req_id)

    @property
    def subscribed(self) -> set[str]:
        return set(self._md_keys)

    def _on_tick(self, event: ev.TickEvent) -> None:
        target = self._md_by_req.get(event.req_id)
        if target is None:
            return
        key, sec_type = target
        self._ticks.append(
            {
                "key": key,
                "sec_type": sec_type,
                "con_id": None,
                "field": event.field,
                "value": "" if event.value is None else str(event.value),
                "at": clock.now().isoformat(),
            }
        )
