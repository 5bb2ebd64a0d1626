"""Reads of the risk state: the kill switch, the limits in force, decisions."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core import store
from apps.risk.models import KillSwitchEvent, RiskDecision, RiskLimits

KILL_SWITCH_KEY = "risk:kill_switch"


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
