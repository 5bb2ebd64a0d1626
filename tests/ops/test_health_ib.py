"""``manage.py health`` with the trading broker: IB connected, disconnected or silent (the health fails when orders
cannot reach it), what waits for an operator (warnings only), and the paper broker."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from apps.core import clock
from apps.execution.models import BrokerCommand, BrokerMessage, Order, OrderStatus, ReconciliationIssue
from apps.ops.selectors import health_snapshot
from apps.risk.selectors import BROKER_STATE_KEY
from tests.risk.factories import SignalFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("requires_real_services")]


@pytest.fixture
def ib(settings):
    settings.BROKER = "ib"


def report(redis_store, *, connected: bool, age: timedelta = timedelta(seconds=1), detail: str = "connected") -> None:
    """The hash the IB listener's gateway writes (every second while it runs)."""
    redis_store.hset(
        BROKER_STATE_KEY,
        mapping={
            "broker": "ib",
            "connected": "1" if connected else "0",
            "since": (clock.now() - age).isoformat(),
            "detail": detail,
            "host": "127.0.0.1:7497",
            "client_id": "7",
            "account": "DU1234567",
        },
    )


def health(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("health", *args, stdout=out)
    except SystemExit as exited:
        return int(exited.code or 0), out.getvalue()
    return 0, out.getvalue()


def command(*, status: str, created_ago: int, sent_ago: int | None = None) -> BrokerCommand:
    signal = SignalFactory()
    now = clock.now()
    order = Order.objects.create(
        client_order_id=f"tp-{signal.signal_id}",
        signal=signal,
        leg=Order.Leg.ENTRY,
        option_symbol=signal.option_symbol,
        side=Order.Side.BUY,
        quantity=1,
        limit_price=Decimal("1.20"),
        status=OrderStatus.PENDING,
        broker="ib",
        created_at=now - timedelta(seconds=created_ago),
    )
    return BrokerCommand.objects.create(
        kind=BrokerCommand.Kind.PLACE,
        order=order,
        status=status,
        created_at=now - timedelta(seconds=created_ago),
        sent_at=None if sent_ago is None else now - timedelta(seconds=sent_ago),
    )


def test_ib_connected_is_healthy_and_shows_the_account_and_connection(ib, redis_store):
    report(redis_store, connected=True)

    status, text = health()

    assert status == 0
    assert "FAILING" not in text
    ib_line = next(line for line in text.splitlines() if line.startswith("  ib "))
    assert ib_line.startswith("  ib           connected, reported ")
    assert "account DU1234567, client 7 at 127.0.0.1:7497" in ib_line
    assert "STALE" not in ib_line
    assert "ib issues" not in text and "ib alerts" not in text and "ib commands" not in text


def test_ib_disconnected_fails_the_health_with_the_reason(ib, redis_store):
    report(redis_store, connected=False, detail="disconnected: the connection closed")

    status, text = health()

    assert status == 1
    assert text.splitlines()[0].endswith(": FAILING")
    assert "  ib           FAILING: DISCONNECTED, reported " in text
    assert "disconnected: the connection closed" in text
    assert "database     ok" in text  # the rest of the report is still there


def test_ib_without_any_connection_state_fails_the_health(ib, redis_store):
    status, text = health()

    assert status == 1
    assert "  ib           FAILING: the IB listener has reported no connection state" in text
    assert "execution:broker:state is missing" in text


def test_ib_state_in_json_says_connected_and_counts_what_waits(ib, redis_store):
    report(redis_store, connected=True)

    status, text = health("--json")

    data = json.loads(text)
    assert status == 0 and data["ok"] is True
    assert (data["trading_broker"], data["trading_broker_ok"]) == ("ib", True)
    assert data["ib"]["state"]["connected"] is True and data["ib"]["state"]["account"] == "DU1234567"
    assert data["ib"]["open_reconciliation_issues"] == 0
    assert data["ib"]["unacknowledged_alerts"] == 0
    assert data["ib"]["stuck_commands"] == 0


def test_open_issues_alerts_and_stuck_commands_are_warnings_that_do_not_fail_the_health(ib, redis_store):
    report(redis_store, connected=True)
    now = clock.now()
    for key in ("SPY250610C00600000", "QQQ250610P00500000"):
        ReconciliationIssue.objects.create(
            kind=ReconciliationIssue.Kind.POSITION_MISMATCH,
            key=key,
            detail="IB 2, book 1",
            detected_at=now,
            last_seen_at=now,
        )
    ReconciliationIssue.objects.create(
        kind=ReconciliationIssue.Kind.UNKNOWN_ORDER,
        key="ib:5",
        detail="resolved already",
        detected_at=now,
        last_seen_at=now,
        resolved=True,
    )
    BrokerMessage.objects.create(code=1100, req_id=-1, message="lost", category="connectivity", alert=True, at=now)
    BrokerMessage.objects.create(
        code=2103, req_id=-1, message="farm", category="market_data", alert=True, acknowledged=True, at=now
    )
    BrokerMessage.objects.create(code=2104, req_id=-1, message="farm ok", category="info", alert=False, at=now)
    command(status=BrokerCommand.Status.QUEUED, created_ago=95)  # stuck: oldest
    command(status=BrokerCommand.Status.SENT, created_ago=120, sent_ago=45)  # stuck since it was sent
    command(status=BrokerCommand.Status.SENT, created_ago=120, sent_ago=5)  # waiting for TWS, not long
    command(status=BrokerCommand.Status.QUEUED, created_ago=2)
    command(status=BrokerCommand.Status.DONE, created_ago=600, sent_ago=600)

    status, text = health()

    assert status == 0
    assert "  ib issues    2 open reconciliation issue(s)" in text
    assert "  ib alerts    1 unacknowledged alert(s)" in text
    assert "  ib commands  2 queued or sent for more than 30 s (oldest 95.0 s): is ib_listener running?" in text
    ib = health_snapshot().ib
    assert (ib["open_reconciliation_issues"], ib["unacknowledged_alerts"], ib["stuck_commands"]) == (2, 1, 2)


def test_a_connected_state_that_stopped_being_refreshed_is_shown_stale_without_failing(ib, redis_store):
    report(redis_store, connected=True, age=timedelta(minutes=5))

    status, text = health()

    assert status == 0
    assert "STALE (no report for 30 s: is ib_listener running?)" in text
    assert health_snapshot().ib["state"]["stale"] is True


def test_the_paper_broker_is_in_process_and_never_fails_the_health(settings, redis_store):
    settings.BROKER = "paper"
    report(redis_store, connected=False)  # a leftover IB hash does not matter to the paper broker

    status, text = health()

    assert status == 0
    assert "  ib           not used (BROKER=paper): paper broker in process" in text
    snapshot = health_snapshot()
    assert (snapshot.trading_broker, snapshot.trading_broker_ok, snapshot.ib) == ("paper", True, {})
