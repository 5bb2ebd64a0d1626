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

# The order state machine: from -> the states it may move to.  Filled moves nowhere.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED, OrderStatus.CANCELLED}),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}),
    OrderStatus.FILLED: frozenset(),
    # A fill the broker reports after the order ended here is real money and is booked: a cancel that lost the race
    # with a fill, or an order ended for "no trace at the broker" whose execution turns up at a reconciliation.
    OrderStatus.CANCELLED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED}),
    OrderStatus.REJECTED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED}),
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
    # Nullable: risk_audit rows are purged after two years, the orders they approved stay.
    decision = models.ForeignKey(
        "risk.RiskDecision", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
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
    # Interactive Brokers: the order id, persisted before placeOrder and reused on a retry; permId once TWS knows it.
    ib_order_id = models.IntegerField(null=True, blank=True, db_index=True)
    ib_perm_id = models.BigIntegerField(null=True, blank=True)
    reject_reason = models.TextField(blank=True)
    created_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    avg_fill_price = models.DecimalField(**PRICE, null=True, blank=True)
    filled_quantity = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "execution_orders"
        permissions = [("cancel_order", "Can cancel a working order")]
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
    # The bracket: exit at or above the target, at or below the stop (per share), set from the signal at the entry
    # fill; the stop may be moved (``StopAdjustment``), the target is the signal's.
    target_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)

    class Meta:
        db_table = "trades"
        permissions = [("close_position", "Can close an open trade now")]

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


class IBOrderIdCounter(models.Model):
    """The next order id this platform may use for an IB client id: only ever raised, persisted before sending."""

    client_id = models.IntegerField(unique=True)
    next_id = models.IntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "ib_order_ids"

    def __str__(self) -> str:
        return f"client {self.client_id}: next {self.next_id}"


class BrokerCommand(models.Model):
    """An order command for the process that owns the broker connection (``manage.py ib_listener``).

    Rows, not messages: a command written while the listener is down waits for it, and the listener answers them in
    id order.  ``(kind, order)`` is unique for placements, so a retried submission finds its first command.
    """

    class Kind(models.TextChoices):
        PLACE = "place"
        CANCEL = "cancel"

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENT = "sent"  # handed to TWS, no answer yet
        DONE = "done"  # answered: result says accepted or rejected
        FAILED = "failed"  # could not be carried out (result says why)

    kind = models.CharField(max_length=8, choices=Kind.choices)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="broker_commands")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED, db_index=True)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "execution_broker_commands"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["kind", "order"], name="broker_command_kind_order")]

    def __str__(self) -> str:
        return f"{self.kind} {self.order_id} ({self.status})"


class ReconciliationIssue(models.Model):
    """A difference between the broker and the database that was not adopted automatically: an operator decides."""

    class Kind(models.TextChoices):
        POSITION_MISMATCH = "position_mismatch"
        UNKNOWN_ORDER = "unknown_order"
        UNKNOWN_EXECUTION = "unknown_execution"
        ORDER_NOT_AT_BROKER = "order_not_at_broker"
        STATUS_MISMATCH = "status_mismatch"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    key = models.CharField(max_length=96, help_text="what it is about: an OCC symbol, an orderRef, an execId")
    broker_value = models.TextField(blank=True)
    platform_value = models.TextField(blank=True)
    detail = models.TextField()
    detected_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField()
    resolved = models.BooleanField(default=False, db_index=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)

    class Meta:
        db_table = "execution_reconciliation_issues"
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "key"], condition=models.Q(resolved=False), name="reconciliation_issue_open_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}{' (resolved)' if self.resolved else ''}"


class BrokerMessage(models.Model):
    """Every error or notice code TWS sends, kept: mapped to its order when it concerns one, otherwise an alert
    (``alert`` True) for an operator, e.g. a lost connection (1100) or a market data farm that broke (2103)."""

    code = models.IntegerField(db_index=True)
    req_id = models.IntegerField()
    message = models.TextField()
    category = models.CharField(max_length=16)  # connectivity, order, market_data, info, other
    alert = models.BooleanField(default=False, db_index=True)
    acknowledged = models.BooleanField(default=False)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="broker_messages")
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "ib_messages"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"IB {self.code} ({self.category}): {self.message[:60]}"


class StopAdjustment(models.Model):
    """Every move of a trade's stop: by a rule (breakeven) or by an operator, from what to what and why."""

    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, related_name="stop_adjustments")
    old_stop = models.DecimalField(**PRICE, null=True, blank=True)
    new_stop = models.DecimalField(**PRICE)
    by = models.CharField(max_length=150)
    reason = models.TextField()
    at = models.DateTimeField()

    class Meta:
        db_table = "execution_stop_adjustments"
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"trade {self.trade_id}: stop {self.old_stop} -> {self.new_stop} by {self.by}"
