"""Writes of the execution engine: orders through the broker, fills into positions, round-trip trades, exits.

Guarantees:
- one entry order per approved decision (``client_order_id`` is derived from the signal and the leg, and unique);
- an order is written as submitted *before* the broker is called, and the broker treats the client order id as the
  order's identity, so a retry after a crash re-sends the same order and a repeated fill report (same ``exec_id``)
  is one row;
- every order state change is a conditional update (``UPDATE ... WHERE status = <from>``) following
  ``ORDER_TRANSITIONS``; anything else is refused and written to ``trade_logs`` with ``applied = False``;
- Redis (``execution:orders``, ``positions:live``, ``signals:active``) and the announcements to distribution are
  written after the transaction commits, so they never show what a rollback undid.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from apps.core import clock, store
from apps.core.events import deterministic_id, dumps
from apps.core.money import CENT, CONTRACT_MULTIPLIER, ZERO, cents
from apps.execution.brokers import get_broker
from apps.execution.brokers.base import Broker, BrokerFill, BrokerQuote, OrderRequest, SubmitResult
from apps.execution.models import (
    OPEN_ORDER_STATUSES,
    ORDER_TRANSITIONS,
    ExitReason,
    Fill,
    Order,
    OrderStatus,
    Position,
    StopAdjustment,
    Trade,
    TradeLog,
)
from apps.execution.selectors import open_positions, open_trades, working_orders
from apps.ops import metrics
from apps.risk.models import RiskDecision
from apps.risk.selectors import kill_switch_is_on
from apps.risk.services import daily_loss_guard
from apps.signals.models import Signal

logger = logging.getLogger(__name__)

ORDERS_KEY = "execution:orders"
POSITIONS_KEY = "positions:live"
ACTIVE_SIGNALS_KEY = "signals:active"
BOOK_BROKER = "book"
ANNOUNCE_TASK = "distribution.announce"
PRICE_PLACES = Decimal("0.000001")
DEFAULT_TIME_EXIT_GRACE_SECONDS = 300
DEFAULT_EXIT_RETRY_SECONDS = 30


def client_order_id(*, signal_id: str, leg: str, attempt: int = 1) -> str:
    """The order's identity at the broker: the same signal, leg and attempt always give the same id."""
    parts: tuple[object, ...] = (signal_id, leg) if attempt == 1 else (signal_id, leg, attempt)
    return deterministic_id("order", *parts, length=40)


def time_exit_grace() -> timedelta:
    """How long past a time exit the broker keeps being retried before the trade is closed on the books."""
    seconds = getattr(settings, "EXECUTION_TIME_EXIT_GRACE_SECONDS", DEFAULT_TIME_EXIT_GRACE_SECONDS)
    return timedelta(seconds=int(seconds))


def exit_retry() -> timedelta:
    """The least platform time between two exit attempts of one trade after a rejection."""
    return timedelta(seconds=int(getattr(settings, "EXECUTION_EXIT_RETRY_SECONDS", DEFAULT_EXIT_RETRY_SECONDS)))


# --- the order state machine ------------------------------------------------------------------------------------------
def order_transition(*, order: Order, to_status: str, detail: str = "", **fields: Any) -> bool:
    """Move ``order`` to ``to_status`` if the state machine allows it and the row is still in the state ``order``
    says; write the transition (or the refusal) to ``trade_logs``.  Returns whether the move happened."""
    from_status = order.status
    now = clock.now()
    if to_status not in ORDER_TRANSITIONS.get(from_status, frozenset()):
        why = f"{from_status} -> {to_status} is not a legal transition"
        _refuse(order=order, to_status=to_status, why=why, detail=detail)
        return False
    updated = Order.objects.filter(pk=order.pk, status=from_status).update(status=to_status, **fields)
    if updated != 1:
        current = Order.objects.values_list("status", flat=True).get(pk=order.pk)
        why = f"the order is no longer {from_status} (it is {current})"
        _refuse(order=order, to_status=to_status, why=why, detail=detail)
        order.status = current
        return False
    TradeLog.objects.create(order=order, from_status=from_status, to_status=to_status, at=now, detail=detail)
    order.status = to_status
    for name, value in fields.items():
        setattr(order, name, value)
    _publish_book_after_commit()
    if to_status in metrics.ORDER_TERMINAL:
        transaction.on_commit(lambda: metrics.order_outcome(outcome=to_status))
    return True


