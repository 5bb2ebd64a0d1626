"""The bracket of a trade: target and stop set at the entry fill, stops moved by a rule or an operator (each move
kept), cancels of working orders."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.core import clock
from apps.execution import services
from apps.execution.models import Order, OrderStatus, StopAdjustment, Trade
from apps.risk.models import RiskDecision
from apps.risk.services import limits_active
from apps.risk.tasks import review
from apps.signals.models import Signal
from tests.risk.factories import SignalFactory, ny, put_quote

pytestmark = pytest.mark.django_db(transaction=True)  # each stage hands over on commit


def entered(*, limit: str = "1.20", bid: str = "1.10", ask: str = "1.20", **signal_fields) -> Trade:
    signal = SignalFactory(limit_price=Decimal(limit), quantity_hint=2, **signal_fields)
    put_quote(signal.option_symbol, bid=bid, ask=ask, ts=clock.now())
    review.delay(signal.signal_id)
    return Trade.objects.get(signal=signal)


def test_the_bracket_is_set_from_the_signal_at_the_entry_fill():
    trade = entered(profit_target_pct=Decimal("0.5"), stop_loss_pct=Decimal("0.3"))
    assert (trade.entry_price, trade.target_price, trade.stop_price) == (
        Decimal("1.2"),
        Decimal("1.8"),
        Decimal("0.84"),
    )


def test_an_operator_moves_the_stop_and_the_exit_follows_the_new_stop():
    trade = entered()
    services.trade_stop_adjust(trade_id=trade.pk, stop_price=Decimal("1.05"), by="ops", reason="tighter after news")

    adjustment = StopAdjustment.objects.get(trade=trade)
    assert (adjustment.old_stop, adjustment.new_stop, adjustment.by) == (Decimal("0.84"), Decimal("1.05"), "ops")
    clock.advance_to(ny(10, 35))
    put_quote(trade.option_symbol, bid="1.00", ask="1.08", ts=clock.now())  # mid 1.04: under the new stop only
    services.exits_manage(ticker="SPY")

    trade.refresh_from_db()
    assert (trade.status, trade.exit_reason, trade.exit_price) == ("closed", "stop", Decimal("1"))


@pytest.mark.parametrize(
    ("stop", "why"),
    [("0", "positive"), ("1.90", "not below the target"), ("1.20", "not below the mark")],
)
def test_a_stop_that_would_exit_at_once_or_makes_no_sense_is_refused(stop, why):
    trade = entered()
    with pytest.raises(ValueError, match=why):
        services.trade_stop_adjust(trade_id=trade.pk, stop_price=Decimal(stop), by="ops", reason="test")
    assert not StopAdjustment.objects.exists()
    assert Trade.objects.get(pk=trade.pk).stop_price == Decimal("0.84")


def test_the_breakeven_rule_moves_the_stop_to_the_entry_once_the_trade_is_up_enough(settings):
    settings.EXECUTION_BREAKEVEN_AFTER_PCT = Decimal("0.25")
    trade = entered()
    clock.advance_to(ny(10, 35))
    put_quote(trade.option_symbol, bid="1.45", ask="1.55", ts=clock.now())  # mid 1.50: +25 %
    services.exits_manage(ticker="SPY")

    trade.refresh_from_db()
    assert trade.status == "open" and trade.stop_price == Decimal("1.2")
    assert StopAdjustment.objects.get(trade=trade).by == "execution"
    clock.advance_to(ny(10, 40))
    put_quote(trade.option_symbol, bid="1.15", ask="1.25", ts=clock.now())  # back to the entry: out at no loss
    services.exits_manage(ticker="SPY")
    trade.refresh_from_db()
    assert (trade.status, trade.exit_reason) == ("closed", "stop")


def test_a_pending_order_is_cancelled_by_an_operator_and_ends_its_signal():
    signal = SignalFactory(status=Signal.Status.APPROVED)
    decision = RiskDecision.objects.create(
        signal=signal,
        limits=limits_active(),
        approved=True,
        quantity=1,
        limit_price=Decimal("1.26"),
        checks=[],
        reason="approved for the test",
        account={},
        decided_at=clock.now(),
    )
    order = services._order_get_or_create(
        decision=decision,
        signal=signal,
        trade=None,
        leg=Order.Leg.ENTRY,
        attempt=1,
        side=Order.Side.BUY,
        quantity=1,
        limit_price=Decimal("1.26"),
        broker_name="paper",
    )

    cancelled = services.order_cancel(order_id=order.pk, by="ops")

    assert (cancelled.status, cancelled.reject_reason) == (OrderStatus.CANCELLED, "cancelled by ops")
    signal.refresh_from_db()
    assert signal.status == Signal.Status.REJECTED
    assert services.order_cancel(order_id=order.pk, by="ops").status == OrderStatus.CANCELLED  # twice: no change
