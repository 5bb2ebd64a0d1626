"""One scenario per control (apps/ops/controls.py): the rows it acts on, the parameters that run it, and a check of
its effect — shared by the control, admin and API tests, so every control is exercised the same way everywhere.

Scenarios run on the risk tests' session clock (10:30 New York on a regular session day, paper broker)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from apps.core import clock, store


@dataclass
class Scenario:
    params: dict[str, Any]
    done: Callable[[], bool]  # the control's effect happened
    untouched: Callable[[], bool]  # nothing happened (what a refused run must leave)


def _feed_pause(username: str) -> Scenario:
    from apps.ingestion.feeds import feed_is_paused

    return Scenario(
        {"feed": "uw_rest", "reason": "vendor incident"},
        done=lambda: feed_is_paused("uw_rest"),
        untouched=lambda: not feed_is_paused("uw_rest"),
    )


def _feed_resume(username: str) -> Scenario:
    from apps.ingestion.feeds import feed_is_paused, feed_pause_key

    store.get_redis().set(feed_pause_key("ib_market"), "someone")
    return Scenario(
        {"feed": "ib_market"},
        done=lambda: not feed_is_paused("ib_market"),
        untouched=lambda: feed_is_paused("ib_market"),
    )


def _caches_flush(username: str) -> Scenario:
    client = store.get_redis()
    client.set("latest:uw:price:SPY", "600")
    client.hset("latest:uw:quote:SPY250610C00600000", mapping={"bid": "1"})
    client.set("analytics:SPY:0dte", "{}")
    client.set("uw:flow_alerts", "kept")
    return Scenario(
        {"pattern": "latest"},
        done=lambda: client.keys("latest:*") == [] and client.exists("analytics:SPY:0dte", "uw:flow_alerts") == 2,
        untouched=lambda: client.exists("latest:uw:price:SPY", "latest:uw:quote:SPY250610C00600000") == 2,
    )


def _signal(status: str = "pending") -> Any:
    from tests.risk.factories import SignalFactory

    return SignalFactory(status=status)


def _signal_approve(username: str) -> Scenario:
    from apps.risk.models import RiskDecision

    signal = _signal()
    return Scenario(
        {"signal_id": signal.signal_id, "reason": "the review task is stuck"},
        done=lambda: RiskDecision.objects.filter(signal=signal, approved=True).exists(),
        untouched=lambda: not RiskDecision.objects.filter(signal=signal).exists(),
    )


def _signal_reject(username: str) -> Scenario:
    from apps.risk.models import RiskDecision
    from apps.signals.models import Signal

    signal = _signal()
    return Scenario(
        {"signal_id": signal.signal_id, "reason": "earnings tonight"},
        done=lambda: (
            RiskDecision.objects.filter(
                signal=signal, approved=False, reason=f"rejected by {username}: earnings tonight"
            ).exists()
            and Signal.objects.get(pk=signal.pk).status == Signal.Status.REJECTED
        ),
        untouched=lambda: Signal.objects.get(pk=signal.pk).status == Signal.Status.PENDING,
    )


def _order_cancel(username: str) -> Scenario:
    from apps.execution.models import Order, OrderStatus

    signal = _signal(status="approved")
    order = Order.objects.create(
        client_order_id=f"test-{signal.signal_id}",
        signal=signal,
        leg=Order.Leg.ENTRY,
        option_symbol=signal.option_symbol,
        side=Order.Side.BUY,
        quantity=1,
        limit_price=Decimal("1.20"),
        status=OrderStatus.PENDING,
        broker="paper",
        created_at=clock.now(),
    )
    return Scenario(
        {"order_id": order.pk},
        done=lambda: Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED,
        untouched=lambda: Order.objects.get(pk=order.pk).status == OrderStatus.PENDING,
    )


def _position_close(username: str) -> Scenario:
    from apps.execution.models import Position, Trade
    from apps.risk.models import RiskDecision
    from apps.risk.services import limits_active
    from tests.risk.factories import open_trade_row, put_quote

    signal = open_trade_row()
    RiskDecision.objects.create(
        signal=signal,
        limits=limits_active(),
        approved=True,
        quantity=1,
        limit_price=signal.limit_price,
        reason="booked by a test",
        decided_at=clock.now(),
    )
    Position.objects.create(
        option_symbol=signal.option_symbol,
        ticker="SPY",
        quantity=1,
        avg_cost=signal.limit_price,
        updated_at=clock.now(),
    )
    put_quote(signal.option_symbol, bid="1.50", ask="1.55", ts=clock.now())
    trade = Trade.objects.get(signal=signal)
    return Scenario(
        {"trade_id": trade.pk},
        done=lambda: Trade.objects.get(pk=trade.pk).status == Trade.Status.CLOSED,
        untouched=lambda: Trade.objects.get(pk=trade.pk).status == Trade.Status.OPEN,
    )


def _flatten_all(username: str) -> Scenario:
    from apps.risk.models import KillSwitchEvent
    from apps.risk.selectors import kill_switch_is_on

    return Scenario(
        {"reason": "broker incident"},
        done=lambda: kill_switch_is_on() and KillSwitchEvent.objects.filter(flatten=True, by=username).exists(),
        untouched=lambda: not kill_switch_is_on() and not KillSwitchEvent.objects.exists(),
    )


def _kill_switch_engage(username: str) -> Scenario:
    from apps.risk.models import KillSwitchEvent
    from apps.risk.selectors import kill_switch_is_on

    return Scenario(
        {"reason": "bad fills"},
        done=lambda: kill_switch_is_on() and KillSwitchEvent.objects.filter(engaged=True, by=username).exists(),
        untouched=lambda: not kill_switch_is_on(),
    )


def _kill_switch_release(username: str) -> Scenario:
    from apps.risk.selectors import KILL_SWITCH_KEY, kill_switch_is_on

    store.get_redis().set(KILL_SWITCH_KEY, "1")
    return Scenario({"reason": "all clear"}, done=lambda: not kill_switch_is_on(), untouched=kill_switch_is_on)


def _alert_acknowledge(username: str) -> Scenario:
    from apps.ops.models import Alert

    now = clock.now()
    alert = Alert.objects.create(
        key="feed_stale:uw_stream", rule="FeedStale", summary="UW stream stale", raised_at=now, last_seen_at=now
    )
    return Scenario(
        {"alert_id": alert.pk},
        done=lambda: Alert.objects.get(pk=alert.pk).acknowledged_by == username,
        untouched=lambda: Alert.objects.get(pk=alert.pk).acknowledged_at is None,
    )


def _post_resend(username: str) -> Scenario:
    from apps.distribution.models import DistributionPost

    now = clock.now()
    post = DistributionPost.objects.create(
        kind="entry",
        trade_id=1,
        ref="trade:1",
        tier="premium",
        due_at=now,
        release_at=now,
        status=DistributionPost.Status.FAILED,
        content={"content": "entry"},
        last_error="404 webhook gone",
        created_at=now,
    )
    return Scenario(
        {"post_id": post.pk},
        done=lambda: DistributionPost.objects.get(pk=post.pk).status != DistributionPost.Status.FAILED,
        untouched=lambda: DistributionPost.objects.get(pk=post.pk).status == DistributionPost.Status.FAILED,
    )


SCENARIOS: dict[str, Callable[[str], Scenario]] = {
    "feed_pause": _feed_pause,
    "feed_resume": _feed_resume,
    "caches_flush": _caches_flush,
    "signal_approve": _signal_approve,
    "signal_reject": _signal_reject,
    "order_cancel": _order_cancel,
    "position_close": _position_close,
    "flatten_all": _flatten_all,
    "kill_switch_engage": _kill_switch_engage,
    "kill_switch_release": _kill_switch_release,
    "alert_acknowledge": _alert_acknowledge,
    "post_resend": _post_resend,
}


def operator(django_user_model: Any, username: str, *permissions: str, **fields: Any) -> Any:
    """An active staff user holding exactly ``permissions`` ("app_label.codename")."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username, password=None, is_staff=True, **fields)
    for dotted in permissions:
        app_label, codename = dotted.split(".", 1)
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return django_user_model.objects.get(pk=user.pk)  # a fresh instance: no stale permission cache
