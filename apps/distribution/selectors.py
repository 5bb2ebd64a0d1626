"""Distribution reads: what each tier has received, and what is waiting."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count

from apps.core import calendar
from apps.distribution import tiers
from apps.distribution.models import DistributionPost


def posts_by_tier(*, kind: str | None = None) -> dict[str, int]:
    """Tier -> number of posts delivered (sent, on time or late); every configured tier appears, zero included."""
    query = DistributionPost.objects.filter(status=DistributionPost.Status.SENT)
    if kind is not None:
        query = query.filter(kind=kind)
    counts = {tier.name: 0 for tier in tiers.tiers_configured()}
    for row in query.values("tier").annotate(n=Count("id")):
        counts[row["tier"]] = row["n"]
    return counts


def posts_status_by_tier() -> dict[str, dict[str, int]]:
    """Tier -> status -> count, for the operations dashboard and the replay summary."""
    result: dict[str, dict[str, int]] = {tier.name: {} for tier in tiers.tiers_configured()}
    for row in DistributionPost.objects.values("tier", "status").annotate(n=Count("id")):
        result.setdefault(row["tier"], {})[row["status"]] = row["n"]
    return result


def posts_late_count() -> int:
    return DistributionPost.objects.filter(status=DistributionPost.Status.SENT, late=True).count()


def posts_for_trade(*, trade_id: int) -> list[DistributionPost]:
    return list(DistributionPost.objects.filter(trade_id=trade_id).order_by("kind", "due_at", "tier"))


def day_summary(*, day: date) -> dict[str, Any]:
    """The New York day's trading results for the daily summary post: trades closed that day, wins (PnL > 0) and
    losses, realized PnL and fees (Decimal strings), per strategy, best and worst, and how many remain open."""
    from apps.execution.models import Trade

    start = datetime.combine(day, time.min, tzinfo=calendar.NEW_YORK)
    end = start + timedelta(days=1)
    closed = list(
        Trade.objects.filter(status=Trade.Status.CLOSED, exit_at__gte=start, exit_at__lt=end).order_by("exit_at", "pk")
    )
    zero = Decimal("0")
    by_strategy: dict[str, dict[str, Any]] = {}
    for trade in closed:
        row = by_strategy.setdefault(trade.strategy, {"closed": 0, "realized_pnl": zero})
        row["closed"] += 1
        row["realized_pnl"] += trade.realized_pnl or zero

    def brief(trade: Trade) -> dict[str, Any]:
        return {
            "trade_id": trade.pk,
            "option_symbol": trade.option_symbol,
            "quantity": trade.quantity,
            "realized_pnl": str(trade.realized_pnl or zero),
        }

    ranked = sorted(closed, key=lambda t: (t.realized_pnl or zero, t.pk))
    return {
        "day": day.isoformat(),
        "closed": len(closed),
        "wins": sum(1 for t in closed if (t.realized_pnl or zero) > 0),
        "losses": sum(1 for t in closed if (t.realized_pnl or zero) <= 0),
        "still_open": Trade.objects.filter(status=Trade.Status.OPEN).count(),
        "realized_pnl": str(sum((t.realized_pnl or zero for t in closed), zero)),
        "fees": str(sum((t.fees or zero for t in closed), zero)),
        "by_strategy": {
            k: {"closed": v["closed"], "realized_pnl": str(v["realized_pnl"])} for k, v in by_strategy.items()
        },
        "best": brief(ranked[-1]) if ranked else None,
        "worst": brief(ranked[0]) if ranked else None,
    }