def _refuse(*, order: Order, to_status: str, why: str, detail: str) -> None:
    text = ". ".join(part for part in (f"refused: {why}", detail) if part)
    TradeLog.objects.create(
        order=order, from_status=order.status, to_status=to_status, applied=False, at=clock.now(), detail=text
    )
    logger.warning("order %s: refused: %s", order.client_order_id, why)


# --- entries ----------------------------------------------------------------------------------------------------------
def order_submit(*, decision_id: int) -> Order | None:
    """Send the entry order of an approved decision and book what the broker reports.

    Idempotent: the order row is found by its client order id, so a second call (or a redelivered task) returns the
    existing order, never a second one; an order already filled or rejected is returned as it is.  A decision that
    was not approved yields None.
    """
    decision = RiskDecision.objects.select_related("signal").get(pk=decision_id)
    if not decision.approved or decision.quantity < 1:
        logger.info("decision %s is not approved; no order", decision_id)
        return None
    broker = get_broker()
    signal = decision.signal
    order = _order_get_or_create(
        decision=decision,
        signal=signal,
        trade=None,
        leg=Order.Leg.ENTRY,
        attempt=1,
        side=Order.Side.BUY,
        quantity=decision.quantity,
        limit_price=decision.limit_price,
        broker_name=broker.name,
    )
    if order.status == OrderStatus.PENDING and kill_switch_is_on():
        # The switch went on between the decision and this task: new exposure stops here; exits are unaffected.
        with transaction.atomic():
            reason = "kill switch engaged after the risk decision: entry not sent"
            if order_transition(order=order, to_status=OrderStatus.REJECTED, detail=reason, reject_reason=reason):
                _entry_rejected(order=order)
        return order
    return _order_send(order_id=order.pk, broker=broker)


def _order_get_or_create(
    *,
    decision: RiskDecision,
    signal: Signal,
    trade: Trade | None,
    leg: str,
    attempt: int,
    side: str,
    quantity: int,
    limit_price: Decimal,
    broker_name: str,
    exit_reason: str = "",
) -> Order:
    coid = client_order_id(signal_id=signal.signal_id, leg=leg, attempt=attempt)
    with transaction.atomic():
        order, created = Order.objects.get_or_create(
            client_order_id=coid,
            defaults={
                "decision": decision,
                "signal": signal,
                "trade": trade,
                "leg": leg,
                "attempt": attempt,
                "exit_reason": exit_reason,
                "option_symbol": signal.option_symbol,
                "side": side,
                "quantity": quantity,
                "limit_price": limit_price,
                "broker": broker_name,
                "created_at": clock.now(),
            },
        )
        if created:
            detail = f"{side} {quantity} {signal.option_symbol} limit {limit_price} ({leg}, attempt {attempt})"
            TradeLog.objects.create(order=order, from_status="", to_status=order.status, at=clock.now(), detail=detail)
            _publish_book_after_commit()
    return order


