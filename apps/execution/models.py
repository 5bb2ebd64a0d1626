"""Orders, fills, positions, round-trip trades and the order state log of the execution engine."""

from __future__ import annotations

from typing import Any

from django.db import models

PRICE: dict[str, Any] = {"max_digits": 18, "decimal_places": 6}
MONEY: dict[str, Any] = {"max_digits": 20, "decimal_places": 4}


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


OPEN_ORDER_STATUSES = (OrderStatus.PENDING, OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)

# The order state machine: from -> the states it may move to.  Terminal states move nowhere.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED, OrderStatus.CANCELLED}),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


class ExitReason(models.TextChoices):
    TARGET = "target"
    STOP = "stop"
    TIME = "time"
    FLATTEN = "flatten"


class Order(models.Model):
    """One order to the broker.  ``client_order_id`` is derived from the signal, the leg and the attempt, so a retry
    after a crash finds the same row instead of sending a second order."""

    class Side(models.TextChoices):
        BUY = "buy"
        SELL = "sell"

    class Leg(models.TextChoices):
        ENTRY = "entry"
        EXIT = "exit"

    Status = OrderStatus

    client_order_id = models.CharField(max_length=64, unique=True)
    decision = models.ForeignKey("risk.RiskDecision", on_delete=models.PROTECT, related_name="orders")
    signal = models.ForeignKey("signals.Signal", on_delete=models.PROTECT, related_name="orders")
    trade = models.ForeignKey("Trade", null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
    leg = models.CharField(max_length=5, choices=Leg.choices)
    attempt = models.PositiveIntegerField(default=1)
    exit_reason = models.CharField(max_length=8, choices=ExitReason.choices, blank=True)
    option_symbol = models.CharField(max_length=32, db_index=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.PositiveIntegerField()
    limit_price = models.DecimalField(**PRICE)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING, db_index=True)
    broker = models.CharField(max_length=16)
    broker_order_id = models.CharField(max_length=64, blank=True)
    reject_reason = models.TextField(blank=True)
    created_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    avg_fill_price = models.DecimalField(**PRICE, null=True, blank=True)
    filled_quantity = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "execution_orders"
        constraints = [
            models.UniqueConstraint(fields=["signal", "leg", "attempt"], name="execution_order_signal_leg_attempt")
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.option_symbol} @ {self.limit_price} ({self.status})"


class Fill(models.Model):
    """An execution reported by the broker; ``exec_id`` is the broker's id, so a repeated report is one row."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    exec_id = models.CharField(max_length=64, unique=True)
    price = models.DecimalField(**PRICE)
    quantity = models.PositiveIntegerField()
    commission = models.DecimalField(**MONEY, default=0)
    at = models.DateTimeField()

    class Meta:
        db_table = "execution_fills"

    def __str__(self) -> str:
        return f"{self.quantity} @ {self.price} ({self.exec_id})"


class Position(models.Model):
    """The book for one option symbol: ``quantity`` 0 means flat (the row stays, with its realized PnL)."""

    option_symbol = models.CharField(max_length=32, unique=True)
    ticker = models.CharField(max_length=12, db_index=True)
    quantity = models.IntegerField(default=0)
    avg_cost = models.DecimalField(**PRICE, default=0)
    realized_pnl = models.DecimalField(**MONEY, default=0)  # net of commissions
    mark = models.DecimalField(**PRICE, null=True, blank=True)
    unrealized_pnl = models.DecimalField(**MONEY, default=0)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "execution_positions"

    def __str__(self) -> str:
        return f"{self.option_symbol} x{self.quantity}"


class Trade(models.Model):
    """The round trip of one signal: entry fill to exit fill.  Distribution reads these field names."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    signal = models.OneToOneField("signals.Signal", on_delete=models.PROTECT, related_name="trade")
    strategy = models.CharField(max_length=16, db_index=True)
    ticker = models.CharField(max_length=12, db_index=True)
    option_symbol = models.CharField(max_length=32)
    quantity = models.PositiveIntegerField()
    entry_price = models.DecimalField(**PRICE)
    entry_at = models.DateTimeField()
    exit_price = models.DecimalField(**PRICE, null=True, blank=True)
    exit_at = models.DateTimeField(null=True, blank=True, db_index=True)
    exit_reason = models.CharField(max_length=8, choices=ExitReason.choices, blank=True)
    exit_note = models.TextField(blank=True)  # e.g. closed on the books at the last known price
    realized_pnl = models.DecimalField(**MONEY, null=True, blank=True)  # dollars, commissions included
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.OPEN, db_index=True)
    fees = models.DecimalField(**MONEY, default=0)
    last_mark = models.DecimalField(**PRICE, null=True, blank=True)
    last_mark_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "trades"

    def __str__(self) -> str:
        return f"{self.strategy} {self.option_symbol} x{self.quantity} ({self.status})"


class TradeLog(models.Model):
    """Every order state transition, and every refused one (``applied`` False), with when and why."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="logs")
    from_status = models.CharField(max_length=16, blank=True)  # blank: the order was created
    to_status = models.CharField(max_length=16)
    applied = models.BooleanField(default=True)
    at = models.DateTimeField()
    detail = models.TextField(blank=True)

    class Meta:
        db_table = "trade_logs"
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status or '-'} -> {self.to_status}{'' if self.applied else ' (refused)'}"
