"""Reads of the execution book: the paper account, open trades and positions, orders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from apps.core import calendar, clock
from apps.core.money import CONTRACT_MULTIPLIER, ZERO
from apps.execution.models import OPEN_ORDER_STATUSES, Fill, Order, OrderStatus, Position, Trade


@dataclass(frozen=True)
class AccountState:
    """The paper account at an instant.  ``net_liq = cash + open positions at their mark``;
    ``buying_power = cash - premium reserved by buy orders still working``."""

    net_liq: Decimal
    cash: Decimal
    buying_power: Decimal
    open_pnl: Decimal
    realized_pnl_today: Decimal
    positions_value: Decimal

    def as_strings(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}


def _decimal_sum(values: Iterable[Decimal | None]) -> Decimal:
    # Summed in Python, not in SQL: SQLite aggregates decimals as floats, and money must stay exact.
    return sum((v for v in values if v is not None), ZERO)


def day_bounds(instant: datetime) -> tuple[datetime, datetime]:
    """The New York calendar day containing ``instant``, as a UTC half-open interval."""
    day = calendar.market_day(instant)
    start = datetime.combine(day, time(0, 0), tzinfo=calendar.NEW_YORK)
    return start, start + timedelta(days=1)


def realized_pnl_on_day(*, instant: datetime) -> Decimal:
    start, end = day_bounds(instant)
    closed = Trade.objects.filter(status=Trade.Status.CLOSED, exit_at__gte=start, exit_at__lt=end)
    return _decimal_sum(closed.values_list("realized_pnl", flat=True))


def account_state() -> AccountState:
    """The paper account from the fills (cash), the open positions (value, open PnL) and today's closed trades."""
    cash = settings.ACCOUNT_STARTING_CASH
    for price, quantity, commission, side in Fill.objects.values_list("price", "quantity", "commission", "order__side"):
        amount = price * quantity * CONTRACT_MULTIPLIER
        cash += (amount if side == Order.Side.SELL else -amount) - commission

    positions_value = ZERO
    open_pnl = ZERO
    for quantity, avg_cost, mark, unrealized in open_positions().values_list(
        "quantity", "avg_cost", "mark", "unrealized_pnl"
    ):
        positions_value += (mark if mark is not None else avg_cost) * quantity * CONTRACT_MULTIPLIER
        open_pnl += unrealized

    reserved = _decimal_sum(
        limit * (quantity - filled) * CONTRACT_MULTIPLIER
        for limit, quantity, filled in Order.objects.filter(
            side=Order.Side.BUY, status__in=OPEN_ORDER_STATUSES
        ).values_list("limit_price", "quantity", "filled_quantity")
    )
    return AccountState(
        net_liq=cash + positions_value,
        cash=cash,
        buying_power=cash - reserved,
        open_pnl=open_pnl,
        realized_pnl_today=realized_pnl_on_day(instant=clock.now()),
        positions_value=positions_value,
    )


def open_trades(*, ticker: str | None = None) -> QuerySet[Trade]:
    queryset = Trade.objects.filter(status=Trade.Status.OPEN)
    return queryset.filter(ticker=ticker) if ticker else queryset


def open_positions() -> QuerySet[Position]:
    return Position.objects.exclude(quantity=0).order_by("option_symbol")


def working_orders() -> QuerySet[Order]:
    return Order.objects.filter(status__in=OPEN_ORDER_STATUSES).order_by("created_at", "id")


def tickers_with_open_trades() -> list[str]:
    return sorted(set(open_trades().values_list("ticker", flat=True)))


def order_summary() -> dict[str, int]:
    """Counts a replay summary prints: orders created, sent to the broker, filled and rejected."""
    return Order.objects.aggregate(
        orders=Count("id"),
        submitted=Count("id", filter=Q(submitted_at__isnull=False)),
        filled=Count("id", filter=Q(status=OrderStatus.FILLED)),
        rejected=Count("id", filter=Q(status=OrderStatus.REJECTED)),
    )