def _order_send(*, order_id: int, broker: Broker) -> Order:
    """Persist "submitted", call the broker outside any transaction, then book the answer."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status not in (OrderStatus.PENDING, OrderStatus.SUBMITTED):
            return order
        if order.status == OrderStatus.PENDING:
            order_transition(
                order=order, to_status=OrderStatus.SUBMITTED, detail=f"sent to {broker.name}", submitted_at=clock.now()
            )
            broker.submit_prepare(order_id=order.pk)
    result = broker.submit(
        OrderRequest(
            client_order_id=order.client_order_id,
            option_symbol=order.option_symbol,
            side=order.side,
            quantity=order.quantity,
            limit_price=order.limit_price,
        )
    )
    return _order_book_result(order_id=order.pk, result=result)


def _order_book_result(*, order_id: int, result: SubmitResult) -> Order:
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order_id)
        if not result.accepted:
            if order.status == OrderStatus.SUBMITTED:
                order_end_unfilled(order=order, to_status=OrderStatus.REJECTED, reason=result.reject_reason)
            return order
        if result.broker_order_id and order.broker_order_id != result.broker_order_id:
            Order.objects.filter(pk=order.pk).update(broker_order_id=result.broker_order_id)
            order.broker_order_id = result.broker_order_id
        for fill in result.fills:
            _fill_record(order=order, fill=fill)
        if order.status == OrderStatus.FILLED or (
            order.leg == Order.Leg.ENTRY and order.status == OrderStatus.PARTIALLY_FILLED
        ):
            _order_settle(order=order)
    return order


def order_end_unfilled(*, order: Order, to_status: str, reason: str) -> bool:
    """End a working order as rejected or cancelled with ``reason`` (the caller holds the row in a transaction).
    An entry that filled nothing ends its signal as rejected.  Returns whether the order moved."""
    moved = order_transition(order=order, to_status=to_status, detail=reason, reject_reason=reason)
    if moved and order.leg == Order.Leg.ENTRY and order.filled_quantity == 0:
        _entry_rejected(order=order)
    return moved


def fill_book(*, order: Order, fill: BrokerFill, source: str = "") -> bool:
    """Book one execution the broker reported on its own (not as the answer to a submission), and open or close the
    trade it completes.  The caller holds the order row in a transaction.  Returns whether the fill was new."""
    booked = _fill_record(order=order, fill=fill, source=source)
    if booked and (
        order.status == OrderStatus.FILLED
        or (order.leg == Order.Leg.ENTRY and order.status == OrderStatus.PARTIALLY_FILLED)
    ):
        _order_settle(order=order)
    return booked


def _entry_rejected(*, order: Order) -> None:
    # The signal never became a position: it ends as rejected (the order's reject_reason says why).
    Signal.objects.filter(pk=order.signal_id, status=Signal.Status.APPROVED).update(status=Signal.Status.REJECTED)
    logger.info("entry order %s rejected: %s", order.client_order_id, order.reject_reason)


def _fill_record(*, order: Order, fill: BrokerFill, source: str = "") -> bool:
    """Book one execution once (``exec_id``): the fill row, the position, the order's filled quantity and state."""
    _row, created = Fill.objects.get_or_create(
        exec_id=fill.exec_id,
        defaults={
            "order": order,
            "price": fill.price,
            "quantity": fill.quantity,
            "commission": fill.commission,
            "at": fill.at,
        },
    )
    if not created:
        return False
    _position_apply_fill(
        option_symbol=order.option_symbol,
        ticker=order.signal.ticker,
        side=order.side,
        quantity=fill.quantity,
        price=fill.price,
        commission=fill.commission,
        at=fill.at,
    )
    filled = order.filled_quantity + fill.quantity
    average = ((order.avg_fill_price or ZERO) * order.filled_quantity + fill.price * fill.quantity) / filled
    to_status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIALLY_FILLED
    order_transition(
        order=order,
        to_status=to_status,
        detail=f"fill {fill.quantity} @ {fill.price} commission {fill.commission} ({fill.exec_id})"
        + (f", {source}" if source else ""),
        filled_quantity=filled,
        avg_fill_price=average.quantize(PRICE_PLACES),
        filled_at=fill.at,
    )
    return True


def _position_apply_fill(
    *, option_symbol: str, ticker: str, side: str, quantity: int, price: Decimal, commission: Decimal, at: datetime
) -> Position:
    position, _ = Position.objects.select_for_update().get_or_create(
        option_symbol=option_symbol, defaults={"ticker": ticker, "updated_at": at}
    )
    if side == Order.Side.BUY:
        held = position.quantity + quantity
        position.avg_cost = ((position.avg_cost * position.quantity + price * quantity) / held).quantize(PRICE_PLACES)
        position.quantity = held
        position.realized_pnl -= commission
    else:
        if quantity > position.quantity:
            raise ValueError(f"selling {quantity} {option_symbol} would go short (holding {position.quantity})")
        position.realized_pnl += (price - position.avg_cost) * quantity * CONTRACT_MULTIPLIER - commission
        position.quantity -= quantity
    position.mark = price
    position.unrealized_pnl = cents((price - position.avg_cost) * position.quantity * CONTRACT_MULTIPLIER)
    position.updated_at = at
    position.save()
    return position


def _order_commissions(order: Order) -> Decimal:
    # Summed in Python: SQLite would add the decimals as floats.
    return sum(Fill.objects.filter(order=order).values_list("commission", flat=True), ZERO)


def _order_settle(*, order: Order) -> None:
    if order.leg == Order.Leg.ENTRY:
        _trade_open(order=order)
    elif order.trade_id is not None and order.filled_quantity > 0:
        trade = Trade.objects.only("quantity", "signal_id").get(pk=order.trade_id)
        if _exited(signal_id=trade.signal_id)[0] >= trade.quantity:
            _trade_close(order=order)


