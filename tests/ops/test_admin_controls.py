"""The admin's actions run the operator controls: offered and applied with the control's permission, absent (and
nothing done) without it, every run audited with channel "admin"."""

from __future__ import annotations

from typing import Any

import pytest

from apps.ops.controls import CONTROLS
from apps.ops.models import AuditLog
from tests.ops.control_scenarios import SCENARIOS, Scenario, operator
from tests.risk.conftest import _session_clock, committed

__all__ = ["_session_clock", "committed"]

pytestmark = pytest.mark.django_db


def _signal_pk(scenario: Scenario) -> int:
    from apps.signals.models import Signal

    return Signal.objects.get(signal_id=scenario.params["signal_id"]).pk


# control -> (changelist, action, the view permission the list needs, the selected row, extra form fields)
ADMIN_ACTIONS: dict[str, tuple[str, str, str, Any, dict[str, str]]] = {
    "signal_approve": ("/admin/signals/signal/", "approve_selected", "signals.view_signal", _signal_pk, {}),
    "signal_reject": (
        "/admin/signals/signal/",
        "reject_selected",
        "signals.view_signal",
        _signal_pk,
        {"apply": "1", "reason": "earnings tonight"},
    ),
    "order_cancel": (
        "/admin/execution/order/",
        "cancel_selected",
        "execution.view_order",
        lambda s: s.params["order_id"],
        {},
    ),
    "position_close": (
        "/admin/execution/trade/",
        "close_selected",
        "execution.view_trade",
        lambda s: s.params["trade_id"],
        {},
    ),
    "post_resend": (
        "/admin/distribution/distributionpost/",
        "resend_posts",
        "distribution.view_distributionpost",
        lambda s: s.params["post_id"],
        {},
    ),
    "alert_acknowledge": (
        "/admin/ops/alert/",
        "acknowledge_alerts",
        "ops.view_alert",
        lambda s: s.params["alert_id"],
        {},
    ),
}


def offered_actions(client, url: str) -> set[str]:
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["action_form"]  # None when the user is offered no action at all
    return set() if form is None else {value for value, _label in form.fields["action"].choices}


@pytest.mark.parametrize("name", sorted(ADMIN_ACTIONS))
def test_the_admin_action_runs_its_control_with_the_permission(name, client, django_user_model, committed):
    url, action, view, selected, extra = ADMIN_ACTIONS[name]
    user = operator(django_user_model, "olivia", view, CONTROLS[name].permission)
    client.force_login(user)
    scenario = SCENARIOS[name]("olivia")

    assert action in offered_actions(client, url)
    with committed():
        response = client.post(url, {"action": action, "_selected_action": [selected(scenario)], **extra}, follow=True)

    assert response.status_code == 200
    assert scenario.done(), [str(m) for m in response.context["messages"]]
    entry = AuditLog.objects.get(action=f"control.{name}")
    assert (entry.actor, entry.detail["channel"], entry.detail["outcome"]) == ("olivia", "admin", "ok")


@pytest.mark.parametrize("name", sorted(ADMIN_ACTIONS))
def test_the_admin_action_is_hidden_and_does_nothing_without_the_permission(name, client, django_user_model):
    url, action, view, selected, extra = ADMIN_ACTIONS[name]
    user = operator(django_user_model, "mallory", view)
    client.force_login(user)
    scenario = SCENARIOS[name]("mallory")

    assert action not in offered_actions(client, url)
    client.post(url, {"action": action, "_selected_action": [selected(scenario)], **extra}, follow=True)

    assert scenario.untouched()
    assert not AuditLog.objects.filter(action=f"control.{name}").exists()


def test_rejecting_in_the_admin_asks_for_a_reason_first(client, django_user_model):
    from apps.signals.models import Signal

    user = operator(django_user_model, "olivia", "signals.view_signal", "signals.override_signal")
    client.force_login(user)
    scenario = SCENARIOS["signal_reject"]("olivia")
    pk = Signal.objects.get(signal_id=scenario.params["signal_id"]).pk

    page = client.post("/admin/signals/signal/", {"action": "reject_selected", "_selected_action": [pk]})

    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()
    assert scenario.untouched()


def test_an_error_of_the_control_is_shown_as_an_admin_error_message(client, django_user_model, committed):
    user = operator(django_user_model, "olivia", "signals.view_signal", "signals.override_signal")
    client.force_login(user)
    scenario = SCENARIOS["signal_approve"]("olivia")
    pk = _signal_pk(scenario)
    with committed():
        client.post("/admin/signals/signal/", {"action": "approve_selected", "_selected_action": [pk]})

    again = client.post("/admin/signals/signal/", {"action": "approve_selected", "_selected_action": [pk]}, follow=True)

    [message] = [m for m in again.context["messages"] if m.level_tag == "error"]
    assert "not pending" in str(message)


def test_the_stream_controls_page_pauses_the_named_feed_through_its_control(client, django_user_model, committed):
    from apps.ingestion.feeds import feed_is_paused

    user = operator(django_user_model, "olivia", "ingestion.view_streamcontrol", "ingestion.pause_feed")
    client.force_login(user)

    with committed():
        added = client.post(
            "/admin/ingestion/streamcontrol/add/", {"feed": "ib_market", "paused": "on", "reason": "bad ticks"}
        )

    assert added.status_code == 302
    assert feed_is_paused("ib_market") and not feed_is_paused("uw_stream")
    entry = AuditLog.objects.get(action="control.feed_pause")
    assert entry.detail["params"] == {"feed": "ib_market", "reason": "bad ticks"}
    assert "paused feeds: ib_market" in client.get("/admin/ingestion/streamcontrol/").context["title"]
