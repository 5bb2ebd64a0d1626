"""A recording ``ibapi`` client (the real EClient/EWrapper) for tests against the TWS simulator.

Every callback is recorded as ``(name, args)``; ``wait_for`` blocks (bounded) until a matching one has arrived.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.wrapper import EWrapper

WAIT_SECONDS = 10.0


class RecordingClient(EWrapper, EClient):
    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self._cond = threading.Condition()
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._thread: threading.Thread | None = None
        self._last_taken = 0

    # --- recording ---
    def _record(self, name: str, *args: Any) -> None:
        with self._cond:
            self.events.append((name, args))
            self._cond.notify_all()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        with self._cond:
            return [args for event, args in self.events if event == name]

    def wait_for(
        self, name: str, match: Callable[..., bool] = lambda *args: True, timeout: float = WAIT_SECONDS
    ) -> tuple[Any, ...]:
        """The first recorded ``name`` callback whose args satisfy ``match`` (waiting up to ``timeout``)."""

        def found() -> list[tuple[Any, ...]]:
            # A list, so that a callback without arguments (an empty tuple) still counts as found.
            return [args for event, args in self.events if event == name and match(*args)][:1]

        with self._cond:
            result = self._cond.wait_for(found, timeout=timeout)
        if not result:
            raise AssertionError(f"no {name} matching within {timeout}s; got {self.events[-15:]}")
        return result[0]

    def error_codes(self) -> list[int]:
        return [args[1] for args in self.named("error")]

    # --- lifecycle ---
    def start(self, port: int, client_id: int, *, wait_ready: bool = True) -> RecordingClient:
        self.connect("127.0.0.1", port, client_id)
        self._thread = threading.Thread(target=self.run, name=f"ib-test-client-{client_id}", daemon=True)
        self._thread.start()
        if wait_ready:
            self.wait_for("nextValidId")
            self.wait_for("managedAccounts")
        return self

    def stop(self) -> None:
        if self.isConnected():
            self.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS)

    def next_id(self) -> int:
        return int(self.named("nextValidId")[-1][0])

    def take_id(self) -> int:
        """An order id for a new order: past both the server's nextValidId and every id this client took."""
        self._last_taken = max(self.next_id(), self._last_taken + 1)
        return self._last_taken

    # --- EWrapper ---
    def nextValidId(self, orderId: int) -> None:
        self._record("nextValidId", orderId)

    def managedAccounts(self, accountsList: str) -> None:
        self._record("managedAccounts", accountsList)

    def error(self, reqId: int, errorCode: int, errorString: str) -> None:
        self._record("error", reqId, errorCode, errorString)

    def connectionClosed(self) -> None:
        self._record("connectionClosed")

    def openOrder(self, orderId, contract, order, orderState) -> None:
        self._record("openOrder", orderId, contract, order, orderState)

    def openOrderEnd(self) -> None:
        self._record("openOrderEnd")

    def orderStatus(
        self,
        orderId,
        status,
        filled,
        remaining,
        avgFillPrice,
        permId,
        parentId,
        lastFillPrice,
        clientId,
        whyHeld,
        mktCapPrice,
    ) -> None:
        self._record(
            "orderStatus", orderId, status, filled, remaining, avgFillPrice, permId, parentId, lastFillPrice, clientId
        )

    def execDetails(self, reqId, contract, execution) -> None:
        self._record("execDetails", reqId, contract, execution)

    def execDetailsEnd(self, reqId) -> None:
        self._record("execDetailsEnd", reqId)

    def commissionReport(self, commissionReport) -> None:
        self._record("commissionReport", commissionReport)

    def position(self, account, contract, position, avgCost) -> None:
        self._record("position", account, contract, position, avgCost)

    def positionEnd(self) -> None:
        self._record("positionEnd")

    def accountSummary(self, reqId, account, tag, value, currency) -> None:
        self._record("accountSummary", reqId, account, tag, value, currency)

    def accountSummaryEnd(self, reqId) -> None:
        self._record("accountSummaryEnd", reqId)

    def tickPrice(self, reqId, tickType, price, attrib) -> None:
        self._record("tickPrice", reqId, tickType, price)

    def tickSize(self, reqId, tickType, size) -> None:
        self._record("tickSize", reqId, tickType, size)

    def tickSnapshotEnd(self, reqId) -> None:
        self._record("tickSnapshotEnd", reqId)

    def completedOrder(self, contract, order, orderState) -> None:
        self._record("completedOrder", contract, order, orderState)

    def completedOrdersEnd(self) -> None:
        self._record("completedOrdersEnd")

    def currentTime(self, time) -> None:
        self._record("currentTime", time)

    def contractDetailsEnd(self, reqId) -> None:
        self._record("contractDetailsEnd", reqId)


def option_contract(root: str, expiry: str, right: str, strike: float) -> Contract:
    contract = Contract()
    contract.symbol = root
    contract.secType = "OPT"
    contract.lastTradeDateOrContractMonth = expiry
    contract.strike = strike
    contract.right = right
    contract.multiplier = "100"
    contract.exchange = "SMART"
    contract.currency = "USD"
    return contract


def order(
    action: str,
    quantity: int,
    order_type: str = "LMT",
    *,
    limit: Decimal | None = None,
    aux: Decimal | None = None,
    ref: str = "",
    tif: str = "DAY",
    transmit: bool = True,
    parent_id: int = 0,
    oca_group: str = "",
) -> Order:
    """An order as the platform's adapter writes it (eTradeOnly/firmQuoteOnly off: current TWS rejects them)."""
    result = Order()
    result.action = action
    result.totalQuantity = quantity
    result.orderType = order_type
    if limit is not None:
        result.lmtPrice = float(limit)
    if aux is not None:
        result.auxPrice = float(aux)
    result.orderRef = ref
    result.tif = tif
    result.transmit = transmit
    result.parentId = parent_id
    result.ocaGroup = oca_group
    if oca_group:
        result.ocaType = 1
    result.eTradeOnly = False
    result.firmQuoteOnly = False
    return result