def _exited(*, signal_id: int) -> tuple[int, Decimal, Decimal]:
    """What the exit orders of a trade sold so far: (contracts, average price, commissions); exits may come in parts
    (an IOC exit partly filled, the rest sent again)."""
    rows = Fill.objects.filter(order__signal_id=signal_id, order__leg=Order.Leg.EXIT).values_list(
        "quantity", "price", "commission"
    )
    quantity, amount, commission = 0, ZERO, ZERO
    for filled, price, fee in rows:
        quantity += filled
        amount += price * filled
        commission += fee
    average = (amount / quantity).quantize(PRICE_PLACES) if quantity else ZERO
    return quantity, average, commission


def _trade_open(*, order: Order) -> Trade:
    """The entry filled: open (or, on a further partial fill, grow) the signal's trade; the signal becomes active."""
    signal = order.signal
    entry = order.avg_fill_price or ZERO
    target, stop = bracket_levels(entry_price=entry, signal=signal)
    values = {
        "quantity": order.filled_quantity,
        "entry_price": order.avg_fill_price,
        "fees": _order_commissions(order),
        "target_price": target,
    }
    trade, created = Trade.objects.get_or_create(
        signal=signal,
        defaults={
            **values,
            "strategy": signal.strategy,
            "ticker": signal.ticker,
            "option_symbol": signal.option_symbol,
            "entry_at": order.filled_at,
            "status": Trade.Status.OPEN,
            "last_mark": order.avg_fill_price,
            "last_mark_at": order.filled_at,
            "stop_price": stop,
        },
    )
    if not created:
        # A further partial fill moves the average entry: the bracket follows, unless the stop was moved by hand.
        moved = StopAdjustment.objects.filter(trade=trade).exists()
        Trade.objects.filter(pk=trade.pk, status=Trade.Status.OPEN).update(
            **values, **({} if moved else {"stop_price": stop})
        )
        return trade
    Order.objects.filter(pk=order.pk).update(trade=trade)
    order.trade = trade
    Signal.objects.filter(pk=signal.pk, status=Signal.Status.APPROVED).update(status=Signal.Status.ACTIVE)
    active = {
        "signal_id": signal.signal_id,
        "trade_id": trade.pk,
        "strategy": signal.strategy,
        "ticker": signal.ticker,
        "option_symbol": signal.option_symbol,
        "direction": signal.direction,
        "quantity": trade.quantity,
        "entry_price": trade.entry_price,
        "entry_at": trade.entry_at.isoformat(),
        "profit_target_pct": signal.profit_target_pct,
        "stop_loss_pct": signal.stop_loss_pct,
        "time_exit_at": signal.time_exit_at.isoformat(),
    }
    payload = dumps(active).decode()
    transaction.on_commit(lambda: store.get_redis().hset(ACTIVE_SIGNALS_KEY, signal.signal_id, payload))
    _announce_after_commit("entry", trade.pk)
    logger.info("trade %s opened: %s x%s @ %s", trade.pk, trade.option_symbol, trade.quantity, trade.entry_price)
    return trade


def _trade_close(*, order: Order, note: str = "") -> Trade:
    """The exit filled: close the trade with its realized PnL (commissions of both legs included)."""
    if order.trade_id is None:  # what .get(pk=None) would raise
        raise Trade.DoesNotExist(f"exit order {order.pk} is not linked to a trade")
    trade = Trade.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order.trade_id)
    if trade.status != Trade.Status.OPEN:
        return trade
    _sold, exit_price, exit_fees = _exited(signal_id=trade.signal_id)
    fees = trade.fees + exit_fees
    realized = cents((exit_price - trade.entry_price) * trade.quantity * CONTRACT_MULTIPLIER - fees)
    closed = Trade.objects.filter(pk=trade.pk, status=Trade.Status.OPEN).update(
        status=Trade.Status.CLOSED,
        exit_price=exit_price,
        exit_at=order.filled_at,
        exit_reason=order.exit_reason,
        exit_note=note,
        realized_pnl=realized,
        fees=fees,
    )
    if closed != 1:
        return trade
    trade.refresh_from_db()
    signal_id = trade.signal.signal_id
    Signal.objects.filter(pk=trade.signal_id, status=Signal.Status.ACTIVE).update(status=Signal.Status.CLOSED)
    transaction.on_commit(lambda: store.get_redis().hdel(ACTIVE_SIGNALS_KEY, signal_id))
    _announce_after_commit("exit", trade.pk)
    logger.info("trade %s closed (%s) @ %s, PnL %s", trade.pk, trade.exit_reason, exit_price, realized)
    return trade


