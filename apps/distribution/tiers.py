"""The subscriber tiers in force: the ``distribution_tiers`` rows (edited in the admin) or, while that table is empty,
the settings ``DISTRIBUTION_TIERS`` and ``DISCORD_WEBHOOK_URL_<TIER>``."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from apps.distribution.models import DistributionTier


@dataclass(frozen=True)
class Tier:
    name: str
    delay_seconds: int
    webhook_url: str  # empty: the local sink
    channel: str
    enabled: bool


def tiers_configured() -> list[Tier]:
    """Every tier, disabled ones included, in announcement order."""
    rows = list(DistributionTier.objects.all())
    if rows:
        return [Tier(r.name, r.delay_seconds, r.webhook_url, r.channel, r.enabled) for r in rows]
    urls = settings.DISCORD_WEBHOOK_URLS or {}
    return [Tier(name, delay, urls.get(name, "") or "", "", True) for name, delay in settings.DISTRIBUTION_TIERS]


def tiers_in_force() -> list[Tier]:
    """The enabled tiers: each new announcement gets one post per tier here."""
    return [t for t in tiers_configured() if t.enabled]


def tier_get(name: str) -> Tier | None:
    return next((t for t in tiers_configured() if t.name == name), None)
