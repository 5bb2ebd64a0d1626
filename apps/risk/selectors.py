"""Reads of the risk state: the kill switch, the limits in force, decisions, and what the broker connection reports
(connected or not, the account) through the Redis hashes its owner writes."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import QuerySet

from apps.core import clock, store
from apps.core.money import InvalidAmount, to_decimal
from apps.risk.models import KillSwitchEvent, RiskDecision, RiskLimits

logger = logging.getLogger(__name__)

KILL_SWITCH_KEY = "risk:kill_switch"
BROKER_STATE_KEY = "execution:broker:state"  # hash broker, connected "1"/"0", since (ISO), detail
BROKER_ACCOUNT_KEY = "risk:account:broker"  # hash of IB account values + updated_at (ISO)
BROKER_ACCOUNT_FIELDS = (
    "NetLiquidation",
    "BuyingPower",
    "MaintMarginReq",
    "UnrealizedPnL",
    "RealizedPnL",
    "TotalCashValue",
)
BROKER_ACCOUNT_MAX_AGE = timedelta(seconds=120)


def kill_switch_is_on() -> bool:
    """On when Redis says ``"1"``; when the key is missing (a flushed or new Redis) the newest history row decides,
    and the key is restored from it so the next read is fast."""
    client = store.get_redis()
    value = client.get(KILL_SWITCH_KEY)
    if value is not None:
        return value == "1"
    latest = KillSwitchEvent.objects.order_by("-at", "-id").first()
    engaged = bool(latest and latest.engaged)
    client.set(KILL_SWITCH_KEY, "1" if engaged else "0", nx=True)
    return engaged


def limits_in_force() -> RiskLimits | None:
    return RiskLimits.objects.filter(active=True).first()


def decision_for_signal(*, signal_id: str) -> RiskDecision | None:
    return RiskDecision.objects.select_related("signal").filter(signal__signal_id=signal_id).first()


def decisions_recent(*, limit: int = 100) -> QuerySet[RiskDecision]:
    return RiskDecision.objects.select_related("signal").order_by("-decided_at", "-id")[:limit]


def broker_connected() -> tuple[bool, str]:
    """Whether new entries can reach the broker, and why in words.

    The paper broker runs in-process, so it is always connected.  For Interactive Brokers the connection owner keeps
    ``execution:broker:state``; a missing hash (the owner never started, or Redis was flushed) counts as disconnected,
    like an explicit ``connected != "1"``: without a broker the platform only reduces (exits are not reviewed here).
    """
    if settings.BROKER == "paper":
        return True, "paper broker in process"
    state = cast(dict[str, str], store.get_redis().hgetall(BROKER_STATE_KEY))  # decode_responses
    broker = state.get("broker") or settings.BROKER
    if not state:
        return False, f"{broker} broker has reported no connection state ({BROKER_STATE_KEY} is missing)"
    since = state.get("since") or "?"
    detail = state.get("detail") or ""
    if state.get("connected") != "1":
        return False, f"{broker} broker disconnected since {since}" + (f": {detail}" if detail else "")
    return True, f"{broker} broker connected since {since}" + (f" ({detail})" if detail else "")


def broker_account() -> dict[str, Any] | None:
    """The broker's account values (``Decimal`` per field of ``BROKER_ACCOUNT_FIELDS``, ``updated_at`` a datetime)
    when the connection owner wrote them within 120 s of the platform clock, else ``None``.

    A hash that cannot be read (a field missing or not a number) is logged and ignored like a stale one: the review
    then judges by the book alone, and the decision's ``account`` says so.
    """
    data = cast(dict[str, str], store.get_redis().hgetall(BROKER_ACCOUNT_KEY))  # decode_responses
    if not data:
        return None
    try:
        updated_at = datetime.fromisoformat(data["updated_at"])
        if updated_at.tzinfo is None:
            raise ValueError("updated_at has no time zone")
        values: dict[str, Any] = {name: to_decimal(data[name]) for name in BROKER_ACCOUNT_FIELDS}
    except (KeyError, ValueError, InvalidAmount) as exc:
        logger.warning("%s is unreadable, judging by the book alone: %s", BROKER_ACCOUNT_KEY, exc)
        return None
    # Both directions: a replay's simulated clock can sit far from the wall time the connection owner stamps.
    if abs(clock.now() - updated_at) > BROKER_ACCOUNT_MAX_AGE:
        return None
    values["updated_at"] = updated_at
    return values