# --- exits ------------------------------------------------------------------------------------------------------------
def exits_manage(*, ticker: str, as_of: datetime | str | None = None) -> list[Trade]:
    """Mark the open trades of ``ticker`` to the latest quote and exit those that hit their profit target, their
    stop, or their time exit (``signal.time_exit_at`` against the platform clock).  Returns the trades closed.

    Safe to repeat: a closed trade is skipped; a rejected exit order stays rejected and the next call sends a new
    attempt; past the time exit plus ``EXECUTION_TIME_EXIT_GRACE_SECONDS`` a trade the broker cannot price is closed
    on the books at its last known price, with the reason in ``exit_note``.  ``as_of`` (the market-data time that
    prompted the call) is only logged: decisions use ``apps.core.clock.now()``.
    """
    broker = get_broker()
    closed: list[Trade] = []
    touched = False
    for trade in open_trades(ticker=ticker.upper()).select_related("signal").order_by("entry_at", "id"):
        result, marked = _trade_manage(trade=trade, broker=broker)
        touched = touched or marked or result is not None
        if result is not None and result.status == Trade.Status.CLOSED:
            closed.append(result)
    if closed:
        logger.info("exits for %s as of %s: closed %s", ticker, as_of, [t.pk for t in closed])
    if touched:
        # Marks moved the open PnL even when nothing closed: the daily loss limit is checked on every pass that
        # changed a mark or a trade (an unchanged book cannot newly breach it).
        _daily_loss_guard()
        _publish_book_after_commit()
    return closed


def _trade_manage(*, trade: Trade, broker: Broker) -> tuple[Trade | None, bool]:
    """Mark ``trade`` and exit it when due: (the trade after an exit attempt or ``None``, whether the mark moved)."""
    signal = trade.signal
    quote = broker.quote(trade.option_symbol)
    marked = False
    if quote is not None and quote.mark is not None and (quote.mark, quote.ts) != (trade.last_mark, trade.last_mark_at):
        _trade_mark(trade=trade, price=quote.mark, at=quote.ts)
        marked = True
        _stop_to_breakeven(trade=trade)
    reason = _exit_reason(trade=trade, signal=signal)
    if reason is None:
        return None, marked
    return _trade_exit(trade=trade, reason=reason, broker=broker, quote=quote), marked


def bracket_levels(*, entry_price: Decimal, signal: Signal) -> tuple[Decimal, Decimal]:
    """The bracket of an entry (per share): the profit target above it and the stop below it, from the signal's
    percentages.  The target rounds up and the stop down, so neither fires before the signal's own threshold."""
    target = (entry_price * (1 + signal.profit_target_pct)).quantize(PRICE_PLACES, rounding=ROUND_CEILING)
    stop = (entry_price * (1 - signal.stop_loss_pct)).quantize(PRICE_PLACES, rounding=ROUND_FLOOR)
    return target, max(stop, ZERO)


def _exit_reason(*, trade: Trade, signal: Signal) -> str | None:
    mark = trade.last_mark
    if mark is not None and trade.entry_price > 0:
        target, stop = bracket_levels(entry_price=trade.entry_price, signal=signal)
        target = trade.target_price if trade.target_price is not None else target
        stop = trade.stop_price if trade.stop_price is not None else stop
        if mark >= target:
            return ExitReason.TARGET
        if mark <= stop:
            return ExitReason.STOP
    if clock.now() >= signal.time_exit_at:
        return ExitReason.TIME
    return None


def breakeven_after() -> Decimal:
    """``EXECUTION_BREAKEVEN_AFTER_PCT``: once a trade's mark is this far above its entry (0.25 = +25 %), its stop
    moves up to the entry price.  0 (the default) leaves stops where the signal put them."""
    return Decimal(str(getattr(settings, "EXECUTION_BREAKEVEN_AFTER_PCT", "0")))


def trade_stop_adjust(*, trade_id: int, stop_price: Decimal, by: str, reason: str) -> Trade:
    """Move an open trade's stop (per share).  Refused (``ValueError``) for a closed trade, a non-positive stop, or a
    stop at or above the target or the current mark, which would exit at once (close the trade instead).  Every move
    is kept in ``execution_stop_adjustments`` with who and why."""
    if stop_price <= 0:
        raise ValueError(f"a stop must be positive, not {stop_price}")
    with transaction.atomic():
        trade = Trade.objects.select_for_update().get(pk=trade_id)
        if trade.status != Trade.Status.OPEN:
            raise ValueError(f"trade {trade_id} is {trade.status}: its stop cannot move")
        if trade.target_price is not None and stop_price >= trade.target_price:
            raise ValueError(f"stop {stop_price} is not below the target {trade.target_price}")
        if trade.last_mark is not None and stop_price >= trade.last_mark:
            raise ValueError(f"stop {stop_price} is not below the mark {trade.last_mark}: it would exit at once")
        adjustment = StopAdjustment.objects.create(
            trade=trade, old_stop=trade.stop_price, new_stop=stop_price, by=by, reason=reason, at=clock.now()
        )
        _announce_after_commit("stop", trade.pk, adjustment_id=adjustment.pk)
        Trade.objects.filter(pk=trade.pk).update(stop_price=stop_price)
        logger.info("trade %s: stop %s -> %s by %s (%s)", trade.pk, trade.stop_price, stop_price, by, reason)
        trade.stop_price = stop_price
    return trade


