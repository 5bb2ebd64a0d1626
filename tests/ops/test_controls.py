"""The control layer: every control runs with its own permission and is refused without it, every attempt audited;
feeds pause their readers; the cache flush deletes only its pattern; signal overrides never bypass risk."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.core import clock
from apps.ingestion import feeds
from apps.ops.controls import CONTROLS, ControlError, ControlRefused, control_run, controls_for
from apps.ops.models import AuditLog
from tests.ops.control_scenarios import SCENARIOS, operator
from tests.risk.conftest import _session_clock, committed

__all__ = ["_session_clock", "committed"]

pytestmark = pytest.mark.django_db


def audit_of(name: str) -> list[AuditLog]:
    return list(AuditLog.objects.filter(action=f"control.{name}").order_by("id"))


def test_every_control_has_a_scenario_and_its_own_existing_permission():
    from django.contrib.auth.models import Permission

    assert set(SCENARIOS) == set(CONTROLS)
    for control in CONTROLS.values():
        app_label, codename = control.permission.split(".")
        assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists(), control


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_each_control_runs_with_its_permission_and_is_audited(name, django_user_model, committed):
    user = operator(django_user_model, "olivia", CONTROLS[name].permission)
    scenario = SCENARIOS[name]("olivia")

    with committed():
        result = control_run(name, user=user, params=scenario.params, channel="admin")

    assert result.ok, result.message
    assert scenario.done()
    [entry] = audit_of(name)
    assert entry.actor == "olivia"
    assert entry.detail["channel"] == "admin"
    assert entry.detail["outcome"] == "ok"
    assert entry.detail["result"] == result.detail


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_each_control_is_refused_without_its_permission_and_the_refusal_is_audited(name, django_user_model, committed):
    # Every permission but this control's: holding the others must not help.
    others = {c.permission for c in CONTROLS.values()} - {CONTROLS[name].permission}
    user = operator(django_user_model, "mallory", *others)
    scenario = SCENARIOS[name]("mallory")

    with committed(), pytest.raises(ControlRefused, match=CONTROLS[name].permission):
        control_run(name, user=user, params=scenario.params, channel="api")

    assert scenario.untouched()
    [entry] = audit_of(name)
    assert (entry.actor, entry.detail["outcome"], entry.detail["channel"]) == ("mallory", "refused", "api")
    assert CONTROLS[name].permission in entry.detail["reason"]


def test_an_inactive_user_is_refused_even_as_superuser(django_user_model):
    user = django_user_model.objects.create_superuser("ghost", password=None, is_active=False)

    with pytest.raises(ControlRefused, match="not an active user"):
        control_run("kill_switch_engage", user=user, params={}, channel="dashboard")

    assert audit_of("kill_switch_engage")[0].detail["outcome"] == "refused"


def test_a_superuser_may_run_every_control_and_sees_them_all(django_user_model):
    admin = django_user_model.objects.create_superuser("root", password=None)
    viewer = operator(django_user_model, "viewer")

    assert [c.name for c in controls_for(admin)] == list(CONTROLS)
    assert controls_for(viewer) == []


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("feed_pause", {"feed": "uw_bogus"}, "unknown feed 'uw_bogus': one of uw_stream, uw_rest, ib_market"),
        ("feed_pause", {}, "feed_pause needs feed"),
        ("caches_flush", {"pattern": "*"}, "unknown pattern '\\*': one of latest, analytics"),
        ("order_cancel", {"order_id": "abc"}, "order_id must be a positive integer"),
        ("order_cancel", {"order_id": 999999}, "no order 999999"),
        ("position_close", {"trade_id": -3}, "trade_id must be a positive integer"),
        ("signal_reject", {"signal_id": "nope"}, "no signal 'nope'"),
        ("kill_switch_engage", {"reason": "x", "flatten": True}, "takes no parameter flatten"),
        ("alert_acknowledge", {"alert_id": 12345}, "no alert 12345"),
        ("post_resend", {"post_id": 12345}, "no post 12345"),
    ],
)
def test_bad_parameters_are_an_error_with_a_clear_message_and_are_audited(name, params, message, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password=None)

    with pytest.raises(ControlError, match=message):
        control_run(name, user=admin, params=params, channel="api")

    [entry] = audit_of(name)
    assert entry.detail["outcome"] == "error" and entry.detail["params"] == params


def test_an_unknown_control_is_an_error_and_audited(django_user_model):
    admin = django_user_model.objects.create_superuser("root", password=None)

    with pytest.raises(ControlError, match="unknown control 'launch_missiles'"):
        control_run("launch_missiles", user=admin, params={}, channel="api")

    assert audit_of("launch_missiles")[0].detail["outcome"] == "error"


def test_a_decided_signal_cannot_be_overridden(django_user_model, committed):
    from apps.risk.services import signal_review
    from tests.risk.factories import SignalFactory

    admin = django_user_model.objects.create_superuser("root", password=None)
    signal = SignalFactory()
    with committed():
        signal_review(signal_id=signal.signal_id)

    for name in ("signal_approve", "signal_reject"):
        with pytest.raises(ControlError, match=f"signal {signal.signal_id} is .*not pending"):
            control_run(name, user=admin, params={"signal_id": signal.signal_id}, channel="admin")


def test_approving_a_signal_goes_through_risk_and_the_kill_switch_still_rejects_it(django_user_model, committed):
    from apps.risk.models import RiskDecision
    from apps.risk.services import kill_switch_engage
    from tests.risk.factories import SignalFactory

    admin = django_user_model.objects.create_superuser("root", password=None)
    with committed():
        kill_switch_engage(by="ops", reason="incident")
    signal = SignalFactory()

    with committed():
        result = control_run(
            "signal_approve", user=admin, params={"signal_id": signal.signal_id, "reason": "go"}, channel="admin"
        )

    decision = RiskDecision.objects.get(signal=signal)
    assert result.ok is False and decision.approved is False
    assert "kill switch is ON" in decision.reason
    assert audit_of("signal_approve")[0].detail["outcome"] == "not_done"
    override = AuditLog.objects.get(action="risk.signal.override_approve")
    assert (override.actor, override.detail["reason"]) == ("root", "go")


def test_rejecting_a_signal_records_the_operator_in_its_decision_and_no_order_is_sent(
    django_user_model, committed, redis_store
):
    import json

    from apps.execution.models import Order
    from apps.risk.models import RiskDecision
    from apps.risk.services import signal_review
    from tests.risk.factories import SignalFactory

    admin = django_user_model.objects.create_superuser("root", password=None)
    signal = SignalFactory()
    with committed():
        control_run(
            "signal_reject", user=admin, params={"signal_id": signal.signal_id, "reason": "news"}, channel="api"
        )

    decision = RiskDecision.objects.get(signal=signal)
    assert (decision.approved, decision.quantity, decision.reason) == (False, 0, "rejected by root: news")
    assert decision.checks == [{"check": "operator", "passed": False, "detail": "rejected by root: news"}]
    # The queued review arrives later and finds the operator's decision.
    assert signal_review(signal_id=signal.signal_id).pk == decision.pk
    assert not Order.objects.filter(signal=signal).exists()
    assert json.loads(redis_store.get("risk:last_decision"))["reason"] == "rejected by root: news"


def test_a_finished_order_is_not_cancellable(django_user_model):
    from apps.execution.models import Order, OrderStatus
    from tests.risk.factories import SignalFactory

    admin = django_user_model.objects.create_superuser("root", password=None)
    signal = SignalFactory(status="active")
    order = Order.objects.create(
        client_order_id="filled-1",
        signal=signal,
        leg="entry",
        option_symbol=signal.option_symbol,
        side="buy",
        quantity=1,
        limit_price=Decimal("1.2"),
        status=OrderStatus.FILLED,
        broker="paper",
        created_at=clock.now(),
    )

    with pytest.raises(ControlError, match="order filled-1 is filled: not cancellable"):
        control_run("order_cancel", user=admin, params={"order_id": str(order.pk)}, channel="api")


# --- feeds ------------------------------------------------------------------------------------------------------------
def test_each_feed_has_its_own_flag_and_state_says_who_paused_it_and_since_when(committed, redis_store):
    with committed():
        feeds.feed_pause_set(feed="ib_market", paused=True, actor="alice", reason="bad ticks")

    state = feeds.feeds_state()
    assert redis_store.get("control:ib_market:paused") == "alice"
    assert state["ib_market"]["paused"] is True
    assert (state["ib_market"]["by"], state["ib_market"]["reason"]) == ("alice", "bad ticks")
    assert state["ib_market"]["since"] == clock.now()
    assert state["uw_stream"]["paused"] is False and state["uw_rest"]["paused"] is False
    assert AuditLog.objects.get(action="ib_market.pause").target == "ib_market"


def test_the_listener_keeps_its_historical_key_and_stream_pause_set_still_works(committed, redis_store):
    from apps.ingestion.models import StreamControl
    from apps.ingestion.uw import stream

    with committed():
        stream.stream_pause_set(paused=True, actor="bob", reason="UW maintenance")

    assert stream.PAUSE_KEY == feeds.feed_pause_key("uw_stream") == "control:uw_stream:paused"
    assert redis_store.get(stream.PAUSE_KEY) == "bob"
    assert StreamControl.objects.get().feed == "uw_stream"
    assert feeds.feeds_state()["uw_stream"]["paused"] is True


def test_the_rest_pollers_skip_while_uw_rest_is_paused_and_poll_again_after_resume(committed, settings):
    from apps.ingestion.models import RestPayload
    from apps.ingestion.rest_tasks import flow_alerts_backfill, rest_poll
    from tests.ingestion.rest_standin import RestStandin

    clock.use_wall_clock()  # REST polls are live only: a simulated clock skips them before the pause is asked
    standin = RestStandin(token="t").start()
    settings.UW_API_URL, settings.UW_API_TOKEN = standin.base_url, "t"
    try:
        standin.data("/api/stock/SPY/net-prem-ticks", [{"tape_time": "2026-11-20T14:31:00Z", "net_delta": "1"}])
        with committed():
            feeds.feed_pause_set(feed="uw_rest", paused=True, actor="alice")

        skipped = rest_poll.delay(endpoint="net_prem_ticks", ticker="SPY").get()
        backfill = flow_alerts_backfill.delay().get()

        assert skipped == {"endpoint": "net_prem_ticks", "ticker": "SPY", "skipped": "the uw_rest feed is paused"}
        assert backfill["skipped"] == "the uw_rest feed is paused"
        assert standin.requests == [] and not RestPayload.objects.exists()

        with committed():
            feeds.feed_pause_set(feed="uw_rest", paused=False, actor="alice")
        assert rest_poll.delay(endpoint="net_prem_ticks", ticker="SPY").get()["endpoint"] == "net_prem_ticks"
        assert len(standin.requests) == 1 and RestPayload.objects.count() == 1
    finally:
        standin.stop()


def test_ib_ticks_are_dropped_while_ib_market_is_paused(committed, redis_store):
    from apps.ingestion.models import IBQuote
    from apps.ingestion.tasks import ib_ticks

    tick = {"key": "SPY", "sec_type": "STK", "con_id": 756733, "field": "last", "value": "600.25"}
    tick["at"] = clock.now().isoformat()
    with committed():
        feeds.feed_pause_set(feed="ib_market", paused=True, actor="alice")
    with committed():
        assert ib_ticks.delay([tick]).get() == 0
    assert not IBQuote.objects.exists()
    assert redis_store.keys("latest:ib:*") == []

    with committed():
        feeds.feed_pause_set(feed="ib_market", paused=False, actor="alice")
    with committed():
        assert ib_ticks.delay([tick]).get() == 1
    assert IBQuote.objects.get().key == "SPY"


# --- caches -----------------------------------------------------------------------------------------------------------
def test_the_flush_deletes_only_its_patterns_keys_in_batches(redis_store):
    from apps.ops.caches import caches_flush

    for n in range(1203):
        redis_store.set(f"analytics:T{n}:0dte", "x")
    redis_store.set("latest:uw:price:SPY", "600")
    redis_store.set("analyticsX", "not a match")  # the glob is analytics:*, not analytics*
    redis_store.set("risk:kill_switch", "1")

    assert caches_flush(pattern="analytics", batch_size=100) == 1203
    assert redis_store.keys("analytics:*") == []
    assert redis_store.exists("latest:uw:price:SPY", "analyticsX", "risk:kill_switch") == 3
    assert caches_flush(pattern="analytics") == 0


def test_telegrams_pause_feed_names_a_feed_and_defaults_to_the_listener(django_user_model, committed, redis_store):
    from apps.approvals.models import TelegramIdentity
    from apps.approvals.telegram.commands import command_run

    user = operator(django_user_model, "olivia", "ingestion.pause_feed", "execution.view_position")
    TelegramIdentity.objects.create(telegram_user_id=4242, user=user)

    def send(text: str) -> str:
        command, *args = text.lstrip("/").split()
        with committed():
            return command_run(
                command=command, args=args, chat_id=4242, chat_type="private", telegram_user_id=4242, username="o"
            )

    assert send("/pause_feed ib_market bad ticks") == (
        "Feed ib_market paused (Interactive Brokers market data (ticks are dropped, not stored)) until /resume_feed"
        " ib_market."
    )
    assert send("/pause_feed maintenance").startswith("Feed uw_stream paused")
    state = feeds.feeds_state()
    assert state["ib_market"]["reason"] == "bad ticks" and state["uw_stream"]["reason"] == "maintenance"
    assert "Paused feeds: uw_stream, ib_market" in send("/status")
    assert send("/resume_feed ib_market") == "Feed ib_market resumed."
    assert not feeds.feed_is_paused("ib_market") and feeds.feed_is_paused("uw_stream")


def test_the_ib_listener_does_not_even_queue_ticks_while_ib_market_is_paused(committed):
    from apps.execution.ib.dispatch import TaskSink
    from tests.risk.factories import record_tasks, stop_recording

    tick = {"key": "SPY", "sec_type": "STK", "con_id": 756733, "field": "last", "value": "600.25"}
    tick["at"] = clock.now().isoformat()
    with committed():
        feeds.feed_pause_set(feed="ib_market", paused=True, actor="alice")
    recorder = record_tasks()
    try:
        with committed():
            TaskSink().ticks([tick])
        assert recorder.named("ingestion.ib_ticks") == []
        with committed():
            feeds.feed_pause_set(feed="ib_market", paused=False, actor="alice")
        with committed():
            TaskSink().ticks([tick])
        assert len(recorder.named("ingestion.ib_ticks")) == 1
    finally:
        stop_recording(recorder)
