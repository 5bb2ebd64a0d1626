"""Entries: approved decisions become one order, filled by the paper broker at the far side, opening a trade."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from celery import current_app
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core import clock
from apps.execution import services
from apps.execution.brokers import get_broker
from apps.execution.brokers.paper import PaperBroker
from apps.execution.models import Fill, Order, OrderStatus, Position, Trade, TradeLog
from apps.execution.selectors import account_state, order_summary
from apps.ingestion.models import OptionTrade
from apps.risk.services import kill_switch_engage, signal_review
from apps.risk.tasks import review
from apps.signals.models import Signal
from tests.risk.factories import SignalFactory, ny, put_quote

pytestmark = pytest.mark.django_db


def transitions(order: Order) -> list[tuple[str, str, bool]]:
    return list(order.logs.order_by("at", "id").values_list("from_status", "to_status", "applied"))


def test_an_approved_signal_fills_at_the_ask_and_opens_a_trade(committed, tasks_run, redis_store):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=5)
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))

    with committed():
        review.delay(signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert (order.status, order.side, order.leg, order.quantity) == (OrderStatus.FILLED, "buy", "entry", 5)
    assert order.avg_fill_price == Decimal("1.20") and order.filled_quantity == 5
    assert order.broker_order_id.startswith("paper-")
    assert transitions(order) == [("", "pending", True), ("pending", "submitted", True), ("submitted", "filled", True)]
    fill = Fill.objects.get(order=order)
    assert (fill.price, fill.quantity, fill.commission) == (Decimal("1.20"), 5, Decimal("3.25"))
    trade = Trade.objects.get(signal=signal)
    assert (trade.status, trade.quantity) == ("open", 5)
    assert (trade.entry_price, trade.fees) == (Decimal("1.20"), Decimal("3.25"))
    assert (trade.strategy, trade.ticker, trade.option_symbol) == ("zero_dte", "SPY", signal.option_symbol)
    assert trade.entry_at == ny(10, 30)
    signal.refresh_from_db()
    assert signal.status == Signal.Status.ACTIVE
    position = Position.objects.get(option_symbol=signal.option_symbol)
    assert (position.quantity, position.avg_cost) == (5, Decimal("1.20"))
    active = json.loads(redis_store.hget("signals:active", signal.signal_id))
    assert active["trade_id"] == trade.pk and Decimal(active["entry_price"]) == Decimal("1.20")
    assert json.loads(redis_store.hget("positions:live", signal.option_symbol))["quantity"] == 5
    assert redis_store.hlen("execution:orders") == 0
    assert "distribution.announce" in current_app.tasks
    assert tasks_run.named("distribution.announce") == [("entry", trade.pk)]


@override_settings(PAPER_FILL_SPREAD_SHARE=Decimal("0"))
def test_the_paper_broker_fills_at_the_mid_when_told_to(committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))

    with committed():
        signal_review(signal_id=signal.signal_id)

    assert Trade.objects.get(signal=signal).entry_price == Decimal("1.15")


@override_settings(PAPER_FILL_SPREAD_SHARE=Decimal("0.5"))
def test_a_share_of_the_spread_rounds_against_the_trader(committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.21", ts=ny(10, 29))

    with committed():
        signal_review(signal_id=signal.signal_id)

    # mid 1.155 + half of the 0.055 half spread = 1.1825, rounded up for a buy.
    assert Trade.objects.get(signal=signal).entry_price == Decimal("1.19")


def test_submitting_a_decision_twice_yields_one_order_and_one_fill(committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))
    decision = signal_review(signal_id=signal.signal_id)

    with committed():
        first = services.order_submit(decision_id=decision.pk)
        second = services.order_submit(decision_id=decision.pk)

    assert first.pk == second.pk
    assert Order.objects.filter(decision=decision).count() == 1
    assert Fill.objects.filter(order=first).count() == 1
    assert Position.objects.get(option_symbol=signal.option_symbol).quantity == 5
    assert Trade.objects.filter(signal=signal).count() == 1


def test_a_retry_after_a_crash_between_submit_and_fill_resends_the_same_order_once(committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))
    decision = signal_review(signal_id=signal.signal_id)
    with committed():
        order = services.order_submit(decision_id=decision.pk)
    # Rewind the book as if the worker died after writing "submitted" and before recording the broker's answer.
    Fill.objects.filter(order=order).delete()
    Order.objects.filter(pk=order.pk).update(trade=None)
    Trade.objects.filter(signal=signal).delete()
    Position.objects.all().delete()
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SUBMITTED, filled_quantity=0, avg_fill_price=None)
    Signal.objects.filter(pk=signal.pk).update(status=Signal.Status.APPROVED)

    with committed():
        again = services.order_submit(decision_id=decision.pk)
        services.order_submit(decision_id=decision.pk)

    assert again.pk == order.pk and again.status == OrderStatus.FILLED
    assert Fill.objects.filter(order=order).count() == 1
    assert Position.objects.get(option_symbol=signal.option_symbol).quantity == 5


def test_a_rejected_decision_sends_no_order():
    clock.set_simulated(ny(9, 0))
    decision = signal_review(signal_id=SignalFactory().signal_id)

    assert services.order_submit(decision_id=decision.pk) is None
    assert not Order.objects.exists()


def test_no_quote_rejects_the_order_with_the_reason_and_logs_each_transition(committed, redis_store):
    signal = SignalFactory()

    with committed():
        signal_review(signal_id=signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.REJECTED
    assert order.reject_reason == f"no quote for {signal.option_symbol}"
    assert transitions(order) == [
        ("", "pending", True),
        ("pending", "submitted", True),
        ("submitted", "rejected", True),
    ]
    assert TradeLog.objects.filter(order=order, to_status="rejected").get().detail == order.reject_reason
    signal.refresh_from_db()
    assert signal.status == Signal.Status.REJECTED
    assert not Trade.objects.exists() and not Fill.objects.exists()
    assert redis_store.hlen("execution:orders") == 0


def test_a_stale_quote_rejects_the_order_with_its_age(committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 20))

    with committed():
        signal_review(signal_id=signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.REJECTED
    assert order.reject_reason.startswith(f"stale quote for {signal.option_symbol}: 600s old")


def test_a_limit_below_the_ask_is_not_marketable_and_is_rejected(committed):
    signal = SignalFactory(limit_price=Decimal("1.20"))
    put_quote(signal.option_symbol, bid="1.30", ask="1.40", ts=ny(10, 29))

    with committed():
        signal_review(signal_id=signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.REJECTED
    assert "limit 1.260000 is not marketable: buy fills at 1.40" in order.reject_reason


def test_the_newest_recorded_option_trade_prices_the_order_when_redis_has_no_quote(committed):
    signal = SignalFactory()
    for uw_id, minute, ask in (("t1", 10, "1.50"), ("t2", 28, "1.22")):
        OptionTrade.objects.create(
            uw_id=uw_id,
            ticker="SPY",
            option_symbol=signal.option_symbol,
            expiry=signal.expiry,
            right="C",
            strike=signal.strike,
            price=Decimal("1.18"),
            size=3,
            premium=Decimal("354"),
            nbbo_bid=Decimal("1.14"),
            nbbo_ask=Decimal(ask),
            executed_at=ny(10, minute),
        )

    with committed():
        signal_review(signal_id=signal.signal_id)

    assert Trade.objects.get(signal=signal).entry_price == Decimal("1.22")


def test_the_account_books_cash_positions_and_buying_power_from_the_fills(committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))
    with committed():
        signal_review(signal_id=signal.signal_id)

    account = account_state()

    assert account.cash == Decimal("100000") - Decimal("600") - Decimal("3.25")
    assert account.positions_value == Decimal("600")
    assert account.net_liq == Decimal("99996.75")
    assert account.buying_power == account.cash
    assert account.realized_pnl_today == Decimal("0")
    assert order_summary() == {"orders": 1, "submitted": 1, "filled": 1, "rejected": 0}


def test_get_broker_returns_the_paper_broker_by_default():
    assert isinstance(get_broker(), PaperBroker)


@override_settings(BROKER="ib")
def test_get_broker_returns_the_ib_adapter_when_broker_is_ib():
    from apps.execution.brokers.ib import IBBroker

    assert isinstance(get_broker(), IBBroker)


@override_settings(BROKER="cboe")
def test_get_broker_refuses_an_unknown_broker():
    with pytest.raises(ImproperlyConfigured, match="not a known broker"):
        get_broker()


def test_an_entry_is_not_sent_when_the_kill_switch_went_on_after_the_decision(committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))
    decision = signal_review(signal_id=signal.signal_id)
    kill_switch_engage(by="ops", reason="halt")

    with committed():
        order = services.order_submit(decision_id=decision.pk)

    assert order.status == OrderStatus.REJECTED
    assert "kill switch" in order.reject_reason
    assert transitions(order) == [("", "pending", True), ("pending", "rejected", True)]
    assert not Fill.objects.exists()
    assert Signal.objects.get(pk=signal.pk).status == Signal.Status.REJECTED