def _stop_to_breakeven(*, trade: Trade) -> None:
    threshold = breakeven_after()
    mark = trade.last_mark
    if threshold <= 0 or mark is None or trade.entry_price <= 0:
        return
    if trade.stop_price is not None and trade.stop_price >= trade.entry_price:
        return
    if (mark - trade.entry_price) / trade.entry_price >= threshold and mark > trade.entry_price:
        reason = f"breakeven: the mark {mark} is {threshold:.0%} or more above the entry {trade.entry_price}"
        trade_stop_adjust(trade_id=trade.pk, stop_price=trade.entry_price, by="execution", reason=reason)
        trade.stop_price = trade.entry_price


def _trade_mark(*, trade: Trade, price: Decimal, at: datetime) -> None:
    with transaction.atomic():
        Trade.objects.filter(pk=trade.pk).update(last_mark=price, last_mark_at=at)
        trade.last_mark, trade.last_mark_at = price, at
        position = Position.objects.select_for_update().filter(option_symbol=trade.option_symbol).first()
        if position is not None:
            position.mark = price
            position.unrealized_pnl = cents((price - position.avg_cost) * position.quantity * CONTRACT_MULTIPLIER)
            position.updated_at = clock.now()
            position.save(update_fields=["mark", "unrealized_pnl", "updated_at"])


def _exit_limit(*, trade: Trade, quote: BrokerQuote | None) -> Decimal:
    """A marketable sell limit: the bid (rounded down to a cent), else the last trade, else the last known mark."""
    for candidate in (quote.bid if quote else None, quote.last if quote else None, trade.last_mark, trade.entry_price):
        if candidate is not None:
            return candidate.quantize(CENT, rounding=ROUND_FLOOR)
    return ZERO


def _trade_exit(*, trade: Trade, reason: str, broker: Broker, quote: BrokerQuote | None) -> Trade:
    """Sell to close ``trade`` through the broker (resuming a working exit order rather than sending another)."""
    exits = Order.objects.filter(signal_id=trade.signal_id, leg=Order.Leg.EXIT)
    sold = _exited(signal_id=trade.signal_id)[0]
    if sold >= trade.quantity:
        # A crash between the last exit fill and the close: finish the close from the exit orders.
        with transaction.atomic():
            return _trade_close(order=exits.filter(filled_quantity__gt=0).order_by("-attempt").first() or exits.get())
    overdue = clock.now() >= trade.signal.time_exit_at + time_exit_grace()
    order = exits.filter(status__in=OPEN_ORDER_STATUSES).order_by("-attempt").first()
    if order is None:
        last = exits.order_by("-attempt").first()
        refused = last is not None and last.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED)
        if last is not None and refused and clock.now() - last.created_at < exit_retry():
            # The broker refused moments ago (analytics may call several times a second): wait before asking again.
            return _trade_book_close(trade=trade, failure=last.reject_reason) if overdue else trade
        attempt = (last.attempt if last is not None else 0) + 1
        order = _order_get_or_create(
            decision=trade.signal.risk_decision,
            signal=trade.signal,
            trade=trade,
            leg=Order.Leg.EXIT,
            attempt=attempt,
            side=Order.Side.SELL,
            quantity=trade.quantity - sold,  # what an earlier partly filled exit left
            limit_price=_exit_limit(trade=trade, quote=quote),
            broker_name=broker.name,
            exit_reason=reason,
        )
    order = _order_send(order_id=order.pk, broker=broker)
    trade.refresh_from_db()
    if trade.status == Trade.Status.OPEN and order.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED) and overdue:
        return _trade_book_close(trade=trade, failure=order.reject_reason)
    return trade


