"""The order state machine: conditional transitions; anything else is refused and logged."""

from __future__ import annotations

import pytest

from apps.execution import services
from apps.execution.models import ORDER_TRANSITIONS, Order, OrderStatus, TradeLog
from apps.risk.services import signal_review
from tests.risk.factories import SignalFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending_order() -> Order:
    decision = signal_review(signal_id=SignalFactory().signal_id)
    return services._order_get_or_create(
        decision=decision,
        signal=decision.signal,
        trade=None,
        leg="entry",
        attempt=1,
        side="buy",
        quantity=decision.quantity,
        limit_price=decision.limit_price,
        broker_name="paper",
    )


def test_a_filled_order_cannot_go_back_to_submitted(pending_order):
    assert services.order_transition(order=pending_order, to_status=OrderStatus.SUBMITTED) is True
    assert services.order_transition(order=pending_order, to_status=OrderStatus.FILLED, filled_quantity=5) is True

    assert services.order_transition(order=pending_order, to_status=OrderStatus.SUBMITTED) is False

    pending_order.refresh_from_db()
    assert pending_order.status == OrderStatus.FILLED
    refused = TradeLog.objects.get(order=pending_order, applied=False)
    assert (refused.from_status, refused.to_status) == ("filled", "submitted")
    assert "not a legal transition" in refused.detail


def test_a_pending_order_cannot_be_filled_without_being_submitted(pending_order):
    assert services.order_transition(order=pending_order, to_status=OrderStatus.FILLED) is False
    pending_order.refresh_from_db()
    assert pending_order.status == OrderStatus.PENDING


def test_a_transition_from_a_state_the_row_has_left_is_refused(pending_order):
    stale_copy = Order.objects.get(pk=pending_order.pk)
    assert services.order_transition(order=pending_order, to_status=OrderStatus.CANCELLED) is True

    # The stale copy still believes the order is pending: the conditional update matches nothing.
    assert services.order_transition(order=stale_copy, to_status=OrderStatus.SUBMITTED) is False

    assert Order.objects.get(pk=pending_order.pk).status == OrderStatus.CANCELLED
    assert stale_copy.status == OrderStatus.CANCELLED
    refused = TradeLog.objects.get(order=pending_order, applied=False)
    assert "no longer pending (it is cancelled)" in refused.detail


def test_a_filled_order_leads_nowhere():
    assert ORDER_TRANSITIONS[OrderStatus.FILLED] == frozenset()


@pytest.mark.parametrize("ended", [OrderStatus.CANCELLED, OrderStatus.REJECTED])
def test_an_ended_order_only_takes_a_fill_the_broker_reports_late(ended):
    # A cancel that lost the race with a fill, or an execution found at a reconciliation: real money, booked.
    assert ORDER_TRANSITIONS[ended] == frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED})


def test_every_applied_transition_is_logged_in_order(pending_order):
    services.order_transition(order=pending_order, to_status=OrderStatus.SUBMITTED, detail="sent")
    services.order_transition(order=pending_order, to_status=OrderStatus.PARTIALLY_FILLED, filled_quantity=2)
    services.order_transition(order=pending_order, to_status=OrderStatus.FILLED, filled_quantity=5)

    logged = list(pending_order.logs.filter(applied=True).values_list("from_status", "to_status"))
    assert logged == [
        ("", "pending"),
        ("pending", "submitted"),
        ("submitted", "partially_filled"),
        ("partially_filled", "filled"),
    ]


def test_client_order_ids_are_deterministic_per_signal_leg_and_attempt():
    entry = services.client_order_id(signal_id="abc", leg="entry")
    assert entry == services.client_order_id(signal_id="abc", leg="entry")
    assert entry != services.client_order_id(signal_id="abc", leg="exit")
    assert services.client_order_id(signal_id="abc", leg="exit") != services.client_order_id(
        signal_id="abc", leg="exit", attempt=2
    )
