"""One socket to TWS or IB Gateway through the official ``ibapi`` client, its callbacks turned into events.

The ``ibapi`` client runs its message loop in a thread and calls the wrapper methods from there.  Nothing here does
platform work in that thread: every callback becomes an immutable event on a queue that the owner of the connection
(``apps.execution.ib.gateway.IBGateway``) drains in its own thread.  Every callback is wrapped so that no exception
escapes into the client's loop (one would end ``run()`` and silently drop the connection).

``ibapi``'s ``connect()`` blocks forever against a server that accepts and never answers: ``open()`` runs it in a
thread, bounded by a timeout, and breaks it by closing the socket.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from ibapi.client import EClient
from ibapi.commission_report import CommissionReport
from ibapi.common import UNSET_DOUBLE
from ibapi.contract import Contract
from ibapi.execution import Execution
from ibapi.order import Order as IBOrder
from ibapi.order_state import OrderState
from ibapi.wrapper import EWrapper

from apps.execution.ib.contracts import contract_key

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


# --- events -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandsWaiting:
    """Not from TWS: the connection owner has order commands to carry out (wakes its event wait at once)."""


@dataclass(frozen=True)
class Ready:
    next_valid_id: int
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class Closed:
    reason: str


@dataclass(frozen=True)
class ErrorEvent:
    req_id: int
    code: int
    message: str


@dataclass(frozen=True)
class NextValidId:
    order_id: int


@dataclass(frozen=True)
class OpenOrderEvent:
    order_id: int
    order_ref: str
    perm_id: int
    key: str
    action: str
    quantity: Decimal
    status: str


@dataclass(frozen=True)
class OpenOrderEnd:
    """TWS has sent every open order asked for."""


@dataclass(frozen=True)
class OrderStatusEvent:
    order_id: int
    status: str
    filled: Decimal
    remaining: Decimal
    avg_fill_price: Decimal
    perm_id: int
    why_held: str


@dataclass(frozen=True)
class ExecutionEvent:
    req_id: int
    order_id: int
    order_ref: str
    perm_id: int
    exec_id: str
    key: str
    side: str  # BOT / SLD
    shares: Decimal
    price: Decimal
    time: str  # as TWS writes it: "YYYYMMDD  HH:MM:SS" (exchange-local, optionally followed by a time zone)
    account: str


@dataclass(frozen=True)
class ExecutionsEnd:
    req_id: int


@dataclass(frozen=True)
class CommissionEvent:
    exec_id: str
    commission: Decimal
    realized_pnl: Decimal | None


@dataclass(frozen=True)
class CompletedOrderEvent:
    order_ref: str
    perm_id: int
    key: str
    status: str
    filled: Decimal


@dataclass(frozen=True)
class CompletedOrdersEnd:
    """TWS has sent every completed order asked for."""


@dataclass(frozen=True)
class PositionEvent:
    account: str
    key: str
    con_id: int
    position: Decimal
    avg_cost: Decimal


@dataclass(frozen=True)
class PositionEnd:
    """TWS has sent every position."""


@dataclass(frozen=True)
class AccountValueEvent:
    req_id: int
    account: str
    tag: str
    value: str
    currency: str


@dataclass(frozen=True)
class AccountSummaryEnd:
    req_id: int


@dataclass(frozen=True)
class TickEvent:
    req_id: int
    field: str
    value: Decimal | None


IBEvent = (
    CommandsWaiting
    | Ready
    | Closed
    | ErrorEvent
    | NextValidId
    | OpenOrderEvent
    | OpenOrderEnd
    | OrderStatusEvent
    | ExecutionEvent
    | ExecutionsEnd
    | CommissionEvent
    | CompletedOrderEvent
    | CompletedOrdersEnd
    | PositionEvent
    | PositionEnd
    | AccountValueEvent
    | AccountSummaryEnd
    | TickEvent
)

# tickPrice / tickSize / tickOptionComputation types the platform stores (IB's TickTypeEnum numbers).
PRICE_TICKS = {1: "bid", 2: "ask", 4: "last", 9: "close", 66: "bid", 67: "ask", 68: "last"}
SIZE_TICKS = {0: "bid_size", 3: "ask_size", 5: "last_size", 69: "bid_size", 70: "ask_size", 71: "last_size"}
MODEL_OPTION_TICK = 13  # the model's computation: implied volatility, delta, gamma, underlying price


def to_decimal(value: Any) -> Decimal | None:
    """A number from the client (float, int, str) as an exact Decimal of its shortest text; IB's "unset" is None."""
    if value is None or value == "" or value == UNSET_DOUBLE:
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _guarded(method: F) -> F:
    """No exception may escape into the ibapi message loop: it would end run() and drop the connection quietly."""

    @functools.wraps(method)
    def wrapper(self: IBConnection, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            logger.exception("IB callback %s failed; the connection stays up", method.__name__)
            return None

    return wrapper  # type: ignore[return-value]


class IBConnection(EWrapper, EClient):
    """The ibapi client and wrapper for one socket.  A new instance per connection attempt; events go to ``events``
    (shared across instances by the gateway, so a reconnect keeps one ordered stream)."""

    def __init__(self, events: queue.Queue[IBEvent]) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.events = events
        self.accounts: tuple[str, ...] = ()
        self.next_valid_id: int | None = None
        self._ready = threading.Event()
        self._closed_reported = False
        self._loop: threading.Thread | None = None
        self.refused: ErrorEvent | None = None  # 326 client id in use, 502 cannot connect

    # --- life cycle -------------------------------------------------------------------------------------------------
    def open(self, *, host: str, port: int, client_id: int, timeout: float) -> bool:
        """Connect, start the message loop and wait for nextValidId and a non-empty managedAccounts, all within
        ``timeout`` seconds.  False (and closed) when any of it does not happen in time."""
        handshake = threading.Thread(
            target=self.connect, args=(host, port, client_id), name=f"ib-connect-{client_id}", daemon=True
        )
        handshake.start()
        handshake.join(timeout)
        if handshake.is_alive():
            logger.warning("IB %s:%s: no handshake answer within %.1fs; closing", host, port, timeout)
            self._abort()
            handshake.join(2)
            return False
        if not self.isConnected():
            return False
        self._loop = threading.Thread(target=self._run_loop, name=f"ib-loop-{client_id}", daemon=True)
        self._loop.start()
        if not self._ready.wait(timeout) or self.refused is not None:
            logger.warning("IB %s:%s: connected but not ready (nextValidId/managedAccounts) in time", host, port)
            self.close()
            return False
        assert self.next_valid_id is not None
        self.events.put(Ready(next_valid_id=self.next_valid_id, accounts=self.accounts))
        return True

    def _abort(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.disconnect()

    def _run_loop(self) -> None:
        try:
            self.run()
        except Exception:
            logger.exception("IB message loop ended with an error")
        finally:
            self._report_closed("message loop ended")

    def close(self) -> None:
        if self.conn is not None:
            self.disconnect()
        self._report_closed("closed by the platform")

    def _report_closed(self, reason: str) -> None:
        if not self._closed_reported and self._ready.is_set():
            self._closed_reported = True
            self.events.put(Closed(reason=reason))

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set() and self.isConnected()

    def _check_ready(self) -> None:
        if self.next_valid_id is not None and self.accounts:
            self._ready.set()

    # --- EWrapper ---------------------------------------------------------------------------------------------------
    @_guarded
    def connectionClosed(self) -> None:  # noqa: N802 - ibapi's names
        self._report_closed("connection closed")

    @_guarded
    def nextValidId(self, orderId: int) -> None:  # noqa: N802,N803
        self.next_valid_id = int(orderId)
        if self._ready.is_set():
            self.events.put(NextValidId(order_id=int(orderId)))
        self._check_ready()

    @_guarded
    def managedAccounts(self, accountsList: str) -> None:  # noqa: N802,N803
        self.accounts = tuple(a for a in accountsList.split(",") if a)
        self._check_ready()

    @_guarded
    def error(self, reqId: int, errorCode: int, errorString: str) -> None:  # noqa: N802,N803
        event = ErrorEvent(req_id=int(reqId), code=int(errorCode), message=str(errorString))
        if event.code in (326, 502):
            self.refused = event
            self._ready.set()  # wake open(): it checks ``refused``
        self.events.put(event)

    @_guarded
    def openOrder(self, orderId: int, contract: Contract, order: IBOrder, orderState: OrderState) -> None:  # noqa: N802,N803
        self.events.put(
            OpenOrderEvent(
                order_id=int(orderId),
                order_ref=order.orderRef or "",
                perm_id=int(order.permId or 0),
                key=contract_key(contract),
                action=order.action,
                quantity=to_decimal(order.totalQuantity) or Decimal(0),
                status=orderState.status or "",
            )
        )

    @_guarded
    def openOrderEnd(self) -> None:  # noqa: N802
        self.events.put(OpenOrderEnd())

    @_guarded
    def orderStatus(  # noqa: N802
        self,
        orderId: int,  # noqa: N803
        status: str,
        filled: float,
        remaining: float,
        avgFillPrice: float,  # noqa: N803
        permId: int,  # noqa: N803
        parentId: int,  # noqa: N803
        lastFillPrice: float,  # noqa: N803
        clientId: int,  # noqa: N803
        whyHeld: str,  # noqa: N803
        mktCapPrice: float,  # noqa: N803
    ) -> None:
        self.events.put(
            OrderStatusEvent(
                order_id=int(orderId),
                status=status,
                filled=to_decimal(filled) or Decimal(0),
                remaining=to_decimal(remaining) or Decimal(0),
                avg_fill_price=to_decimal(avgFillPrice) or Decimal(0),
                perm_id=int(permId or 0),
                why_held=whyHeld or "",
            )
        )

    @_guarded
    def execDetails(self, reqId: int, contract: Contract, execution: Execution) -> None:  # noqa: N802,N803
        self.events.put(
            ExecutionEvent(
                req_id=int(reqId),
                order_id=int(execution.orderId),
                order_ref=execution.orderRef or "",
                perm_id=int(execution.permId or 0),
                exec_id=execution.execId,
                key=contract_key(contract),
                side=execution.side,
                shares=to_decimal(execution.shares) or Decimal(0),
                price=to_decimal(execution.price) or Decimal(0),
                time=execution.time or "",
                account=execution.acctNumber or "",
            )
        )

    @_guarded
    def execDetailsEnd(self, reqId: int) -> None:  # noqa: N802,N803
        self.events.put(ExecutionsEnd(req_id=int(reqId)))

    @_guarded
    def commissionReport(self, commissionReport: CommissionReport) -> None:  # noqa: N802,N803
        self.events.put(
            CommissionEvent(
                exec_id=commissionReport.execId,
                commission=to_decimal(commissionReport.commission) or Decimal(0),
                realized_pnl=to_decimal(commissionReport.realizedPNL),
            )
        )

    @_guarded
    def completedOrder(self, contract: Contract, order: IBOrder, orderState: OrderState) -> None:  # noqa: N802,N803
        self.events.put(
            CompletedOrderEvent(
                order_ref=order.orderRef or "",
                perm_id=int(order.permId or 0),
                key=contract_key(contract),
                status=orderState.status or "",
                filled=to_decimal(order.filledQuantity) or Decimal(0),
            )
        )

    @_guarded
    def completedOrdersEnd(self) -> None:  # noqa: N802
        self.events.put(CompletedOrdersEnd())

    @_guarded
    def position(self, account: str, contract: Contract, position: float, avgCost: float) -> None:  # noqa: N803
        self.events.put(
            PositionEvent(
                account=account,
                key=contract_key(contract),
                con_id=int(contract.conId or 0),
                position=to_decimal(position) or Decimal(0),
                avg_cost=to_decimal(avgCost) or Decimal(0),
            )
        )

    @_guarded
    def positionEnd(self) -> None:  # noqa: N802
        self.events.put(PositionEnd())

    @_guarded
    def accountSummary(self, reqId: int, account: str, tag: str, value: str, currency: str) -> None:  # noqa: N802,N803
        self.events.put(AccountValueEvent(req_id=int(reqId), account=account, tag=tag, value=value, currency=currency))

    @_guarded
    def accountSummaryEnd(self, reqId: int) -> None:  # noqa: N802,N803
        self.events.put(AccountSummaryEnd(req_id=int(reqId)))

    @_guarded
    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:  # noqa: N802,N803
        field = PRICE_TICKS.get(int(tickType))
        if field is not None:
            value = to_decimal(price)
            self.events.put(TickEvent(req_id=int(reqId), field=field, value=value if value and value > 0 else None))

    @_guarded
    def tickSize(self, reqId: int, tickType: int, size: int) -> None:  # noqa: N802,N803
        field = SIZE_TICKS.get(int(tickType))
        if field is not None:
            self.events.put(TickEvent(req_id=int(reqId), field=field, value=to_decimal(size)))

    @_guarded
    def tickOptionComputation(  # noqa: N802
        self,
        reqId: int,  # noqa: N803
        tickType: int,  # noqa: N803
        tickAttrib: int,  # noqa: N803
        impliedVol: float,  # noqa: N803
        delta: float,
        optPrice: float,  # noqa: N803
        pvDividend: float,  # noqa: N803
        gamma: float,
        vega: float,
        theta: float,
        undPrice: float,  # noqa: N803
    ) -> None:
        if int(tickType) != MODEL_OPTION_TICK:
            return
        for field, value in (("implied_vol", impliedVol), ("delta", delta), ("gamma", gamma), ("und_price", undPrice)):
            number = to_decimal(value)
            # IB writes -1 / -2 for "not computed"
            if number is not None and not (field != "delta" and number < 0):
                self.events.put(TickEvent(req_id=int(reqId), field=field, value=number))