def _trade_book_close(*, trade: Trade, failure: str) -> Trade:
    """Close a trade the broker cannot price past its time exit, at the last known price, on the books: a synthetic
    exit order and fill (broker ``book``, no commission) keep cash and the position consistent."""
    price = trade.last_mark if trade.last_mark is not None else trade.entry_price
    seen = f" from {trade.last_mark_at.isoformat()}" if trade.last_mark_at else ""
    note = (
        f"closed on the books at the last known price {price}{seen}: past the time exit"
        f" {trade.signal.time_exit_at.isoformat()} and the broker could not fill ({failure})"
    )
    exits = Order.objects.filter(signal_id=trade.signal_id, leg=Order.Leg.EXIT)
    attempt = (exits.aggregate(last=Max("attempt"))["last"] or 0) + 1
    order = _order_get_or_create(
        decision=trade.signal.risk_decision,
        signal=trade.signal,
        trade=trade,
        leg=Order.Leg.EXIT,
        attempt=attempt,
        side=Order.Side.SELL,
        quantity=trade.quantity - _exited(signal_id=trade.signal_id)[0],
        limit_price=price,
        broker_name=BOOK_BROKER,
        exit_reason=ExitReason.TIME,
    )
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order.pk)
        if order.status == OrderStatus.PENDING:
            order_transition(order=order, to_status=OrderStatus.SUBMITTED, detail=note, submitted_at=clock.now())
        if order.status == OrderStatus.SUBMITTED:
            fill = BrokerFill(
                exec_id=f"book-{order.client_order_id}",
                price=price,
                quantity=order.quantity,
                commission=ZERO,
                at=clock.now(),
            )
            _fill_record(order=order, fill=fill)
        if order.status == OrderStatus.FILLED:
            return _trade_close(order=order, note=note)
    trade.refresh_from_db()
    return trade


def position_close(*, trade_id: int, reason: str = ExitReason.FLATTEN) -> Trade:
    """Close one open trade now (operator's console), through the broker at the current quote.  An exit the broker
    rejects leaves the trade open (see its orders' reject reasons); calling again sends a new attempt."""
    trade = Trade.objects.select_related("signal").get(pk=trade_id)
    if trade.status != Trade.Status.OPEN:
        return trade
    broker = get_broker()
    quote = broker.quote(trade.option_symbol)
    if quote is not None and quote.mark is not None:
        _trade_mark(trade=trade, price=quote.mark, at=quote.ts)
    closed = _trade_exit(trade=trade, reason=reason, broker=broker, quote=quote)
    _daily_loss_guard()
    _publish_book_after_commit()
    return closed


def order_cancel(*, order_id: int, by: str) -> Order:
    """Cancel a working order at its broker (operator's console).  The paper broker never leaves one working; with
    IB the cancellation is confirmed by TWS and applied by its report.  An order no broker has seen (pending) is
    cancelled here at once."""
    order = Order.objects.get(pk=order_id)
    if order.status not in OPEN_ORDER_STATUSES:
        return order
    if order.status == OrderStatus.PENDING or not order.broker_order_id:
        with transaction.atomic():
            order = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order_id)
            if order.status == OrderStatus.PENDING:
                order_end_unfilled(order=order, to_status=OrderStatus.CANCELLED, reason=f"cancelled by {by}")
                return order
    broker = get_broker()
    confirmed = broker.cancel(broker_order_id=order.broker_order_id)
    order.refresh_from_db()
    if confirmed and order.status in OPEN_ORDER_STATUSES:
        with transaction.atomic():
            order = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order_id)
            if order.status in OPEN_ORDER_STATUSES:
                order_end_unfilled(
                    order=order, to_status=OrderStatus.CANCELLED, reason=f"cancelled at {broker.name} by {by}"
                )
    logger.info("order %s: cancel by %s -> %s", order.client_order_id, by, order.status)
    return order


