"""The simulator's state as plain records (orders, executions, positions) that serialize to JSON and back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

OPEN_STATUSES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted"})
DONE_STATUSES = frozenset({"Filled", "Cancelled", "Inactive"})

_DECIMAL_FIELDS = {"lmt_price", "aux_price", "avg_fill_price", "last_fill_price", "price", "commission", "avg_cost"}
_OPTIONAL_DECIMAL_FIELDS = {"lmt_price", "aux_price", "realized_pnl"}
_DATETIME_FIELDS = {"created_at", "completed_at", "time"}


@dataclass
class SimOrder:
    order_id: int
    client_id: int
    perm_id: int
    order_ref: str
    key: str
    action: str  # BUY / SELL
    quantity: int
    order_type: str  # LMT, MKT, STP, STP LMT, MOC
    tif: str
    lmt_price: Decimal | None
    aux_price: Decimal | None
    parent_id: int
    oca_group: str
    oca_type: int
    transmit: bool
    account: str
    exchange: str
    status: str
    created_at: datetime
    filled: int = 0
    avg_fill_price: Decimal = Decimal("0")
    last_fill_price: Decimal = Decimal("0")
    triggered: bool = False  # a stop whose trigger was crossed works as a market (or limit) order
    completed_at: datetime | None = None
    completed_status: str = ""

    @property
    def remaining(self) -> int:
        return max(self.quantity - self.filled, 0) if self.status not in ("Cancelled", "Inactive") else 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def side(self) -> str:
        return "buy" if self.action == "BUY" else "sell"

    def as_report(self) -> dict[str, Any]:
        """The public shape returned by ``TWSSimulator.orders()``."""
        return {
            "order_id": self.order_id,
            "client_id": self.client_id,
            "perm_id": self.perm_id,
            "order_ref": self.order_ref,
            "key": self.key,
            "action": self.action,
            "quantity": self.quantity,
            "order_type": self.order_type,
            "tif": self.tif,
            "lmt_price": self.lmt_price,
            "aux_price": self.aux_price,
            "parent_id": self.parent_id,
            "oca_group": self.oca_group,
            "status": self.status,
            "filled": self.filled,
            "remaining": self.remaining,
            "avg_fill_price": self.avg_fill_price,
            "transmit": self.transmit,
            "completed_status": self.completed_status,
        }


@dataclass
class SimExecution:
    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    order_ref: str
    key: str
    side: str  # BOT / SLD
    shares: int
    price: Decimal
    commission: Decimal
    realized_pnl: Decimal | None  # None on an opening fill (IB writes its "unset" double)
    cum_qty: int
    avg_price: Decimal
    time: datetime

    def as_report(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "order_id": self.order_id,
            "client_id": self.client_id,
            "perm_id": self.perm_id,
            "order_ref": self.order_ref,
            "key": self.key,
            "side": self.side,
            "shares": self.shares,
            "price": self.price,
            "commission": self.commission,
            "realized_pnl": self.realized_pnl,
            "time": self.time,
        }


@dataclass
class SimPosition:
    position: int = 0
    avg_cost: Decimal = Decimal("0")  # per contract including the multiplier, as IB reports it


@dataclass
class SimState:
    cash: Decimal
    realized_pnl: Decimal = Decimal("0")
    next_ids: dict[int, int] = field(default_factory=dict)  # client id -> next valid order id
    next_perm_id: int = 1_000_000_001
    next_exec_seq: int = 1
    orders: list[SimOrder] = field(default_factory=list)
    executions: list[SimExecution] = field(default_factory=list)
    positions: dict[str, SimPosition] = field(default_factory=dict)


def _dump_value(name: str, value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _load_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _DECIMAL_FIELDS or name in _OPTIONAL_DECIMAL_FIELDS:
        return Decimal(value)
    if name in _DATETIME_FIELDS:
        return datetime.fromisoformat(value)
    return value


def _dump_record(record: SimOrder | SimExecution) -> dict[str, Any]:
    return {name: _dump_value(name, value) for name, value in asdict(record).items()}


def _load_order(data: dict[str, Any]) -> SimOrder:
    names = {f.name for f in fields(SimOrder)}
    return SimOrder(**{name: _load_value(name, value) for name, value in data.items() if name in names})


def _load_execution(data: dict[str, Any]) -> SimExecution:
    names = {f.name for f in fields(SimExecution)}
    return SimExecution(**{name: _load_value(name, value) for name, value in data.items() if name in names})


def dump_state(state: SimState) -> dict[str, Any]:
    return {
        "cash": str(state.cash),
        "realized_pnl": str(state.realized_pnl),
        "next_ids": {str(client): value for client, value in state.next_ids.items()},
        "next_perm_id": state.next_perm_id,
        "next_exec_seq": state.next_exec_seq,
        "orders": [_dump_record(order) for order in state.orders],
        "executions": [_dump_record(execution) for execution in state.executions],
        "positions": {
            key: {"position": pos.position, "avg_cost": str(pos.avg_cost)} for key, pos in state.positions.items()
        },
    }


def load_state(data: dict[str, Any]) -> SimState:
    return SimState(
        cash=Decimal(data["cash"]),
        realized_pnl=Decimal(data.get("realized_pnl", "0")),
        next_ids={int(client): int(value) for client, value in data.get("next_ids", {}).items()},
        next_perm_id=int(data.get("next_perm_id", 1_000_000_001)),
        next_exec_seq=int(data.get("next_exec_seq", 1)),
        orders=[_load_order(item) for item in data.get("orders", [])],
        executions=[_load_execution(item) for item in data.get("executions", [])],
        positions={
            key: SimPosition(position=int(item["position"]), avg_cost=Decimal(item["avg_cost"]))
            for key, item in data.get("positions", {}).items()
        },
    )
