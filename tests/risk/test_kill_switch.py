"""The kill switch: tripped by the daily loss limit by itself, flattening when configured, and from the shell."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.execution.models import Trade
from apps.ops.models import AuditLog
from apps.risk import services
from apps.risk.models import KillSwitchEvent
from apps.risk.selectors import KILL_SWITCH_KEY, kill_switch_is_on
from apps.signals.models import Signal
from tests.risk.factories import SignalFactory, open_trade_row, put_quote
from tests.risk.factories import ny as new_york
from tradingplatform.celery import app as celery_app

pytestmark = pytest.mark.django_db


def open_filled_trade(committed) -> Trade:
    """A trade opened through the pipeline (reviewed, ordered, filled by the paper broker at the ask)."""
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=new_york(10, 29))
    with committed():
        services.signal_review(signal_id=signal.signal_id)
    return Trade.objects.get(signal=signal, status=Trade.Status.OPEN)


def lose_today(amount: str) -> None:
    loser = open_trade_row(ticker="QQQ", strategy="moc")
    Trade.objects.filter(signal=loser).update(
        status=Trade.Status.CLOSED, exit_at=new_york(10, 15), exit_price=Decimal("0.10"), realized_pnl=Decimal(amount)
    )


def test_the_daily_loss_limit_trips_the_kill_switch_and_flattens_every_open_trade(committed, tasks_run, redis_store):
    trade = open_filled_trade(committed)
    lose_today("-3500")

    with committed():
        decision = services.signal_review(signal_id=SignalFactory(ticker="IWM", strategy="one_dte").signal_id)

    assert decision.approved is False
    assert {"daily_loss_limit", "kill_switch"} <= {c["check"] for c in decision.checks if not c["passed"]}
    event = KillSwitchEvent.objects.get()
    assert (event.engaged, event.by, event.flatten) == (True, "risk", True)
    assert event.reason.startswith("daily loss limit reached: today's PnL -35")
    assert redis_store.get(KILL_SWITCH_KEY) == "1"
    # The flatten pass ran as its task, after the decision committed, and closed the open trade at the bid.
    assert tasks_run.named("risk.flatten_all") == [(event.pk,)]
    trade.refresh_from_db()
    assert (trade.status, trade.exit_reason, trade.exit_price) == (Trade.Status.CLOSED, "flatten", Decimal("1.10"))
    assert event.still_open == [] and event.flattened_at == new_york(10, 30)
    assert list(AuditLog.objects.order_by("id").values_list("actor", "action")) == [
        ("risk", "risk.kill_switch.engage_flatten"),
        ("risk", "risk.flatten_all"),
    ]


def test_the_daily_loss_limit_trips_without_flattening_when_the_limits_say_so(committed, tasks_run):
    services.limits_update(by="ops", flatten_on_daily_loss=False)
    trade = open_filled_trade(committed)
    lose_today("-3500")

    with committed():
        assert services.daily_loss_guard() is True

    event = KillSwitchEvent.objects.get()
    assert (event.engaged, event.flatten) == (True, False)
    assert tasks_run.named("risk.flatten_all") == []
    trade.refresh_from_db()
    assert trade.status == Trade.Status.OPEN


def test_the_guard_after_an_exit_trips_the_switch_by_itself(committed, tasks_run):
    lose_today("-3500")

    with committed():
        assert services.daily_loss_guard() is True

    assert kill_switch_is_on() is True
    assert KillSwitchEvent.objects.get().by == "risk"
    assert len(tasks_run.named("risk.flatten_all")) == 1


def test_the_broker_accounts_worse_day_trips_the_switch_when_the_book_is_within_the_limit(redis_store):
    lose_today("-1000")  # the book: -1,000, within 3 %
    redis_store.hset(
        "risk:account:broker",
        mapping={
            "NetLiquidation": "96500",
            "BuyingPower": "96500",
            "MaintMarginReq": "0",
            "UnrealizedPnL": "-2500",
            "RealizedPnL": "-1000",
            "TotalCashValue": "96500",
            "updated_at": new_york(10, 29, 30).isoformat(),
        },
    )

    decision = services.signal_review(signal_id=SignalFactory().signal_id)

    loss = next(c for c in decision.checks if c["check"] == "daily_loss_limit")
    assert loss["passed"] is False
    assert "today's PnL -3500.00 (realized + open, from the broker)" in loss["detail"]
    assert kill_switch_is_on() is True


def test_flatten_records_what_the_broker_could_not_close(committed, redis_store):
    trade = open_filled_trade(committed)
    redis_store.delete(f"latest:uw:quote:{trade.option_symbol}")  # no quote: the paper broker refuses the exit

    with committed():
        event = services.kill_switch_engage(by="ops", reason="drill", flatten=True)

    event.refresh_from_db()
    trade.refresh_from_db()
    assert trade.status == Trade.Status.OPEN
    assert event.still_open == [{"trade_id": trade.pk, "option_symbol": trade.option_symbol, "quantity": 5}]
    flatten_audit = AuditLog.objects.get(action="risk.flatten_all")
    assert flatten_audit.detail["still_open"] == event.still_open


def test_the_flatten_pass_is_sent_to_the_execution_queue(committed, redis_store):
    celery_app.conf.task_always_eager = False
    try:
        with committed():
            event = services.kill_switch_engage(by="ops", reason="drill", flatten=True)
    finally:
        celery_app.conf.task_always_eager = True

    # kombu's Redis transport keeps each queue as a list named after it.
    assert redis_store.llen("execution") == 1
    assert redis_store.llen("risk") == 0
    message = json.loads(redis_store.lindex("execution", 0))
    assert message["headers"]["task"] == "risk.flatten_all"
    assert message["headers"]["argsrepr"] == f"({event.pk},)"


def test_no_flatten_is_sent_when_the_engagement_rolls_back(django_capture_on_commit_callbacks, tasks_run):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.kill_switch_engage(by="ops", reason="drill", flatten=True)

    assert len(callbacks) == 1  # only sent by a commit
    assert tasks_run.named("risk.flatten_all") == []


# --- manage.py kill_switch --------------------------------------------------------------------------------------------
def run(*args: str) -> str:
    out = StringIO()
    call_command("kill_switch", *args, stdout=out)
    return out.getvalue()


def test_the_kill_switch_command_engages_shows_and_releases_with_the_audit_trail(committed, redis_store):
    with committed():
        said = run("on", "--reason", "broker halt", "--by", "alice")
    assert said.strip() == "kill switch ON by alice: broker halt"
    assert redis_store.get(KILL_SWITCH_KEY) == "1"
    assert services.signal_review(signal_id=SignalFactory().signal_id).approved is False

    status = run("status")
    assert "kill switch ON" in status
    assert "broker: paper broker in process" in status
    assert "last change: engaged by alice" in status and "broker halt" in status

    with committed():
        run("off", "--reason", "resumed", "--by", "alice")
    assert redis_store.get(KILL_SWITCH_KEY) == "0"
    assert "kill switch off" in run("status")
    assert list(AuditLog.objects.order_by("id").values_list("actor", "action", "detail__reason")) == [
        ("alice", "risk.kill_switch.engage", "broker halt"),
        ("alice", "risk.kill_switch.release", "resumed"),
    ]


def test_the_kill_switch_command_flattens_on_request(committed, tasks_run):
    trade = open_filled_trade(committed)

    with committed():
        said = run("on", "--flatten", "--reason", "end of drill", "--by", "bob")

    assert "flattening every open trade" in said
    assert len(tasks_run.named("risk.flatten_all")) == 1
    trade.refresh_from_db()
    assert trade.status == Trade.Status.CLOSED
    assert "left open: nothing" in run("status")
    assert Signal.objects.get(pk=trade.signal_id).status == Signal.Status.CLOSED


def test_the_kill_switch_command_needs_a_reason_and_flattens_only_when_engaging():
    with pytest.raises(CommandError, match="needs --reason"):
        run("on", "--by", "alice")
    with pytest.raises(CommandError, match="--flatten goes with 'on' only"):
        run("off", "--flatten", "--reason", "x")
    assert not KillSwitchEvent.objects.exists()