def order_replace(*, order_id: int, limit_price: Decimal, by: str) -> Order:
    """Cancel/replace a working exit order: cancel it at its broker, then send the next attempt for what is left at
    ``limit_price``.  Refused (``ValueError``) for an entry (an entry is re-priced by a new signal, not by hand), an
    order that is not working, a non-positive limit, or a cancel the broker did not confirm (nothing new is sent
    while the old order may still fill)."""
    if limit_price <= 0:
        raise ValueError(f"a limit must be positive, not {limit_price}")
    order = Order.objects.select_related("signal", "trade").get(pk=order_id)
    if order.leg != Order.Leg.EXIT or order.trade is None:
        raise ValueError(f"order {order.client_order_id} is an entry: cancel it instead")
    if order.status not in OPEN_ORDER_STATUSES:
        raise ValueError(f"order {order.client_order_id} is {order.status}: nothing to replace")
    cancelled = order_cancel(order_id=order.pk, by=by)
    if cancelled.status in OPEN_ORDER_STATUSES:
        raise ValueError(f"the broker has not confirmed the cancel of {order.client_order_id}: not replaced")
    trade = Trade.objects.select_related("signal").get(pk=order.trade.pk)
    remaining = trade.quantity - _exited(signal_id=trade.signal_id)[0]
    if trade.status != Trade.Status.OPEN or remaining <= 0:
        return cancelled
    last = Order.objects.filter(signal_id=trade.signal_id, leg=Order.Leg.EXIT).aggregate(top=Max("attempt"))["top"]
    broker = get_broker()
    replacement = _order_get_or_create(
        decision=trade.signal.risk_decision,
        signal=trade.signal,
        trade=trade,
        leg=Order.Leg.EXIT,
        attempt=(last or 0) + 1,
        side=Order.Side.SELL,
        quantity=remaining,
        limit_price=limit_price,
        broker_name=broker.name,
        exit_reason=order.exit_reason or ExitReason.FLATTEN,
    )
    logger.info(
        "order %s replaced by %s at %s (by %s)", order.client_order_id, replacement.client_order_id, limit_price, by
    )
    return _order_send(order_id=replacement.pk, broker=broker)


def flatten_all(*, reason: str = ExitReason.FLATTEN) -> list[Trade]:
    """Close every open trade (kill switch, end of day).  Returns the trades still open afterwards."""
    for trade_id in list(open_trades().order_by("entry_at", "id").values_list("pk", flat=True)):
        position_close(trade_id=trade_id, reason=reason)
    return list(open_trades())


def _daily_loss_guard() -> None:
    # The daily loss limit trips the kill switch by itself, also when the loss comes from an exit rather than a review.
    daily_loss_guard()


# --- Redis and announcements ------------------------------------------------------------------------------------------
def _announce_after_commit(kind: str, trade_id: int, *, adjustment_id: int | None = None) -> None:
    def send() -> None:
        from celery import current_app

        if ANNOUNCE_TASK not in current_app.tasks:
            # Outside a worker nothing has imported the apps' task modules yet (an eager replay, a shell): autodiscover.
            current_app.loader.import_default_modules()
        if ANNOUNCE_TASK in current_app.tasks:
            extra = {"adjustment_id": adjustment_id} if adjustment_id is not None else {}
            current_app.tasks[ANNOUNCE_TASK].apply_async(args=(kind, trade_id), kwargs=extra)
        else:
            logger.info("%s is not registered; %s of trade %s not announced", ANNOUNCE_TASK, kind, trade_id)

    # robust: a failing announcement must not undo or hide a booked fill.
    transaction.on_commit(send, robust=True)


def _publish_book_after_commit() -> None:
    transaction.on_commit(book_publish)


def book_publish() -> None:
    """Rewrite ``execution:orders`` and ``positions:live`` from the database (the tables are the truth)."""
    orders = {
        o.client_order_id: dumps(
            {
                "id": o.pk,
                "signal_id": o.signal.signal_id,
                "leg": o.leg,
                "option_symbol": o.option_symbol,
                "side": o.side,
                "quantity": o.quantity,
                "filled_quantity": o.filled_quantity,
                "limit_price": o.limit_price,
                "status": o.status,
                "broker": o.broker,
                "submitted_at": o.submitted_at.isoformat() if o.submitted_at else None,
            }
        ).decode()
        for o in working_orders().select_related("signal")
    }
    positions = {
        p.option_symbol: dumps(
            {
                "ticker": p.ticker,
                "quantity": p.quantity,
                "avg_cost": p.avg_cost,
                "mark": p.mark,
                "unrealized_pnl": p.unrealized_pnl,
                "realized_pnl": p.realized_pnl,
                "updated_at": p.updated_at.isoformat(),
            }
        ).decode()
        for p in open_positions()
    }
    pipe = store.get_redis().pipeline(transaction=True)
    pipe.delete(ORDERS_KEY, POSITIONS_KEY)
    if orders:
        pipe.hset(ORDERS_KEY, mapping=cast(store.HashMapping, orders))
    if positions:
        pipe.hset(POSITIONS_KEY, mapping=cast(store.HashMapping, positions))
    pipe.execute()
