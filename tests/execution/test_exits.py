"""Exits: marks, profit targets, stops, time exits, retries after rejections, book closes, flattening."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import override_settings

from apps.core import clock, store
from apps.execution import services
from apps.execution.models import Fill, Order, OrderStatus, Position, Trade
from apps.execution.selectors import account_state
from apps.execution.tasks import manage_exits, sweep_exits
from apps.risk.models import KillSwitchEvent
from apps.risk.selectors import kill_switch_is_on
from apps.risk.services import limits_update, signal_review
from apps.signals.models import Signal
from tests.risk.factories import SignalFactory, ny, put_quote

pytestmark = pytest.mark.django_db


@pytest.fixture
def opened(committed):
    """An open trade: 5 x SPY 600C bought at 1.20 (ask) at 10:30, commission 3.25; target +50 %, stop -30 %,
    time exit 15:45."""
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=5)
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))
    with committed():
        signal_review(signal_id=signal.signal_id)
    return Trade.objects.get(signal=signal)


def exit_orders(trade: Trade) -> list[Order]:
    return list(Order.objects.filter(signal_id=trade.signal_id, leg="exit").order_by("attempt"))


def test_a_profit_target_sells_at_the_bid_and_closes_the_trade_with_commissions(opened, committed, tasks_run):
    clock.set_simulated(ny(11, 0))
    put_quote(opened.option_symbol, bid="1.85", ask="1.95", ts=ny(10, 59))

    with committed():
        manage_exits.delay("SPY", ny(11, 0).isoformat())

    opened.refresh_from_db()
    assert (opened.status, opened.exit_reason, opened.exit_price) == ("closed", "target", Decimal("1.85"))
    # (1.85 - 1.20) x 5 x 100 = 325, less 3.25 commission on each leg.
    assert opened.realized_pnl == Decimal("318.50")
    assert opened.fees == Decimal("6.50")
    assert opened.exit_at == ny(11, 0)
    [order] = exit_orders(opened)
    assert (order.side, order.quantity, order.status, order.exit_reason) == ("sell", 5, "filled", "target")
    assert Signal.objects.get(pk=opened.signal_id).status == Signal.Status.CLOSED
    position = Position.objects.get(option_symbol=opened.option_symbol)
    assert (position.quantity, position.realized_pnl) == (0, Decimal("318.50"))
    client = store.get_redis()
    assert client.hget("signals:active", opened.signal.signal_id) is None
    assert client.hget("positions:live", opened.option_symbol) is None
    assert tasks_run.named("distribution.announce")[-1] == ("exit", opened.pk)
    account = account_state()
    assert account.realized_pnl_today == Decimal("318.50")
    assert account.cash == account.net_liq == Decimal("100318.50")


def test_a_stop_sells_at_the_bid_and_books_the_loss(opened, committed):
    clock.set_simulated(ny(11, 0))
    put_quote(opened.option_symbol, bid="0.78", ask="0.82", ts=ny(10, 59))

    with committed():
        closed = services.exits_manage(ticker="SPY", as_of=ny(11, 0))

    assert [t.pk for t in closed] == [opened.pk]
    opened.refresh_from_db()
    assert (opened.exit_reason, opened.exit_price, opened.realized_pnl) == ("stop", Decimal("0.78"), Decimal("-216.50"))


def test_the_time_exit_closes_the_trade_at_the_bid_when_neither_band_was_hit(opened, committed):
    clock.set_simulated(ny(15, 46))
    put_quote(opened.option_symbol, bid="1.25", ask="1.30", ts=ny(15, 45))

    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(15, 46))

    opened.refresh_from_db()
    assert (opened.exit_reason, opened.exit_price, opened.realized_pnl) == ("time", Decimal("1.25"), Decimal("18.50"))


def test_inside_the_bands_the_trade_stays_open_and_is_marked_to_the_mid(opened, committed):
    clock.set_simulated(ny(11, 0))
    put_quote(opened.option_symbol, bid="1.25", ask="1.35", ts=ny(10, 59))

    with committed():
        assert services.exits_manage(ticker="SPY", as_of=ny(11, 0)) == []

    opened.refresh_from_db()
    assert (opened.status, opened.last_mark) == ("open", Decimal("1.30"))
    position = Position.objects.get(option_symbol=opened.option_symbol)
    assert (position.mark, position.unrealized_pnl) == (Decimal("1.30"), Decimal("50.00"))
    live = json.loads(store.get_redis().hget("positions:live", opened.option_symbol))
    assert Decimal(live["unrealized_pnl"]) == Decimal("50.00")
    assert account_state().open_pnl == Decimal("50.00")
    assert not exit_orders(opened)


def test_other_underlyings_are_left_alone(opened, committed):
    clock.set_simulated(ny(15, 50))

    with committed():
        assert services.exits_manage(ticker="QQQ", as_of=ny(15, 50)) == []

    opened.refresh_from_db()
    assert opened.status == "open"


def test_an_exit_rejected_for_a_stale_quote_is_retried_with_a_new_order_on_the_next_call(opened, committed):
    clock.set_simulated(ny(11, 0))
    put_quote(opened.option_symbol, bid="0.78", ask="0.82", ts=ny(10, 50))

    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(11, 0))

    opened.refresh_from_db()
    [rejected] = exit_orders(opened)
    assert opened.status == "open"
    assert rejected.status == OrderStatus.REJECTED and rejected.reject_reason.startswith("stale quote")

    clock.set_simulated(ny(11, 1))
    put_quote(opened.option_symbol, bid="0.79", ask="0.83", ts=ny(11, 1))
    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(11, 1))

    opened.refresh_from_db()
    first, second = exit_orders(opened)
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.client_order_id != second.client_order_id
    assert second.status == OrderStatus.FILLED
    assert (opened.status, opened.exit_reason, opened.exit_price) == ("closed", "stop", Decimal("0.79"))


def test_past_the_time_exit_a_trade_without_a_fresh_quote_is_closed_at_the_last_known_price(opened, committed):
    put_quote(opened.option_symbol, bid="1.05", ask="1.15", ts=ny(15, 0))
    clock.set_simulated(ny(15, 47))

    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(15, 47))
    opened.refresh_from_db()
    assert opened.status == "open"  # within the grace period the broker is retried

    clock.set_simulated(ny(15, 51))
    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(15, 51))

    opened.refresh_from_db()
    assert (opened.status, opened.exit_reason, opened.exit_price) == ("closed", "time", Decimal("1.10"))
    assert "closed on the books at the last known price 1.10" in opened.exit_note
    assert "stale quote" in opened.exit_note
    # (1.10 - 1.20) x 500 = -50, less the entry commission; the book close pays none.
    assert opened.realized_pnl == Decimal("-53.25")
    *rejected, booked = exit_orders(opened)
    assert all(o.status == OrderStatus.REJECTED for o in rejected) and len(rejected) == 2
    assert (booked.broker, booked.status) == ("book", OrderStatus.FILLED)
    assert Position.objects.get(option_symbol=opened.option_symbol).quantity == 0
    assert Signal.objects.get(pk=opened.signal_id).status == Signal.Status.CLOSED


def test_a_trade_whose_quote_vanished_is_closed_at_its_entry_mark_after_the_time_exit(opened, committed):
    store.get_redis().delete(f"latest:uw:quote:{opened.option_symbol}")
    clock.set_simulated(ny(15, 55))

    with committed():
        sweep_exits.delay()

    opened.refresh_from_db()
    assert (opened.status, opened.exit_price, opened.realized_pnl) == ("closed", Decimal("1.20"), Decimal("-3.25"))
    assert "no quote for" in opened.exit_note


def test_managing_exits_twice_closes_a_trade_once(opened, committed):
    clock.set_simulated(ny(11, 0))
    put_quote(opened.option_symbol, bid="1.85", ask="1.95", ts=ny(10, 59))

    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(11, 0))
        services.exits_manage(ticker="SPY", as_of=ny(11, 0))

    assert len(exit_orders(opened)) == 1
    assert Fill.objects.filter(order__signal_id=opened.signal_id).count() == 2


def test_flatten_all_closes_every_open_trade_through_the_broker(opened, committed):
    other = SignalFactory(ticker="QQQ", option_symbol="QQQ250610C00500000", limit_price=Decimal("2.00"))
    put_quote(other.option_symbol, bid="1.95", ask="2.00", ts=ny(10, 29))
    with committed():
        signal_review(signal_id=other.signal_id)
    clock.set_simulated(ny(12, 0))
    put_quote(opened.option_symbol, bid="1.30", ask="1.40", ts=ny(11, 59))
    put_quote(other.option_symbol, bid="2.10", ask="2.20", ts=ny(11, 59))

    with committed():
        still_open = services.flatten_all()

    assert still_open == []
    trades = Trade.objects.order_by("id")
    assert [(t.ticker, t.exit_reason, t.exit_price) for t in trades] == [
        ("SPY", "flatten", Decimal("1.30")),
        ("QQQ", "flatten", Decimal("2.10")),
    ]
    assert store.get_redis().hlen("positions:live") == 0


def test_a_loss_past_the_daily_limit_on_an_exit_engages_the_kill_switch(opened, committed):
    limits_update(by="ops", daily_loss_limit_share=Decimal("0.001"))
    clock.set_simulated(ny(11, 0))
    put_quote(opened.option_symbol, bid="0.78", ask="0.82", ts=ny(10, 59))

    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(11, 0))

    assert kill_switch_is_on() is True
    assert KillSwitchEvent.objects.get().by == "risk"
    assert signal_review(signal_id=SignalFactory(ticker="QQQ").signal_id).approved is False


@override_settings(EXECUTION_TIME_EXIT_GRACE_SECONDS=0)
def test_with_no_grace_the_book_close_happens_on_the_first_call_past_the_time_exit(opened, committed):
    clock.set_simulated(ny(15, 46))

    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(15, 46))

    opened.refresh_from_db()
    assert opened.status == "closed" and opened.exit_reason == "time"


def test_after_a_rejected_exit_the_broker_is_not_asked_again_within_the_retry_interval(opened, committed):
    clock.set_simulated(ny(11, 0))
    put_quote(opened.option_symbol, bid="0.78", ask="0.82", ts=ny(10, 50))

    with committed():
        services.exits_manage(ticker="SPY", as_of=ny(11, 0))
        clock.set_simulated(ny(11, 0, 20))
        services.exits_manage(ticker="SPY", as_of=ny(11, 0, 20))

    assert [o.status for o in exit_orders(opened)] == [OrderStatus.REJECTED]
