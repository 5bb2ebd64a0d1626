"""The simulated account: orders, fills, positions and cash, and the messages each change sends to its client.

Everything here runs under the simulator's lock; ``OrderSink`` delivers messages (to the connection of the order's
client id, if one is connected: a client that is gone simply misses them, as with a real TWS) and persists state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from apps.execution.brokers.base import BrokerQuote
from apps.execution.brokers.paper import PaperBroker
from apps.execution.ib.simulator import messages
from apps.execution.ib.simulator.instruments import Instrument, instrument_for_key
from apps.execution.ib.simulator.records import SimExecution, SimOrder, SimPosition, SimState

logger = logging.getLogger(__name__)

SUPPORTED_ORDER_TYPES = frozenset({"LMT", "MKT", "STP", "STP LMT", "MOC"})
SUPPORTED_TIFS = frozenset({"DAY", "GTC", "IOC"})
ACCOUNT_TAGS = (
    "NetLiquidation",
    "TotalCashValue",
    "BuyingPower",
    "AvailableFunds",
    "GrossPositionValue",
    "MaintMarginReq",
    "InitMarginReq",
    "UnrealizedPnL",
    "RealizedPnL",
)


class OrderSink(Protocol):
    def to_client(self, client_id: int, fields: messages.Fields) -> None: ...

    def position_changed(self, key: str) -> None: ...

    def persist(self) -> None: ...


@dataclass(frozen=True)
class PlaceRequest:
    """The parts of a PLACE_ORDER the simulator acts on."""

    order_id: int
    instrument: Instrument
    action: str
    quantity_text: str
    order_type: str
    lmt_price: Decimal | None
    aux_price: Decimal | None
    tif: str
    oca_group: str
    oca_type: int
    account: str
    exchange: str
    order_ref: str
    transmit: bool
    parent_id: int
    etrade_only: bool
    firm_quote_only: bool


class Book:
    def __init__(
        self,
        *,
        account: str,
        state: SimState,
        quote_for: Callable[[str], BrokerQuote | None],
        clock: Callable[[], datetime],
        pricer: PaperBroker,
        commission_per_contract: Decimal,
        sink: OrderSink,
    ) -> None:
        self.account = account
        self.state = state
        self.quote_for = quote_for
        self.clock = clock
        self.pricer = pricer
        self.commission_per_contract = commission_per_contract
        self.sink = sink
        self.reject_reasons: list[str] = []
        self.partial_next: int | None = None
        self.hold = False

    # --- lookups ----------------------------------------------------------------------------------------------------
    def find(self, client_id: int, order_id: int) -> SimOrder | None:
        for order in self.state.orders:
            if order.client_id == client_id and order.order_id == order_id:
                return order
        return None

    def next_id(self, client_id: int) -> int:
        return self.state.next_ids.get(client_id, 1)

    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        return [o for o in self.state.orders if o.is_open and (client_id is None or o.client_id == client_id)]

    def completed_orders(self) -> list[SimOrder]:
        return [o for o in self.state.orders if not o.is_open]

    # --- messages ---------------------------------------------------------------------------------------------------
    def _send_open_order(self, order: SimOrder) -> None:
        instrument = instrument_for_key(order.key)
        self.sink.to_client(order.client_id, messages.open_order(order, instrument))
        self.sink.to_client(order.client_id, messages.order_status(order))

    def _send_status(self, order: SimOrder) -> None:
        self.sink.to_client(order.client_id, messages.order_status(order))

    def _error(self, client_id: int, req_id: int, code: int, text: str) -> None:
        self.sink.to_client(client_id, messages.error(req_id, code, text))

    # --- placing ----------------------------------------------------------------------------------------------------
    def place(self, client_id: int, request: PlaceRequest) -> None:
        """PLACE_ORDER: a new order, a modification of an open one, or error 103 for a used id."""
        existing = self.find(client_id, request.order_id)
        if existing is not None:
            if existing.is_open:
                self._modify(existing, request)
            else:
                self._error(client_id, request.order_id, 103, "Duplicate order id")
            return
        if request.order_id < self.next_id(client_id):
            self._error(client_id, request.order_id, 103, "Duplicate order id")
            return
        self.state.next_ids[client_id] = request.order_id + 1
        order = SimOrder(
            order_id=request.order_id,
            client_id=client_id,
            perm_id=self.state.next_perm_id,
            order_ref=request.order_ref,
            key=request.instrument.key,
            action=request.action,
            quantity=0,
            order_type=request.order_type,
            tif=request.tif or "DAY",
            lmt_price=request.lmt_price,
            aux_price=request.aux_price,
            parent_id=request.parent_id,
            oca_group=request.oca_group,
            oca_type=request.oca_type,
            transmit=request.transmit,
            account=request.account or self.account,
            exchange=request.exchange or "SMART",
            status="PendingSubmit",
            created_at=self.clock(),
        )
        self.state.next_perm_id += 1
        reject = self._validate(client_id, order, request)
        if reject is not None:
            code, text = reject
            self._reject(order, code, text)
            return
        if self.reject_reasons:
            self._reject(order, 201, f"Order rejected - reason:{self.reject_reasons.pop(0)}")
            return
        parent = self.find(client_id, order.parent_id) if order.parent_id else None
        self.state.orders.append(order)
        order.status = "Submitted" if self._is_active(order) else "PreSubmitted"
        self._send_open_order(order)
        logger.info(
            "tws_sim order %s/%s %s %s %s %s",
            client_id,
            order.order_id,
            order.action,
            order.quantity,
            order.key,
            order.status,
        )
        if order.transmit and parent is not None and not parent.transmit:
            self._transmit_bracket(parent)
        self._work(order, placing=True)
        self.sink.persist()

    def _validate(self, client_id: int, order: SimOrder, request: PlaceRequest) -> tuple[int, str] | None:
        try:
            quantity = Decimal(request.quantity_text or "0")
        except ArithmeticError:
            quantity = Decimal("0")
        if quantity <= 0 or quantity != quantity.to_integral_value():
            return 201, f"Order rejected - reason:quantity must be a positive whole number, got {request.quantity_text}"
        order.quantity = int(quantity)
        if request.etrade_only:
            return 10268, "The 'EtradeOnly' order attribute is not supported."
        if request.firm_quote_only:
            return 10269, "The 'firmQuoteOnly' order attribute is not supported."
        if order.action not in ("BUY", "SELL"):
            return 201, f"Order rejected - reason:action must be BUY or SELL, got {order.action!r}"
        if order.order_type not in SUPPORTED_ORDER_TYPES:
            return 201, f"Order rejected - reason:order type {order.order_type!r} is not simulated"
        if order.tif not in SUPPORTED_TIFS:
            return 201, f"Order rejected - reason:time in force {order.tif!r} is not simulated"
        if order.order_type in ("LMT", "STP LMT") and order.lmt_price is None:
            return 201, "Order rejected - reason:a limit order needs a limit price"
        if order.order_type in ("STP", "STP LMT") and order.aux_price is None:
            return 201, "Order rejected - reason:a stop order needs a stop price"
        if order.parent_id and self.find(client_id, order.parent_id) is None:
            return 201, f"Order rejected - reason:parent order {order.parent_id} does not exist"
        return None

    def _reject(self, order: SimOrder, code: int, text: str) -> None:
        order.status = "Cancelled"
        order.completed_at = self.clock()
        order.completed_status = text
        self.state.orders.append(order)
        self._error(order.client_id, order.order_id, code, text)
        self._send_status(order)
        logger.info("tws_sim rejected %s/%s: %s", order.client_id, order.order_id, text)
        self.sink.persist()

    def _modify(self, order: SimOrder, request: PlaceRequest) -> None:
        try:
            quantity = Decimal(request.quantity_text or "0")
        except ArithmeticError:
            quantity = Decimal("0")
        if quantity <= 0 or quantity != quantity.to_integral_value() or int(quantity) < order.filled:
            self._error(order.client_id, order.order_id, 201, "Order rejected - reason:invalid quantity on modify")
            return
        order.quantity = int(quantity)
        order.order_type = request.order_type or order.order_type
        order.lmt_price = request.lmt_price
        order.aux_price = request.aux_price
        order.tif = request.tif or order.tif
        order.oca_group = request.oca_group
        order.order_ref = request.order_ref or order.order_ref
        newly_transmitted = request.transmit and not order.transmit
        order.transmit = order.transmit or request.transmit
        order.status = "Submitted" if self._is_active(order) else "PreSubmitted"
        self._send_open_order(order)
        if newly_transmitted:
            self._transmit_bracket(order)
        self._work(order, placing=True)
        self.sink.persist()

    def _is_active(self, order: SimOrder) -> bool:
        """Transmitted and not waiting on a parent that has not filled."""
        if not order.transmit:
            return False
        if order.parent_id:
            parent = self.find(order.client_id, order.parent_id)
            return parent is not None and parent.status == "Filled"
        return True

    def _transmit_bracket(self, root: SimOrder) -> None:
        """A transmitted last child sends its whole bracket: the parent and the children held back with it."""
        while root.parent_id:
            parent = self.find(root.client_id, root.parent_id)
            if parent is None:
                break
            root = parent
        family = [root] + [
            o for o in self.state.orders if o.client_id == root.client_id and o.parent_id == root.order_id
        ]
        for member in family:
            if member.is_open and not member.transmit:
                member.transmit = True
                if self._is_active(member):
                    member.status = "Submitted"
                    self._send_status(member)
        if root.is_open and root.status == "Submitted":
            self._work(root, placing=True)

    # --- cancelling -------------------------------------------------------------------------------------------------
    def cancel(self, client_id: int, order_id: int) -> None:
        order = self.find(client_id, order_id)
        if order is None:
            self._error(client_id, order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
            return
        if not order.is_open:
            self._error(
                client_id,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status}.",
            )
            return
        self._cancel(order, reason="Cancelled by Trader", announce=True)
        self.sink.persist()

    def global_cancel(self) -> None:
        for order in list(self.state.orders):
            if order.is_open:
                self._cancel(order, reason="Cancelled by Trader", announce=True)
        self.sink.persist()

    def _cancel(self, order: SimOrder, *, reason: str, announce: bool) -> None:
        order.status = "Cancelled"
        order.completed_at = self.clock()
        order.completed_status = reason
        self._send_status(order)
        if announce:
            self._error(order.client_id, order.order_id, 202, "Order Canceled - reason:")
        for child in self.state.orders:
            if child.client_id == order.client_id and child.parent_id == order.order_id and child.is_open:
                self._cancel(child, reason="Parent cancelled", announce=announce)

    # --- filling ----------------------------------------------------------------------------------------------------
    def recheck(self, keys: set[str] | None = None) -> None:
        """Work every resting order (of ``keys``, or all): fill what is marketable, trigger stops."""
        for order in list(self.state.orders):
            if order.is_open and order.status == "Submitted" and (keys is None or order.key in keys):
                self._work(order, placing=False)

    def release_held(self) -> None:
        """Fills were held: work every active order now, cancelling IOC remainders as at placement."""
        for order in list(self.state.orders):
            if order.is_open and order.status == "Submitted":
                self._work(order, placing=True)

    def closing_auction(self) -> int:
        """Fill every working MOC order at the current mark; how many filled."""
        filled = 0
        for order in list(self.state.orders):
            if not (order.is_open and order.status == "Submitted" and order.order_type == "MOC") or self.hold:
                continue
            quote = self.quote_for(order.key)
            mark = quote.mark if quote is not None else None
            if mark is None:
                logger.warning("tws_sim closing auction: no mark for %s, MOC order %s rests", order.key, order.order_id)
                continue
            self._fill(order, order.remaining, mark)
            filled += 1
        self.sink.persist()
        return filled

    def _work(self, order: SimOrder, *, placing: bool) -> None:
        if not order.is_open or order.status != "Submitted" or self.hold or order.order_type == "MOC":
            return
        price = self._executable_price(order)
        if price is not None:
            quantity = order.remaining
            if self.partial_next is not None:
                quantity = max(min(self.partial_next, quantity), 1)
                self.partial_next = None
            self._fill(order, quantity, price)
        if placing and order.tif == "IOC" and order.is_open:
            self._cancel(order, reason="Cancelled: immediate-or-cancel remainder", announce=False)

    def _executable_price(self, order: SimOrder) -> Decimal | None:
        quote = self.quote_for(order.key)
        if quote is None:
            return None
        if order.order_type in ("STP", "STP LMT") and not order.triggered:
            mark = quote.mark
            if mark is None or order.aux_price is None:
                return None
            crossed = mark >= order.aux_price if order.side == "buy" else mark <= order.aux_price
            if not crossed:
                return None
            order.triggered = True
            logger.info("tws_sim stop %s/%s triggered at mark %s", order.client_id, order.order_id, mark)
        price = self.pricer.fill_price(quote, order.side)
        if price is None:
            return None
        if order.order_type in ("LMT", "STP LMT"):
            limit = order.lmt_price
            if limit is None:
                return None
            marketable = limit >= price if order.side == "buy" else limit <= price
            return price if marketable else None
        return price

    def _fill(self, order: SimOrder, quantity: int, price: Decimal) -> None:
        instrument = instrument_for_key(order.key)
        commission = self.commission_per_contract * quantity
        realized = self._apply_to_position(order, quantity, price, commission, instrument.multiplier)
        total_before = order.avg_fill_price * order.filled
        order.filled += quantity
        order.avg_fill_price = (total_before + price * quantity) / order.filled
        order.last_fill_price = price
        if order.filled >= order.quantity:
            order.status = "Filled"
            order.completed_at = self.clock()
            order.completed_status = "Filled"
        seq = self.state.next_exec_seq
        self.state.next_exec_seq += 1
        execution = SimExecution(
            exec_id=f"{order.perm_id:08x}.{seq:08x}.01.01",
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            order_ref=order.order_ref,
            key=order.key,
            side="BOT" if order.side == "buy" else "SLD",
            shares=quantity,
            price=price,
            commission=commission,
            realized_pnl=realized,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            time=self.clock(),
        )
        self.state.executions.append(execution)
        logger.info("tws_sim fill %s %s %s x%s @ %s", execution.exec_id, order.key, execution.side, quantity, price)
        self.sink.to_client(order.client_id, messages.execution_data(-1, execution, instrument, self.account))
        self._send_status(order)
        self.sink.to_client(order.client_id, messages.commission_report(execution))
        self.sink.position_changed(order.key)
        if order.oca_group:
            for sibling in self.state.orders:
                if sibling is not order and sibling.oca_group == order.oca_group and sibling.is_open:
                    self._cancel(sibling, reason=f"OCA group {order.oca_group} filled", announce=False)
        if order.status == "Filled":
            for child in self.state.orders:
                if child.client_id == order.client_id and child.parent_id == order.order_id and child.is_open:
                    if self._is_active(child):
                        child.status = "Submitted"
                        self._send_status(child)
            for child in list(self.state.orders):
                if child.client_id == order.client_id and child.parent_id == order.order_id:
                    self._work(child, placing=True)
        self.sink.persist()

    def _apply_to_position(
        self, order: SimOrder, quantity: int, price: Decimal, commission: Decimal, multiplier: int
    ) -> Decimal | None:
        """Cash and position after a fill; the realized P&L (net of this fill's commission) when it closes any."""
        signed = quantity if order.side == "buy" else -quantity
        self.state.cash -= Decimal(signed) * price * multiplier + commission
        position = self.state.positions.setdefault(order.key, SimPosition())
        unit_cost = price * multiplier
        if position.position == 0 or (position.position > 0) == (signed > 0):
            total = position.avg_cost * abs(position.position) + unit_cost * quantity
            position.position += signed
            position.avg_cost = total / abs(position.position)
            return None
        closed = min(quantity, abs(position.position))
        direction = 1 if position.position > 0 else -1
        realized = (unit_cost - position.avg_cost) * closed * direction - commission
        position.position += signed
        if position.position == 0:
            position.avg_cost = Decimal("0")
        elif (position.position > 0) == (signed > 0):
            position.avg_cost = unit_cost  # flipped: the rest opened at this fill's price
        self.state.realized_pnl += realized
        return realized

    # --- account ----------------------------------------------------------------------------------------------------
    def account_values(self) -> dict[str, Decimal]:
        """Values as a cash account sees them: long options need no margin; shorts reserve their market value."""
        market_value = Decimal("0")
        gross = Decimal("0")
        unrealized = Decimal("0")
        margin = Decimal("0")
        for key, position in self.state.positions.items():
            if position.position == 0:
                continue
            multiplier = instrument_for_key(key).multiplier
            quote = self.quote_for(key)
            mark = quote.mark if quote is not None else None
            unit_value = mark * multiplier if mark is not None else position.avg_cost
            value = unit_value * position.position
            market_value += value
            gross += abs(value)
            unrealized += (unit_value - position.avg_cost) * position.position
            if position.position < 0:
                margin += abs(value)
        cash = self.state.cash
        available = cash - margin
        return {
            "NetLiquidation": cash + market_value,
            "TotalCashValue": cash,
            "BuyingPower": available,
            "AvailableFunds": available,
            "GrossPositionValue": gross,
            "MaintMarginReq": margin,
            "InitMarginReq": margin,
            "UnrealizedPnL": unrealized,
            "RealizedPnL": self.state.realized_pnl,
        }
