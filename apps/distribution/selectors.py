"""Distribution reads: what each tier has received, and what is waiting."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count

from apps.distribution.models import DistributionPost


def posts_by_tier(*, kind: str | None = None) -> dict[str, int]:
    """Tier -> number of posts delivered (sent, on time or late); every configured tier appears, zero included."""
    query = DistributionPost.objects.filter(status=DistributionPost.Status.SENT)
    if kind is not None:
        query = query.filter(kind=kind)
    counts = {tier: 0 for tier, _ in settings.DISTRIBUTION_TIERS}
    for row in query.values("tier").annotate(n=Count("id")):
        counts[row["tier"]] = row["n"]
    return counts


def posts_status_by_tier() -> dict[str, dict[str, int]]:
    """Tier -> status -> count, for the operations dashboard and the replay summary."""
    result: dict[str, dict[str, int]] = {tier: {} for tier, _ in settings.DISTRIBUTION_TIERS}
    for row in DistributionPost.objects.values("tier", "status").annotate(n=Count("id")):
        result.setdefault(row["tier"], {})[row["status"]] = row["n"]
    return result


def posts_late_count() -> int:
    return DistributionPost.objects.filter(status=DistributionPost.Status.SENT, late=True).count()


def posts_for_trade(*, trade_id: int) -> list[DistributionPost]:
    return list(DistributionPost.objects.filter(trade_id=trade_id).order_by("kind", "due_at", "tier"))
