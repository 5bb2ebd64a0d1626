"""``manage.py ib_listener`` as a real process against the TWS simulator: durable commands, a SIGKILL mid-order,
a restart that reconciles, and a connection dropped between placing and acknowledging.  Nothing lost, nothing
doubled, at the simulator and in the database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from apps.core import clock
from apps.core.bench import database_url, processes_stop
from apps.execution import services
from apps.execution.ib.simulator import TWSSimulator
from apps.execution.models import BrokerCommand, Fill, Order, OrderStatus, Position, ReconciliationIssue
from apps.risk.models import RiskDecision
from apps.risk.services import limits_active
from tests.risk.factories import SignalFactory, put_quote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = 31


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(autouse=True)
def _wall_clock_like_the_listener():
    # The listener process runs on the wall clock; so does this side of the test (orders, commands, quotes).
    clock.use_wall_clock()


@pytest.fixture
def sim(settings) -> Iterator[TWSSimulator]:
    if not settings.DATABASE_IS_POSTGRES or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    simulator = TWSSimulator(port=0).start()
    settings.BROKER = "ib"
    settings.CELERY_TASK_ALWAYS_EAGER = False  # the listener transport: commands for the ib_listener process
    settings.IB_ACK_TIMEOUT_SECONDS = 15.0
    yield simulator
    simulator.stop()


@pytest.fixture
def listeners(sim, tmp_path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        REDIS_URL=str(settings.REDIS_URL),
        TP_TASKS_EAGER="1",  # the listener applies TWS's reports itself (inline tasks), no worker needed
        BROKER="ib",
        IB_HOST="127.0.0.1",
        IB_PORT=str(sim.port),
        IB_CLIENT_ID=str(CLIENT_ID),
        IB_BACKOFF_MIN_SECONDS="0.2",
        IB_BACKOFF_MAX_SECONDS="1",
        IB_ACK_TIMEOUT_SECONDS="5",
        LOG_LEVEL="info",
    )

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"ib_listener-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "ib_listener"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        started.append(proc)
        wait_for(lambda: sim.connections() == 1, timeout=30, what="ib_listener to connect")
        return proc

    yield start
    processes_stop(started)


def approved(*, strike: str, quantity: int = 2) -> RiskDecision:
    signal = SignalFactory(strike=Decimal(strike), limit_price=Decimal("1.20"), quantity_hint=quantity)
    return RiskDecision.objects.create(
        signal=signal,
        limits=limits_active(),
        approved=True,
        quantity=quantity,
        limit_price=Decimal("1.26"),
        checks=[],
        reason="approved for the test",
        account={},
        decided_at=clock.now(),
    )


def market(sim: TWSSimulator, decision: RiskDecision) -> str:
    symbol = decision.signal.option_symbol
    sim.set_quote(symbol, Decimal("1.10"), Decimal("1.20"))
    put_quote(symbol, bid="1.10", ask="1.20", ts=clock.now())
    return symbol


def test_a_listener_killed_mid_order_and_restarted_loses_nothing_and_doubles_nothing(
    sim, listeners, settings, redis_store
):
    first = listeners()
    a = approved(strike="600")
    symbol_a = market(sim, a)
    sim.hold_fills(True)

    order_a = services.order_submit(decision_id=a.pk)
    assert order_a is not None and order_a.status == OrderStatus.SUBMITTED
    command_a = BrokerCommand.objects.get(order=order_a)
    assert command_a.status == "done" and command_a.result["accepted"] is True
    assert [o["order_ref"] for o in sim.orders()] == [order_a.client_order_id]

    # SIGKILL: no goodbye.  While no listener runs, IB fills order A and a new order B is commanded.
    first.kill()
    first.wait(10)
    wait_for(lambda: sim.connections() == 0, timeout=10, what="the killed listener's socket to close")
    sim.hold_fills(False)
    wait_for(lambda: sim.orders()[0]["status"] == "Filled", timeout=5, what="the simulator to fill A")
    b = approved(strike="601", quantity=3)
    symbol_b = market(sim, b)
    settings.IB_ACK_TIMEOUT_SECONDS = 0.5
    order_b = services.order_submit(decision_id=b.pk)
    assert order_b is not None and order_b.status == OrderStatus.SUBMITTED
    assert BrokerCommand.objects.get(order=order_b).status == "queued"  # waits, durably, for a listener

    listeners()
    wait_for(
        lambda: set(Order.objects.values_list("status", flat=True)) == {OrderStatus.FILLED},
        timeout=30,
        what="both orders filled in the book",
    )
    at_broker = sim.orders()
    assert sorted(o["order_ref"] for o in at_broker) == sorted([order_a.client_order_id, order_b.client_order_id])
    assert Fill.objects.count() == 2 == len(sim.executions())
    assert set(Fill.objects.values_list("exec_id", flat=True)) == {e["exec_id"] for e in sim.executions()}
    for symbol in (symbol_a, symbol_b):
        assert Position.objects.get(option_symbol=symbol).quantity == sim.positions()[symbol]["position"]
    assert "adopted at reconciliation" in Order.objects.get(pk=order_a.pk).logs.get(to_status="filled").detail
    wait_for(
        lambda: set(BrokerCommand.objects.values_list("status", flat=True)) == {"done"},
        timeout=10,
        what="both commands answered",
    )
    assert not ReconciliationIssue.objects.filter(resolved=False).exists()
    # The listener keeps the broker's account for the risk manager: IB's net liquidation, cash and margin.
    # The account is asked for again after each fill, so it converges on the broker's values after both fills.
    wait_for(
        lambda: (
            Decimal(redis_store.hget("risk:account:broker", "NetLiquidation") or "0")
            == sim.account_values()["NetLiquidation"]
        ),
        timeout=10,
        what="account values after both fills",
    )
    account = redis_store.hgetall("risk:account:broker")
    assert {"BuyingPower", "MaintMarginReq", "TotalCashValue", "updated_at"} <= set(account)


def test_a_connection_dropped_between_placing_and_acknowledging_is_sent_again_exactly_once(sim, listeners):
    listeners()
    c = approved(strike="602")
    market(sim, c)
    sim.drop_on_next_place(accept=False)  # TWS never saw it: the listener must send it again, once

    order = services.order_submit(decision_id=c.pk)

    assert order is not None
    wait_for(lambda: Order.objects.get(pk=order.pk).status == OrderStatus.FILLED, timeout=30, what="the order to fill")
    assert [o["order_ref"] for o in sim.orders()] == [order.client_order_id]
    assert Order.objects.count() == 1 and Fill.objects.count() == 1
    placed = [fields for msg_id, fields in sim.received() if msg_id == 3]
    assert len(placed) == 2 and placed[0][0] != placed[1][0]  # the same orderRef under a new order id
    wait_for(lambda: BrokerCommand.objects.get(order=order).status == "done", timeout=10, what="the answer")


def test_a_connection_dropped_after_ib_accepted_is_not_sent_twice(sim, listeners):
    listeners()
    d = approved(strike="603")
    market(sim, d)
    sim.drop_on_next_place(accept=True)  # TWS took and filled it; the acknowledgement never arrived

    order = services.order_submit(decision_id=d.pk)

    assert order is not None
    wait_for(lambda: Order.objects.get(pk=order.pk).status == OrderStatus.FILLED, timeout=30, what="the order to fill")
    assert [o["order_ref"] for o in sim.orders()] == [order.client_order_id]
    assert Fill.objects.count() == 1 == len(sim.executions())
    assert len([1 for msg_id, _ in sim.received() if msg_id == 3]) == 1
