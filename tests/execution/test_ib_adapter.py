"""The IB adapter through the real ibapi client against the TWS simulator on loopback (direct mode: this process
owns the connection, as a replay with BROKER=ib does)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from apps.core import clock
from apps.execution import services
from apps.execution.brokers.ib import IBBroker, process_gateway, process_gateway_close
from apps.execution.ib.simulator import TWSSimulator
from apps.execution.models import (
    BrokerMessage,
    Fill,
    IBOrderIdCounter,
    Order,
    OrderStatus,
    Position,
    ReconciliationIssue,
    Trade,
)
from apps.execution.selectors import account_state
from apps.risk.tasks import review
from apps.signals.models import Signal
from tests.risk.factories import SignalFactory, minutes, ny, put_quote

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sim(settings):
    simulator = TWSSimulator(port=0, clock=clock.now).start()
    settings.BROKER = "ib"
    settings.IB_HOST = "127.0.0.1"
    settings.IB_PORT = simulator.port
    settings.IB_CLIENT_ID = 11
    settings.IB_ACK_TIMEOUT_SECONDS = 5.0
    settings.IB_CONNECT_TIMEOUT_SECONDS = 5.0
    settings.CELERY_TASK_ALWAYS_EAGER = True
    process_gateway()  # connected (and reconciled) before the first signal, as the replay does at its start
    yield simulator
    process_gateway_close()
    simulator.stop()


def quote_both(sim: TWSSimulator, symbol: str, *, bid: str, ask: str, at=None) -> None:
    """The same market at the simulator and in the platform's recorded quotes."""
    sim.set_quote(symbol, Decimal(bid), Decimal(ask))
    put_quote(symbol, bid=bid, ask=ask, ts=at or clock.now())


