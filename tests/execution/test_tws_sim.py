"""The TWS simulator, driven by the real ibapi client over loopback sockets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibapi.decoder import Decoder
from ibapi.execution import ExecutionFilter
from ibapi.wrapper import EWrapper

from apps.execution.ib.simulator import TWSSimulator, messages
from apps.execution.ib.simulator.instruments import con_id_for, instrument_for_key
from apps.execution.ib.simulator.records import SimExecution, SimOrder
from tests.execution.tws_harness import RecordingClient, option_contract, order

OCC = "SPY261127C00600000"
OCC_PUT = "SPY261127P00590000"
CALL = ("SPY", "20261127", "C", 600.0)
PUT = ("SPY", "20261127", "P", 590.0)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[TWSSimulator]:
    simulator = TWSSimulator(
        spread_share=Decimal("1"), commission_per_contract=Decimal("0.65"), starting_cash=Decimal("100000")
    ).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def clients() -> Iterator[list[RecordingClient]]:
    started: list[RecordingClient] = []
    yield started
    for client in started:
        client.stop()


def connect(sim: TWSSimulator, clients: list[RecordingClient], client_id: int = 7, **kwargs: Any) -> RecordingClient:
    client = RecordingClient()
    clients.append(client)
    return client.start(sim.port, client_id, **kwargs)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def place(client: RecordingClient, contract: tuple[str, str, str, float], *args: Any, **kwargs: Any) -> int:
    order_id = client.take_id()
    client.placeOrder(order_id, option_contract(*contract), order(*args, **kwargs))
    return order_id


def status(client: RecordingClient, order_id: int, wanted: str) -> tuple[Any, ...]:
    return client.wait_for("orderStatus", lambda oid, st, *rest: oid == order_id and st == wanted)


# --- the wire ---------------------------------------------------------------------------------------------------------


class _Sink(EWrapper):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if callable(attribute) and not name.startswith("_") and name in EWrapper.__dict__:

            def record(*args: Any) -> None:
                super(_Sink, self).__getattribute__("calls").append(name)

            return record
        return attribute


def _decode_exactly(fields: list[str]) -> str:
    """Decode ``fields`` with the 9.81 decoder at 157; the callback name, failing unless every field was read."""
    sink = _Sink()
    decoder = Decoder(sink, 157)
    encoded = [field.encode() for field in fields]
    info = decoder.msgId2handleInfo[int(fields[0])]
    if info.wrapperMeth is not None:
        decoder.interpret(tuple(encoded))  # fixed count: a wrong count is dropped, so no callback
    else:
        remaining = iter(encoded)
        info.processMeth(decoder, remaining)
        leftover = list(remaining)
        assert leftover == [], f"{len(leftover)} fields left unread in {fields[0]}"
    assert len(sink.calls) >= 1, f"message {fields} produced no callback"
    return sink.calls[0]


def test_every_message_the_simulator_sends_decodes_with_exactly_its_field_count() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    instrument = instrument_for_key(OCC)
    sim_order = SimOrder(
        order_id=5, client_id=7, perm_id=1000000001, order_ref="ref-1", key=OCC, action="BUY", quantity=2,
        order_type="LMT", tif="DAY", lmt_price=Decimal("1.10"), aux_price=None, parent_id=0, oca_group="",
        oca_type=0, transmit=True, account="DU1", exchange="SMART", status="Filled", created_at=now, filled=2,
        avg_fill_price=Decimal("1.1"), completed_at=now,
    )  # fmt: skip
    execution = SimExecution(
        exec_id="x.1", order_id=5, client_id=7, perm_id=1000000001, order_ref="ref-1", key=OCC, side="BOT", shares=2,
        price=Decimal("1.1"), commission=Decimal("1.3"), realized_pnl=None, cum_qty=2, avg_price=Decimal("1.1"),
        time=now,
    )  # fmt: skip
    open_fields = messages.open_order(sim_order, instrument)
    completed_fields = messages.completed_order(sim_order, instrument)
    assert len(open_fields) == 120
    assert len(completed_fields) == 92
    expected = {
        "openOrder": open_fields,
        "completedOrder": completed_fields,
        "orderStatus": messages.order_status(sim_order),
        "execDetails": messages.execution_data(-1, execution, instrument, "DU1"),
        "commissionReport": messages.commission_report(execution),
        "position": messages.position_data("DU1", instrument, 2, Decimal("110")),
        "tickPrice": messages.tick_price(3, 1, Decimal("1.05"), 1, True),
        "tickSize": messages.tick_size(3, 0, 1),
        "error": messages.error(-1, 2104, "Market data farm connection is OK:usfarm"),
        "nextValidId": messages.next_valid_id(9),
        "managedAccounts": messages.managed_accounts("DU1"),
        "currentTime": messages.current_time(1_700_000_000),
        "openOrderEnd": messages.open_order_end(),
        "execDetailsEnd": messages.execution_data_end(4),
        "contractDetailsEnd": messages.contract_data_end(4),
        "tickSnapshotEnd": messages.tick_snapshot_end(4),
        "positionEnd": messages.position_end(),
        "accountSummary": messages.account_summary(1, "DU1", "NetLiquidation", "100000", "USD"),
        "accountSummaryEnd": messages.account_summary_end(1),
        "completedOrdersEnd": messages.completed_orders_end(),
    }
    for callback, fields in expected.items():
        assert _decode_exactly(fields) == callback


def test_execution_time_is_new_york_with_two_spaces_and_conids_are_stable() -> None:
    from datetime import UTC, datetime

    assert messages.execution_time(datetime(2026, 11, 20, 14, 30, 5, tzinfo=UTC)) == "20261120  09:30:05"
    assert messages.connection_time(datetime(2026, 7, 1, 13, 0, tzinfo=UTC)) == "20260701 09:00:00 EDT"
    assert con_id_for(OCC) == con_id_for(OCC) != con_id_for(OCC_PUT)
    assert instrument_for_key(OCC).local_symbol == "SPY   261127C00600000"


# --- connecting -------------------------------------------------------------------------------------------------------


def test_handshake_delivers_next_id_managed_accounts_and_farm_ok_notices(sim, clients) -> None:
    client = connect(sim, clients)
    assert client.wait_for("managedAccounts") == ("DU1234567",)
    assert client.next_id() == 1
    for code in (2104, 2106, 2158):
        client.wait_for("error", lambda req, c, text, code=code: req == -1 and c == code)
    assert client.serverVersion() == 157
    wait_until(lambda: sim.connections() == 1)
    assert sim.received()[0][0] == 71  # START_API first, nothing before it


def test_a_second_connection_with_a_client_id_in_use_gets_326_and_is_closed(sim, clients) -> None:
    connect(sim, clients, client_id=3)
    second = connect(sim, clients, client_id=3, wait_ready=False)
    second.wait_for("error", lambda req, code, text: code == 326)
    second.wait_for("connectionClosed")
    assert second.named("nextValidId") == []
    assert sim.connections() == 1


# --- orders and fills -------------------------------------------------------------------------------------------------


def test_marketable_limit_option_order_fills_and_updates_positions_and_cash(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"), Decimal("1.05"))
    client = connect(sim, clients)
    order_id = place(client, CALL, "BUY", 2, limit=Decimal("1.20"), ref="sig-1-entry")

    _, contract, placed, state = client.wait_for("openOrder", lambda oid, *rest: oid == order_id)
    assert (placed.orderRef, contract.conId, state.status) == ("sig-1-entry", con_id_for(OCC), "Submitted")
    filled = status(client, order_id, "Filled")
    assert filled[2:5] == (2.0, 0.0, 1.1)
    _, exec_contract, execution = client.wait_for("execDetails", lambda req, c, e: e.orderId == order_id)
    assert (execution.orderRef, execution.side, execution.shares, execution.price) == ("sig-1-entry", "BOT", 2.0, 1.1)
    assert re.fullmatch(r"\d{8}  \d{2}:\d{2}:\d{2}", execution.time)
    assert exec_contract.conId == con_id_for(OCC)
    (report,) = client.wait_for("commissionReport", lambda r: r.execId == execution.execId)
    assert report.commission == pytest.approx(1.30)
    assert report.realizedPNL > 1e300  # IB's "unset" on an opening fill

    client.reqPositions()
    client.wait_for("positionEnd")
    (_, pos_contract, quantity, avg_cost) = client.wait_for(
        "position", lambda a, c, p, cost: c.conId == con_id_for(OCC)
    )
    assert (pos_contract.symbol, pos_contract.secType, quantity, avg_cost) == ("SPY", "OPT", 2.0, 110.0)

    client.reqAccountSummary(9001, "All", "TotalCashValue,NetLiquidation")
    client.wait_for("accountSummaryEnd")
    values = {args[2]: args[3] for args in client.named("accountSummary") if args[0] == 9001}
    assert Decimal(values["TotalCashValue"]) == Decimal("100000") - Decimal("220") - Decimal("1.30")
    assert Decimal(values["NetLiquidation"]) == Decimal("100000") - Decimal("1.30") - Decimal("10")  # marked at mid
    assert sim.positions()[OCC] == {"position": 2, "avg_cost": Decimal("110")}


def test_closing_fill_reports_realized_pnl_net_of_its_commission(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    status(client, place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="open"), "Filled")
    sim.set_quote(OCC, Decimal("1.50"), Decimal("1.60"))
    close_id = place(client, CALL, "SELL", 1, limit=Decimal("1.40"), ref="close")
    status(client, close_id, "Filled")
    _, _, execution = client.wait_for("execDetails", lambda req, c, e: e.orderId == close_id)
    (report,) = client.wait_for("commissionReport", lambda r: r.execId == execution.execId)
    assert report.realizedPNL == pytest.approx(40 - 0.65)
    assert sim.positions()[OCC]["position"] == 0
    assert sim.account_values()["RealizedPnL"] == Decimal("39.35")


def test_reject_next_sends_error_201_and_cancelled(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    sim.reject_next("insufficient funds")
    order_id = place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="rejected")
    _, _, text = client.wait_for("error", lambda req, code, text: req == order_id and code == 201)
    assert text == "Order rejected - reason:insufficient funds"
    status(client, order_id, "Cancelled")
    assert sim.executions() == []
    # The next order is not rejected.
    status(client, place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="accepted"), "Filled")


def test_default_ibapi_order_with_etrade_only_is_rejected_10268(sim, clients) -> None:
    client = connect(sim, clients)
    default = order("BUY", 1, limit=Decimal("1"))
    default.eTradeOnly = True
    order_id = client.take_id()
    client.placeOrder(order_id, option_contract(*CALL), default)
    client.wait_for("error", lambda req, code, text: req == order_id and code == 10268)
    status(client, order_id, "Cancelled")


def test_zero_quantity_is_rejected_201(sim, clients) -> None:
    client = connect(sim, clients)
    order_id = place(client, CALL, "BUY", 0, limit=Decimal("1"))
    client.wait_for("error", lambda req, code, text: req == order_id and code == 201)


def test_cancel_of_a_working_order_sends_cancelled_and_202_and_unknown_or_filled_ids_are_refused(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    resting = place(client, CALL, "BUY", 1, limit=Decimal("0.50"), ref="resting")
    status(client, resting, "Submitted")
    client.cancelOrder(resting)
    status(client, resting, "Cancelled")
    client.wait_for("error", lambda req, code, text: req == resting and code == 202)

    client.cancelOrder(4242)
    client.wait_for("error", lambda req, code, text: req == 4242 and code == 10147)

    filled = place(client, CALL, "BUY", 1, limit=Decimal("1.10"))
    status(client, filled, "Filled")
    client.cancelOrder(filled)
    client.wait_for("error", lambda req, code, text: req == filled and code == 10148)


def test_placing_again_with_an_open_order_id_modifies_it(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    order_id = place(client, CALL, "BUY", 1, limit=Decimal("0.80"), ref="modify-me")
    status(client, order_id, "Submitted")
    client.placeOrder(order_id, option_contract(*CALL), order("BUY", 1, limit=Decimal("1.15"), ref="modify-me"))
    client.wait_for("openOrder", lambda oid, c, o, s: oid == order_id and o.lmtPrice == 1.15)
    status(client, order_id, "Filled")
    assert len(sim.orders()) == 1
    assert sim.orders()[0]["lmt_price"] == Decimal("1.15")


def test_a_lower_used_order_id_is_a_duplicate_103(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    status(client, place(client, CALL, "BUY", 1, limit=Decimal("1.10")), "Filled")
    status(client, place(client, CALL, "BUY", 1, limit=Decimal("1.10")), "Filled")
    client.placeOrder(1, option_contract(*CALL), order("BUY", 1, limit=Decimal("1.10")))
    client.wait_for("error", lambda req, code, text: req == 1 and code == 103)
    assert len(sim.orders()) == 2


def test_partial_fill_of_an_ioc_order_cancels_the_remainder(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    sim.partial_fill_next(2)
    order_id = place(client, CALL, "BUY", 5, limit=Decimal("1.10"), ref="ioc", tif="IOC")
    client.wait_for("orderStatus", lambda oid, st, filled, rem, *rest: oid == order_id and filled == 2 and rem == 3)
    cancelled = status(client, order_id, "Cancelled")
    assert cancelled[2] == 2.0
    assert [e["shares"] for e in sim.executions()] == [2]
    assert sim.positions()[OCC]["position"] == 2


def test_partial_fill_of_a_day_order_keeps_working_and_fills_the_rest_on_the_next_quote(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    sim.partial_fill_next(1)
    order_id = place(client, CALL, "BUY", 3, limit=Decimal("1.10"))
    client.wait_for(
        "orderStatus", lambda oid, st, filled, rem, *rest: oid == order_id and st == "Submitted" and filled == 1
    )
    assert sim.orders()[0]["status"] == "Submitted"
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.08"))
    filled = status(client, order_id, "Filled")
    assert filled[4] == pytest.approx((1.10 + 2 * 1.08) / 3)


def test_bracket_children_activate_after_the_parent_fills_and_oca_cancels_the_sibling(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    parent = place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="b-entry", transmit=False)
    status(client, parent, "PreSubmitted")
    assert sim.executions() == []
    target = place(client, CALL, "SELL", 1, limit=Decimal("1.60"), ref="b-target", transmit=False,
                   parent_id=parent, oca_group="oca-b")  # fmt: skip
    stop = place(client, CALL, "SELL", 1, "STP", aux=Decimal("0.70"), ref="b-stop", parent_id=parent,
                 oca_group="oca-b")  # fmt: skip
    status(client, parent, "Filled")
    status(client, target, "Submitted")
    status(client, stop, "Submitted")
    sim.set_quote(OCC, Decimal("1.70"), Decimal("1.80"))
    status(client, target, "Filled")
    status(client, stop, "Cancelled")
    by_ref = {o["order_ref"]: o for o in sim.orders()}
    assert (by_ref["b-target"]["avg_fill_price"], by_ref["b-stop"]["status"]) == (Decimal("1.7"), "Cancelled")
    assert sim.positions()[OCC]["position"] == 0


def test_stop_order_triggers_when_the_mark_crosses_and_moc_fills_at_the_closing_auction(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    status(client, place(client, CALL, "BUY", 2, "MKT", ref="entry"), "Filled")
    stop = place(client, CALL, "SELL", 1, "STP", aux=Decimal("0.80"), ref="stop")
    moc = place(client, CALL, "SELL", 1, "MOC", ref="moc")
    status(client, moc, "Submitted")
    sim.set_quote(OCC, Decimal("0.85"), Decimal("0.95"))
    assert sim.orders()[1]["status"] == "Submitted"
    sim.set_quote(OCC, Decimal("0.70"), Decimal("0.80"))
    status(client, stop, "Filled")
    assert sim.orders()[1]["avg_fill_price"] == Decimal("0.70")
    assert sim.orders()[2]["status"] == "Submitted"
    assert sim.closing_auction() == 1
    assert status(client, moc, "Filled")[4] == 0.75


def test_hold_fills_acks_orders_and_fills_them_on_release(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    sim.hold_fills(True)
    order_id = place(client, CALL, "BUY", 1, limit=Decimal("1.10"))
    status(client, order_id, "Submitted")
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    assert sim.executions() == []
    sim.hold_fills(False)
    status(client, order_id, "Filled")


def test_set_delay_holds_back_the_answer_to_place_order(sim, clients) -> None:
    client = connect(sim, clients)
    sim.set_delay(0.4)
    started = time.monotonic()
    status(client, place(client, CALL, "BUY", 1, limit=Decimal("1.00")), "Submitted")
    assert time.monotonic() - started >= 0.4


def test_a_disconnected_clients_orders_keep_working(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients, client_id=11)
    order_id = place(client, CALL, "BUY", 1, limit=Decimal("1.05"), ref="works-alone")
    status(client, order_id, "Submitted")
    client.stop()
    wait_until(lambda: sim.connections() == 0)
    sim.set_quote(OCC, Decimal("0.95"), Decimal("1.05"))
    assert sim.orders()[0]["status"] == "Filled"
    again = connect(sim, clients, client_id=11)
    assert again.next_id() == order_id + 1
    again.reqExecutions(5, ExecutionFilter())
    again.wait_for("execDetailsEnd")
    assert [e.orderRef for _, _, e in again.named("execDetails")] == ["works-alone"]


# --- lost messages ----------------------------------------------------------------------------------------------------


def test_drop_on_next_place_accepted_the_order_exists_once_and_is_found_by_order_ref_after_reconnect(
    sim, clients
) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    sim.set_quote(OCC_PUT, Decimal("2.00"), Decimal("2.20"))
    client = connect(sim, clients, client_id=5)
    sim.drop_on_next_place(accept=True)
    filled_id = place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="lost-ack-fill")
    client.wait_for("connectionClosed")
    assert [name for name, _ in client.events if name in ("openOrder", "orderStatus", "execDetails")] == []

    again = connect(sim, clients, client_id=5)
    assert again.next_id() == filled_id + 1
    sim.drop_on_next_place(accept=True)
    resting_id = again.take_id()
    again.placeOrder(resting_id, option_contract(*PUT), order("BUY", 1, limit=Decimal("1.50"), ref="lost-ack-rest"))
    again.wait_for("connectionClosed")

    third = connect(sim, clients, client_id=5)
    third.reqOpenOrders()
    third.wait_for("openOrderEnd")
    assert [args[2].orderRef for args in third.named("openOrder")] == ["lost-ack-rest"]
    third.reqExecutions(17, ExecutionFilter())
    third.wait_for("execDetailsEnd", lambda req: req == 17)
    assert [(req, e.orderRef) for req, _, e in third.named("execDetails")] == [(17, "lost-ack-fill")]
    third.reqCompletedOrders(True)
    third.wait_for("completedOrdersEnd")
    completed = third.named("completedOrder")
    assert [(o.orderRef, s.status) for _, o, s in completed] == [("lost-ack-fill", "Filled")]
    assert [o["order_ref"] for o in sim.orders()] == ["lost-ack-fill", "lost-ack-rest"]
    assert sum(1 for msg_id, _ in sim.received() if msg_id == 3) == 2


def test_drop_on_next_place_not_accepted_leaves_no_order(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients, client_id=6)
    sim.drop_on_next_place(accept=False)
    place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="never-seen")
    client.wait_for("connectionClosed")
    assert sim.orders() == [] and sim.executions() == []
    again = connect(sim, clients, client_id=6)
    again.reqOpenOrders()
    again.wait_for("openOrderEnd")
    assert again.named("openOrder") == []


def test_drop_connections_closes_every_client_and_send_error_reaches_every_client(sim, clients) -> None:
    first, second = connect(sim, clients, client_id=1), connect(sim, clients, client_id=2)
    sim.send_error(1101, "Connectivity between IB and TWS has been restored - data lost.")
    for client in (first, second):
        client.wait_for("error", lambda req, code, text: req == -1 and code == 1101)
    sim.drop_connections()
    first.wait_for("connectionClosed")
    second.wait_for("connectionClosed")
    wait_until(lambda: sim.connections() == 0)


# --- market data and other requests -----------------------------------------------------------------------------------


def test_market_data_ticks_on_subscription_and_streams_on_every_quote(sim, clients) -> None:
    client = connect(sim, clients)
    client.reqMktData(21, option_contract(*PUT), "", False, False, [])
    client.reqMktData(22, option_contract(*CALL), "", False, False, [])
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"), Decimal("1.05"))
    client.wait_for("tickPrice", lambda req, tick, price: req == 22 and tick == 4 and price == 1.05)
    ticks = {tick: price for req, tick, price in client.named("tickPrice") if req == 22}
    assert ticks == {1: 1.0, 2: 1.1, 4: 1.05}
    client.wait_for("tickSize", lambda req, tick, size: req == 22 and tick == 0)  # bid size fired by the client
    assert [args for args in client.named("tickPrice") if args[0] == 21] == []  # no quote, nothing yet

    sim.set_quote(OCC, Decimal("1.20"), Decimal("1.30"), Decimal("1.25"))
    client.wait_for("tickPrice", lambda req, tick, price: req == 22 and tick == 1 and price == 1.2)
    client.cancelMktData(22)
    client.reqMktData(23, option_contract(*CALL), "", True, False, [])
    client.wait_for("tickSnapshotEnd", lambda req: req == 23)
    client.reqCurrentTime()
    (epoch,) = client.wait_for("currentTime")
    assert abs(epoch - time.time()) < 5
    client.reqContractDetails(24, option_contract(*CALL))
    client.wait_for("contractDetailsEnd", lambda req: req == 24)


def test_global_cancel_cancels_every_open_order(sim, clients) -> None:
    client = connect(sim, clients)
    first = place(client, CALL, "BUY", 1, limit=Decimal("0.50"))
    second = place(client, PUT, "BUY", 1, limit=Decimal("0.50"))
    status(client, second, "Submitted")
    client.reqGlobalCancel()
    status(client, first, "Cancelled")
    status(client, second, "Cancelled")
    client.reqIds(1)
    client.wait_for("nextValidId", lambda oid: oid == second + 1)


def test_external_quotes_are_polled_and_the_injected_clock_stamps_executions(clients) -> None:
    from datetime import UTC, datetime

    from apps.execution.brokers.base import BrokerQuote

    instant = datetime(2026, 11, 20, 14, 30, 5, tzinfo=UTC)
    market: dict[str, BrokerQuote] = {}
    simulator = TWSSimulator(quotes=market.get, clock=lambda: instant, quote_poll_seconds=0.05).start()
    try:
        client = connect(simulator, clients)
        order_id = place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="polled")
        status(client, order_id, "Submitted")  # no quote: the order rests
        market[OCC] = BrokerQuote(OCC, Decimal("1.00"), Decimal("1.10"), None, instant, "test")
        status(client, order_id, "Filled")
        _, _, execution = client.wait_for("execDetails", lambda req, c, e: e.orderId == order_id)
        assert execution.time == "20261120  09:30:05"
        assert simulator.executions()[0]["time"] == instant
    finally:
        simulator.stop()


def test_position_updates_stream_to_clients_that_requested_positions(sim, clients) -> None:
    sim.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
    client = connect(sim, clients)
    client.reqPositions()
    client.wait_for("positionEnd")
    assert client.named("position") == []
    status(client, place(client, CALL, "BUY", 3, "MKT"), "Filled")
    _, contract, quantity, avg_cost = client.wait_for("position")
    assert (contract.conId, quantity, avg_cost) == (con_id_for(OCC), 3.0, 110.0)
    client.cancelPositions()


# --- persistence ------------------------------------------------------------------------------------------------------


def test_a_restart_with_state_path_keeps_next_ids_orders_and_positions(tmp_path: Path, clients) -> None:
    state = tmp_path / "tws.json"
    first = TWSSimulator(starting_cash=Decimal("5000"), commission_per_contract=Decimal("1"), state_path=state).start()
    try:
        first.set_quote(OCC, Decimal("1.00"), Decimal("1.10"))
        client = connect(first, clients, client_id=4)
        status(client, place(client, CALL, "BUY", 2, limit=Decimal("1.10"), ref="kept-fill"), "Filled")
        resting = place(client, CALL, "BUY", 1, limit=Decimal("0.50"), ref="kept-rest")
        status(client, resting, "Submitted")
    finally:
        first.stop()
    second = TWSSimulator(state_path=state).start()
    try:
        assert second.positions()[OCC] == {"position": 2, "avg_cost": Decimal("110")}
        assert second.account_values()["TotalCashValue"] == Decimal("5000") - Decimal("220") - Decimal("2")
        again = connect(second, clients, client_id=4)
        assert again.next_id() == resting + 1
        again.reqOpenOrders()
        again.wait_for("openOrderEnd")
        assert [args[2].orderRef for args in again.named("openOrder")] == ["kept-rest"]
        again.reqPositions()
        again.wait_for("positionEnd")
        assert [args[2] for args in again.named("position")] == [2.0]
    finally:
        second.stop()


def test_simulator_refuses_a_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TWSSimulator(host="0.0.0.0")


# --- the management command -------------------------------------------------------------------------------------------


def _http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_tws_sim_command_serves_ibapi_and_http_control_until_sigterm(clients) -> None:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "tws_sim", "--port", "0", "--control-port", "0", "--account", "DU7654321"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"on 127\.0\.0\.1:(\d+), control http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        port, control = int(match.group(1)), f"http://127.0.0.1:{match.group(2)}"
        assert _http(f"{control}/health")["ok"] is True
        _http(f"{control}/quote", {"key": OCC, "bid": "1.00", "ask": "1.10", "last": "1.05"})

        client = RecordingClient()
        clients.append(client)
        client.start(port, 9)
        assert client.wait_for("managedAccounts") == ("DU7654321",)
        status(client, place(client, CALL, "BUY", 1, limit=Decimal("1.10"), ref="cmd"), "Filled")
        orders = _http(f"{control}/orders")
        assert [(o["order_ref"], o["status"], Decimal(o["avg_fill_price"])) for o in orders] == [
            ("cmd", "Filled", Decimal("1.1"))
        ]
        assert _http(f"{control}/positions")[OCC]["position"] == 1
        assert _http(f"{control}/account")["TotalCashValue"] == "99889.35"
        with pytest.raises(urllib.error.HTTPError) as refused:
            _http(f"{control}/hold_fills", {"on": "maybe"})
        assert refused.value.code == 400
        _http(f"{control}/error", {"code": 1100, "message": "Connectivity between IB and TWS has been lost."})
        client.wait_for("error", lambda req, code, text: code == 1100)
        client.stop()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert returncode == 0, process.stderr.read() if process.stderr else ""
