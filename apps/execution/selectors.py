"""Reads of the execution book: the paper account, open trades and positions, orders."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, QuerySet, Sum

from apps.core import calendar, clock
from apps.core.money import CONTRACT_MULTIPLIER, ZERO
from apps.execution.models import OPEN_ORDER_STATUSES, Fill, Order, OrderStatus, Position, Trade

_MONEY = DecimalField(max_digits=30, decimal_places=8)


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


def _sum(queryset: QuerySet, expression: object) -> Decimal:
    value = queryset.aggregate(total=Sum(ExpressionWrapper(expression, output_field=_MONEY)))["total"]
    return Decimal(value) if value is not None else ZERO


def day_bounds(instant: datetime) -> tuple[datetime, datetime]:
    """The New York calendar day containing ``instant``, as a UTC half-open interval."""
    day = calendar.market_day(instant)
    start = datetime.combine(day, time(0, 0), tzinfo=calendar.NEW_YORK)
    return start, start + timedelta(days=1)


def realized_pnl_on_day(*, instant: datetime) -> Decimal:
    start, end = day_bounds(instant)
    closed = Trade.objects.filter(status=Trade.Status.CLOSED, exit_at__gte=start, exit_at__lt=end)
    return _sum(closed, F("realized_pnl"))


def account_state() -> AccountState:
    """The paper account from the fills (cash), the open positions (value, open PnL) and today's closed trades."""
    fills = Fill.objects.all()
    bought = _sum(fills.filter(order__side=Order.Side.BUY), F("price") * F("quantity") * CONTRACT_MULTIPLIER)
    sold = _sum(fills.filter(order__side=Order.Side.SELL), F("price") * F("quantity") * CONTRACT_MULTIPLIER)
    commissions = _sum(fills, F("commission"))
    cash = settings.ACCOUNT_STARTING_CASH + sold - bought - commissions

    positions_value = ZERO
    open_pnl = ZERO
    for position in Position.objects.exclude(quantity=0).only("quantity", "avg_cost", "mark", "unrealized_pnl"):
        price = position.mark if position.mark is not None else position.avg_cost
        positions_value += price * position.quantity * CONTRACT_MULTIPLIER
        open_pnl += position.unrealized_pnl

    working_buys = Order.objects.filter(side=Order.Side.BUY, status__in=OPEN_ORDER_STATUSES)
    reserved = _sum(working_buys, F("limit_price") * (F("quantity") - F("filled_quantity")) * CONTRACT_MULTIPLIER)
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
