"""Factories and market helpers shared by the risk and execution tests: a signal on a regular session day, quotes in
the Redis hash ingestion keeps, and a clock set to New York wall times."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import factory
from celery.signals import task_prerun

from apps.core import calendar, occ, store
from apps.signals.models import Signal

SESSION_DAY = date(2025, 6, 10)  # a Tuesday, regular session 09:30-16:00 New York


def ny(hour: int, minute: int = 0, second: int = 0, day: date = SESSION_DAY) -> datetime:
    """An aware UTC instant at a New York wall time."""
    return datetime.combine(day, time(hour, minute, second), tzinfo=calendar.NEW_YORK).astimezone(UTC)


class SignalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Signal

    signal_id = factory.Sequence(lambda n: f"sig{n:08d}")
    strategy = "zero_dte"
    bucket = "0dte"
    ticker = "SPY"
    direction = Signal.Direction.BULLISH
    expiry = SESSION_DAY
    right = "C"
    strike = Decimal("600")
    option_symbol = factory.LazyAttribute(lambda s: occ.build(s.ticker, s.expiry, s.right, s.strike))
    limit_price = Decimal("1.20")
    quantity_hint = 5
    profit_target_pct = Decimal("0.5")
    stop_loss_pct = Decimal("0.3")
    time_exit_at = factory.LazyFunction(lambda: ny(15, 45))
    entry_deadline = None
    rule = "test rule"
    rationale = "a test signal"
    confidence = Decimal("0.7")
    status = Signal.Status.PENDING
    as_of = factory.LazyFunction(lambda: ny(10, 30))
    created_at = factory.LazyFunction(lambda: ny(10, 30))


def put_quote(
    option_symbol: str,
    *,
    bid: str | None,
    ask: str | None,
    last: str | None = None,
    ts: datetime,
) -> None:
    """Write the quote hash exactly as ingestion does (strings; ISO timestamp)."""
    mapping = {"bid": bid or "", "ask": ask or "", "last": last or "", "ts": ts.isoformat(), "underlying_price": "600"}
    client = store.get_redis()
    client.delete(f"latest:uw:quote:{option_symbol}")
    client.hset(f"latest:uw:quote:{option_symbol}", mapping=mapping)


class TaskRecorder:
    """Records the tasks Celery runs (eager runs send ``task_prerun`` too) by name and arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __call__(self, sender=None, task=None, args=None, **_kwargs) -> None:
        self.calls.append((task.name, tuple(args or ())))

    def named(self, name: str) -> list[tuple]:
        return [args for task_name, args in self.calls if task_name == name]


def record_tasks() -> TaskRecorder:
    recorder = TaskRecorder()
    task_prerun.connect(recorder, weak=False)
    return recorder


def stop_recording(recorder: TaskRecorder) -> None:
    task_prerun.disconnect(recorder)


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def open_trade_row(*, ticker: str = "SPY", strategy: str = "zero_dte", **signal_fields) -> Signal:
    """An open trade booked directly (no orders): what the position limits count."""
    from apps.execution.models import Trade

    signal = SignalFactory(ticker=ticker, strategy=strategy, status=Signal.Status.ACTIVE, **signal_fields)
    Trade.objects.create(
        signal=signal,
        strategy=strategy,
        ticker=ticker,
        option_symbol=signal.option_symbol,
        quantity=1,
        entry_price=signal.limit_price,
        entry_at=ny(10, 0),
        status=Trade.Status.OPEN,
    )
    return signal


def book_long(*, option_symbol: str, quantity: int, price: Decimal, commission: Decimal = Decimal("0")) -> None:
    """A filled buy booked straight into the tables (decision, order, fill, position), for account scenarios."""
    from apps.execution.models import Fill, Order, OrderStatus, Position
    from apps.risk.models import RiskDecision
    from apps.risk.services import limits_active

    signal = SignalFactory(option_symbol=option_symbol, status=Signal.Status.ACTIVE)
    decision = RiskDecision.objects.create(
        signal=signal,
        limits=limits_active(),
        approved=True,
        quantity=quantity,
        limit_price=price,
        reason="booked by a test",
        decided_at=ny(10, 0),
    )
    order = Order.objects.create(
        client_order_id=f"test-{signal.signal_id}",
        decision=decision,
        signal=signal,
        leg="entry",
        option_symbol=option_symbol,
        side="buy",
        quantity=quantity,
        limit_price=price,
        status=OrderStatus.FILLED,
        broker="paper",
        created_at=ny(10, 0),
        filled_quantity=quantity,
        avg_fill_price=price,
    )
    Fill.objects.create(
        order=order, exec_id=f"test-{order.pk}", price=price, quantity=quantity, commission=commission, at=ny(10)
    )
    Position.objects.create(
        option_symbol=option_symbol, ticker="SPY", quantity=quantity, avg_cost=price, mark=price, updated_at=ny(10)
    )
