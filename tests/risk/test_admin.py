"""The operations console for risk and execution: limits save as new versions, the kill switch through its service,
audit records read-only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

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
        "entry_price_tolerance": limits.entry_price_tolerance,
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


def test_adding_a_kill_switch_event_in_the_admin_engages_the_switch(
    operator, redis_store, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(reverse("admin:risk_killswitchevent_add"), {"engaged": "on", "reason": "manual halt"})

    assert response.status_code == 302
    event = KillSwitchEvent.objects.get()
    assert (event.engaged, event.by, event.reason) == (True, "operator", "manual halt")
    assert redis_store.get(KILL_SWITCH_KEY) == "1"


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
