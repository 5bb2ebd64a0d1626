"""The operations console for risk and execution: limits save as new versions, the kill switch through its service,
audit records read-only."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.execution.models import Trade
from apps.ops.models import AuditLog
from apps.risk.models import KillSwitchEvent, RiskLimits
from apps.risk.selectors import KILL_SWITCH_KEY
from apps.risk.services import limits_active, signal_review
from tests.risk.factories import SignalFactory, ny, put_quote

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("operator", "op@example.org", "pw-not-secret-123")
    client.force_login(user)
    return client


def limits_form(limits: RiskLimits, **overrides) -> dict:
    data = {
        "max_premium_share": limits.max_premium_share,
        "max_contracts_per_order": limits.max_contracts_per_order,
        "max_positions_per_underlying": limits.max_positions_per_underlying,
        "max_positions_per_strategy": limits.max_positions_per_strategy,
        "max_open_positions": limits.max_open_positions,
        "daily_loss_limit_share": limits.daily_loss_limit_share,
        "zero_dte_entry_cutoff": "15:00:00",
        "moc_entry_deadline": "15:45:00",
        "entry_price_tolerance": limits.entry_price_tolerance,
        "max_portfolio_delta": limits.max_portfolio_delta,
        "max_portfolio_gamma": limits.max_portfolio_gamma,
        "max_leverage": limits.max_leverage,
        "min_buying_power_share": limits.min_buying_power_share,
        "flatten_on_daily_loss": "on",
        "note": "tighter",
    }
    return {**data, **overrides}


def test_saving_the_active_limits_in_the_admin_creates_a_new_version(operator):
    first = limits_active()

    response = operator.post(
        reverse("admin:risk_risklimits_change", args=[first.pk]), limits_form(first, max_open_positions=4)
    )

    assert response.status_code == 302
    first.refresh_from_db()
    new = RiskLimits.objects.get(active=True)
    assert (first.active, first.max_open_positions) == (False, 6)
    assert (new.version, new.max_open_positions, new.created_by, new.note) == (2, 4, "operator", "tighter")


def test_the_new_limits_are_edited_in_the_admin_and_published_to_redis(operator, redis_store, committed):
    first = limits_active()

    with committed():
        response = operator.post(
            reverse("admin:risk_risklimits_change", args=[first.pk]),
            limits_form(
                first,
                max_portfolio_delta="1200",
                max_portfolio_gamma="300",
                moc_entry_deadline="15:40:00",
                max_leverage="0.3",
                min_buying_power_share="0.1",
                flatten_on_daily_loss="",
            ),
        )

    assert response.status_code == 302
    new = RiskLimits.objects.get(active=True)
    assert (new.max_portfolio_delta, new.max_portfolio_gamma, new.max_leverage) == (
        Decimal("1200"),
        Decimal("300"),
        Decimal("0.3"),
    )
    assert (new.moc_entry_deadline, new.min_buying_power_share, new.flatten_on_daily_loss) == (
        time(15, 40),
        Decimal("0.1"),
        False,
    )
    published = redis_store.hgetall("risk:limits")
    assert published["version"] == "2"
    assert Decimal(published["max_portfolio_delta"]) == Decimal("1200")
    assert published["moc_entry_deadline"] == "15:40:00"
    assert published["flatten_on_daily_loss"] == "0"


def staff_with(client, *codenames: str):
    """A staff user who may see the kill switch page and holds exactly the given risk permissions."""
    user = get_user_model().objects.create_user("desk", "desk@example.org", "pw-not-secret-123", is_staff=True)
    wanted = ("view_killswitchevent", *codenames)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="risk", codename__in=wanted))
    client.force_login(user)
    return client


def action_url(name: str) -> str:
    return reverse("admin:risk_killswitchevent_action", args=[name])


@pytest.mark.parametrize(
    ("action", "permission"),
    [
        ("engage", "engage_kill_switch"),
        ("engage_flatten", "flatten_positions"),
        ("release", "release_kill_switch"),
    ],
)
def test_each_kill_switch_action_refuses_a_user_without_its_permission(client, redis_store, action, permission):
    others = {"engage_kill_switch", "flatten_positions", "release_kill_switch"} - {permission}
    desk = staff_with(client, *others)

    assert desk.get(action_url(action)).status_code == 403
    assert desk.post(action_url(action), {"reason": "should not happen"}).status_code == 403

    assert not KillSwitchEvent.objects.exists()
    assert not AuditLog.objects.exists()
    assert redis_store.get(KILL_SWITCH_KEY) is None
    # The list offers only the actions the user may run.
    page = desk.get(reverse("admin:risk_killswitchevent_changelist"))
    assert page.status_code == 200
    assert action_url(action).encode() not in page.content
    for other in others:
        name = {"engage_kill_switch": "engage", "flatten_positions": "engage_flatten"}.get(other, "release")
        assert action_url(name).encode() in page.content


def test_engaging_the_kill_switch_in_the_admin_needs_a_reason_and_is_audited(client, redis_store, committed):
    desk = staff_with(client, "engage_kill_switch")

    assert desk.post(action_url("engage"), {"reason": ""}).status_code == 200  # the form again, with its error
    assert not KillSwitchEvent.objects.exists()
    with committed():
        response = desk.post(action_url("engage"), {"reason": "manual halt"})

    assert response.status_code == 302
    event = KillSwitchEvent.objects.get()
    assert (event.engaged, event.flatten, event.by, event.reason) == (True, False, "desk", "manual halt")
    assert redis_store.get(KILL_SWITCH_KEY) == "1"
    # The service's own entry, and the control's (the admin runs the same control as the dashboard and the API).
    audit = AuditLog.objects.get(action="risk.kill_switch.engage")
    assert (audit.actor, audit.target) == ("desk", "kill_switch")
    control = AuditLog.objects.get(action="control.kill_switch_engage")
    assert (control.actor, control.detail["channel"], control.detail["outcome"]) == ("desk", "admin", "ok")
    assert audit.detail == {"reason": "manual halt", "flatten": False, "event_id": event.pk}
    # No way around the actions: the history cannot be added to directly.
    assert desk.get(reverse("admin:risk_killswitchevent_add")).status_code == 403


def test_engage_and_flatten_in_the_admin_closes_the_open_trade_and_release_turns_it_off(
    client, redis_store, committed, tasks_run
):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))
    with committed():
        signal_review(signal_id=signal.signal_id)
    trade = Trade.objects.get(signal=signal, status=Trade.Status.OPEN)
    desk = staff_with(client, "flatten_positions", "release_kill_switch")

    with committed():
        assert desk.post(action_url("engage_flatten"), {"reason": "broker halt"}).status_code == 302

    event = KillSwitchEvent.objects.get()
    assert (event.engaged, event.flatten) == (True, True)
    assert tasks_run.named("risk.flatten_all") == [(event.pk,)]
    trade.refresh_from_db()
    assert (trade.status, trade.exit_reason) == (Trade.Status.CLOSED, "flatten")
    assert event.still_open == [] and event.flattened_at is not None
    assert sorted(AuditLog.objects.values_list("actor", "action")) == [
        ("desk", "control.flatten_all"),
        ("desk", "risk.kill_switch.engage_flatten"),
        ("risk", "risk.flatten_all"),
    ]

    with committed():
        assert desk.post(action_url("release"), {"reason": "all clear"}).status_code == 302
    assert redis_store.get(KILL_SWITCH_KEY) == "0"
    assert set(AuditLog.objects.order_by("-id").values_list("actor", "action")[:2]) == {
        ("desk", "risk.kill_switch.release"),
        ("desk", "control.kill_switch_release"),
    }


def test_audit_records_are_listed_and_cannot_be_changed(operator, committed):
    signal = SignalFactory()
    put_quote(signal.option_symbol, bid="1.10", ask="1.20", ts=ny(10, 29))
    with committed():
        decision = signal_review(signal_id=signal.signal_id)

    for name in (
        "risk_riskdecision",
        "execution_order",
        "execution_fill",
        "execution_position",
        "execution_trade",
        "execution_tradelog",
        "risk_killswitchevent",
        "risk_risklimits",
    ):
        assert operator.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    page = operator.get(reverse("admin:risk_riskdecision_change", args=[decision.pk]))
    assert page.status_code == 200
    assert b'name="approved"' not in page.content  # rendered read-only
    assert (
        operator.post(reverse("admin:risk_riskdecision_delete", args=[decision.pk]), {"post": "yes"}).status_code == 403
    )
    assert decision.quantity == 5 and decision.limit_price == Decimal("1.26")