def test_an_order_is_placed_filled_and_reflected_in_positions_and_pnl(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=5)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")

    review.delay(signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert (order.status, order.broker, order.filled_quantity) == (OrderStatus.FILLED, "ib", 5)
    assert order.ib_order_id is not None and order.broker_order_id == str(order.ib_order_id)
    fill = Fill.objects.get(order=order)
    assert (fill.price, fill.quantity, fill.commission) == (Decimal("1.2"), 5, Decimal("3.25"))
    assert fill.at.replace(microsecond=0) == clock.now().replace(microsecond=0)
    at_broker = sim.orders()
    assert len(at_broker) == 1 and at_broker[0]["order_ref"] == order.client_order_id
    assert at_broker[0]["status"] == "Filled" and at_broker[0]["tif"] == "IOC"
    assert sim.positions()[signal.option_symbol]["position"] == 5
    assert Position.objects.get(option_symbol=signal.option_symbol).quantity == 5
    trade = Trade.objects.get(signal=signal)
    assert (trade.status, trade.entry_price, trade.quantity) == ("open", Decimal("1.2"), 5)
    assert IBOrderIdCounter.objects.get(client_id=11).next_id == order.ib_order_id + 1

    # The market moves up through the profit target: the exit goes to IB and closes the trade with its PnL.
    clock.advance_to(ny(10, 40))
    quote_both(sim, signal.option_symbol, bid="1.90", ask="2.00")
    services.exits_manage(ticker="SPY")

    trade.refresh_from_db()
    assert (trade.status, trade.exit_reason, trade.exit_price) == ("closed", "target", Decimal("1.9"))
    assert trade.realized_pnl == Decimal("343.50")  # (1.90 - 1.20) x 5 x 100 - 2 x 3.25
    assert sim.positions()[signal.option_symbol]["position"] == 0
    assert Position.objects.get(option_symbol=signal.option_symbol).quantity == 0
    assert account_state().realized_pnl_today == Decimal("343.50")
    assert [o["order_ref"] for o in sim.orders()] == list(
        Order.objects.order_by("id").values_list("client_order_id", flat=True)
    )


def test_a_rejection_by_ib_is_surfaced_on_the_order_and_the_signal(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=2)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")
    sim.reject_next("no trading permissions for OPT")

    review.delay(signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.REJECTED
    assert order.reject_reason.startswith("IB 201:") and "no trading permissions" in order.reject_reason
    signal.refresh_from_db()
    assert signal.status == Signal.Status.REJECTED
    message = BrokerMessage.objects.get(code=201)
    assert message.order == order and message.category == "order"
    assert not Trade.objects.exists() and not Fill.objects.exists()


def test_an_ioc_order_that_does_not_fill_is_cancelled_not_left_working(sim):
    signal = SignalFactory(limit_price=Decimal("1.00"), quantity_hint=2)
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=clock.now())
    sim.set_quote(signal.option_symbol, Decimal("1.40"), Decimal("1.50"))  # IB's market ran away from the limit

    review.delay(signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.CANCELLED and "immediate-or-cancel" in order.reject_reason
    assert sim.orders()[0]["status"] == "Cancelled"
    signal.refresh_from_db()
    assert signal.status == Signal.Status.REJECTED


def test_a_stale_quote_is_refused_before_anything_reaches_ib(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=2)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20", at=clock.now() - minutes(10))

    review.delay(signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.REJECTED and "stale quote" in order.reject_reason
    assert sim.orders() == []


def test_a_connection_dropped_between_placing_and_acknowledging_leaves_exactly_one_order(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=3)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")
    process_gateway()  # connected and reconciled before the order
    sim.drop_on_next_place(accept=True)

    review.delay(signal.signal_id)

    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.SUBMITTED  # sent, never acknowledged: nothing assumed
    assert len(sim.orders()) == 1 and sim.orders()[0]["status"] == "Filled"

    # The connection comes back: reconciliation finds the order's execution by orderRef and adopts it.
    gateway = process_gateway()
    assert gateway.connected
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED and order.filled_quantity == 3
    assert Fill.objects.filter(order=order).count() == 1
    assert "adopted at reconciliation" in order.logs.filter(to_status="filled").get().detail
    assert len(sim.orders()) == 1 and Order.objects.count() == 1
    assert Trade.objects.get(signal=signal).quantity == 3
    assert (
        Position.objects.get(option_symbol=signal.option_symbol).quantity
        == sim.positions()[signal.option_symbol]["position"]
    )
    assert not ReconciliationIssue.objects.filter(resolved=False).exists()

    # Submitting the same order again (a redelivered task) sends nothing new.
    IBBroker().submit(
        services.OrderRequest(
            client_order_id=order.client_order_id,
            option_symbol=order.option_symbol,
            side=order.side,
            quantity=order.quantity,
            limit_price=order.limit_price,
        )
    )
    services.order_submit(decision_id=order.decision_id)
    assert len(sim.orders()) == 1 and Fill.objects.count() == 1


def test_a_position_at_ib_that_the_book_does_not_know_is_flagged_not_overwritten(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=2)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")
    review.delay(signal.signal_id)
    Position.objects.filter(option_symbol=signal.option_symbol).update(quantity=7)  # the book went wrong

    process_gateway().reconcile()

    issue = ReconciliationIssue.objects.get(kind="position_mismatch", key=signal.option_symbol)
    assert (issue.broker_value, issue.platform_value) == ("2", "7") and not issue.resolved
    assert Position.objects.get(option_symbol=signal.option_symbol).quantity == 7


def test_connectivity_codes_put_the_platform_in_reduce_only_and_back(sim, redis_store):
    gateway = process_gateway()
    assert redis_store.hget("execution:broker:state", "connected") == "1"
    sim.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    gateway.pump(1.0)
    assert redis_store.hget("execution:broker:state", "connected") == "0"
    assert BrokerMessage.objects.get(code=1100).alert
    sim.send_error(1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
    gateway.pump(1.0)
    assert redis_store.hget("execution:broker:state", "connected") == "1"
    assert gateway.needs_reconcile


def test_ib_quotes_are_stored_like_the_uw_data_and_resubscribed_after_1101_and_a_reconnect(sim, redis_store):
    from apps.ingestion.models import IBQuote

    symbol = SignalFactory.build().option_symbol
    gateway = process_gateway()
    sim.set_quote(symbol, Decimal("1.10"), Decimal("1.20"), last=Decimal("1.15"))
    sim.set_quote("SPY", Decimal("600.01"), Decimal("600.03"), last=Decimal("600.02"))
    assert gateway.subscribe_quotes(["SPY", symbol]) == 2

    def pumped_until(predicate) -> bool:
        for _ in range(40):
            gateway.pump(0.05)
            if predicate():
                return True
        return False

    assert pumped_until(lambda: redis_store.hget(f"latest:ib:quote:{symbol}", "ask") is not None)
    assert Decimal(redis_store.hget(f"latest:ib:quote:{symbol}", "bid")) == Decimal("1.10")
    assert Decimal(redis_store.hget("latest:ib:price:SPY", "last")) == Decimal("600.02")
    assert IBQuote.objects.filter(key=symbol, sec_type="OPT").exists()
    assert IBBroker().quote(symbol).source == "ib"

    def market_data_requests() -> int:
        return sum(1 for msg_id, _ in sim.received() if msg_id == 1)

    before = market_data_requests()
    sim.send_error(1101, "Connectivity between IB and TWS has been restored - data lost.")
    assert pumped_until(lambda: market_data_requests() == before + 2)

    sim.drop_connections()
    assert pumped_until(lambda: not gateway.connected)
    assert process_gateway().connected  # reconnects, reconciles, subscribes again
    assert pumped_until(lambda: market_data_requests() == before + 4)
    sim.set_quote(symbol, Decimal("1.30"), Decimal("1.40"))
    assert pumped_until(lambda: Decimal(redis_store.hget(f"latest:ib:quote:{symbol}", "bid")) == Decimal("1.30"))


def test_an_operator_cancels_an_order_working_at_ib(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=2)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")
    sim.hold_fills(True)  # TWS acknowledges and works the order without filling it
    review.delay(signal.signal_id)
    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.SUBMITTED and sim.orders()[0]["status"] == "Submitted"

    cancelled = services.order_cancel(order_id=order.pk, by="ops")

    assert cancelled.status == OrderStatus.CANCELLED
    assert sim.orders()[0]["status"] == "Cancelled"
    assert BrokerMessage.objects.filter(code=202, order=order).exists()
    sim.hold_fills(False)
    process_gateway().pump(0.5)
    assert not Fill.objects.exists() and sim.executions() == []


def test_an_exit_that_fills_in_part_is_completed_by_the_next_attempt_and_the_trade_closes_on_all_of_it(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=5)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")
    review.delay(signal.signal_id)
    trade = Trade.objects.get(signal=signal)

    clock.advance_to(ny(10, 40))
    quote_both(sim, signal.option_symbol, bid="1.90", ask="2.00")
    sim.partial_fill_next(2)  # IOC: 2 of 5 fill, the rest is cancelled
    services.exits_manage(ticker="SPY")
    trade.refresh_from_db()
    assert trade.status == "open"
    first = Order.objects.get(signal=signal, leg="exit", attempt=1)
    assert (first.status, first.filled_quantity) == (OrderStatus.CANCELLED, 2)
    assert Position.objects.get(option_symbol=signal.option_symbol).quantity == 3

    clock.advance_to(ny(10, 41))  # past the exit retry pause
    quote_both(sim, signal.option_symbol, bid="1.92", ask="2.02")
    services.exits_manage(ticker="SPY")

    trade.refresh_from_db()
    second = Order.objects.get(signal=signal, leg="exit", attempt=2)
    assert (second.quantity, second.status) == (3, OrderStatus.FILLED)
    assert trade.status == "closed" and trade.exit_price == Decimal("1.912")  # (2 x 1.90 + 3 x 1.92) / 5
    assert trade.fees == Decimal("6.50")
    assert trade.realized_pnl == Decimal("349.50")  # (1.912 - 1.20) x 500 - 6.50
    assert (
        Position.objects.get(option_symbol=signal.option_symbol).quantity
        == 0
        == sim.positions()[signal.option_symbol]["position"]
    )


def test_an_exit_working_at_ib_is_cancelled_and_replaced_at_a_new_limit(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=2)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")
    review.delay(signal.signal_id)
    trade = Trade.objects.get(signal=signal)
    clock.advance_to(ny(10, 40))
    quote_both(sim, signal.option_symbol, bid="1.90", ask="2.00")
    sim.hold_fills(True)  # the exit is acknowledged and works at TWS
    services.exits_manage(ticker="SPY")
    working = Order.objects.get(signal=signal, leg="exit")
    assert working.status == OrderStatus.SUBMITTED

    # TWS releases fills a second from now: the cancel is confirmed before, the replacement fills after.
    release = threading.Timer(1.0, sim.hold_fills, args=(False,))
    release.start()
    replaced = services.order_replace(order_id=working.pk, limit_price=Decimal("1.85"), by="ops")
    release.join()

    working.refresh_from_db()
    assert working.status == OrderStatus.CANCELLED and "cancelled" in working.reject_reason
    assert (replaced.attempt, replaced.limit_price, replaced.status) == (2, Decimal("1.85"), OrderStatus.FILLED)
    trade.refresh_from_db()
    assert trade.status == "closed" and trade.exit_price == Decimal("1.9")
    statuses = {o["order_ref"]: o["status"] for o in sim.orders()}
    assert statuses[working.client_order_id] == "Cancelled" and statuses[replaced.client_order_id] == "Filled"
    with pytest.raises(ValueError, match="entry"):
        services.order_replace(
            order_id=Order.objects.get(signal=signal, leg="entry").pk, limit_price=Decimal("1"), by="ops"
        )


def test_an_order_the_book_ended_but_ib_still_works_is_flagged(sim):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=2)
    quote_both(sim, signal.option_symbol, bid="1.10", ask="1.20")
    sim.hold_fills(True)
    review.delay(signal.signal_id)
    order = Order.objects.get(signal=signal)
    assert order.status == OrderStatus.SUBMITTED
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.REJECTED)  # the book went wrong

    process_gateway().reconcile()

    issue = ReconciliationIssue.objects.get(kind="status_mismatch", key=order.client_order_id)
    assert (issue.broker_value, issue.platform_value) == ("Submitted", "rejected")
    assert sim.orders()[0]["status"] == "Submitted"  # nothing cancelled behind the operator's back
