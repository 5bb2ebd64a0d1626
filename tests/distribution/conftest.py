"""Distribution fixtures: the Discord stand-in on loopback and trades to announce."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest

from apps.core.standins.discord import DiscordStandin

# A Friday in a regular session, 10:00 New York (14:00 UTC in November).
SESSION_START = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
TIERS = (("premium", 0), ("standard", 60), ("free", 300))


@pytest.fixture
def discord() -> Iterator[DiscordStandin]:
    standin = DiscordStandin().start()
    yield standin
    standin.stop()


def tiers_configure(urls: dict[str, str]) -> None:
    """The tier rows in force (as an operator would set them in the admin): TIERS with these webhook URLs."""
    from apps.distribution.models import DistributionTier

    DistributionTier.objects.all().delete()
    for position, (tier, delay) in enumerate(TIERS):
        DistributionTier.objects.create(
            name=tier, delay_seconds=delay, webhook_url=urls.get(tier, ""), position=position, channel=f"#{tier}"
        )


@pytest.fixture
def webhooks(settings, discord):
    """Every tier posts to its own webhook on the stand-in: /api/webhooks/<n>/<tier>."""
    tiers_configure({tier: discord.url(f"{n}/{tier}") for n, (tier, _) in enumerate(TIERS, 1)})
    settings.DISTRIBUTION_LATE_AFTER_SECONDS = 30
    return {tier: f"{n}/{tier}" for n, (tier, _) in enumerate(TIERS, 1)}


@pytest.fixture
def local_sink(settings):
    """No webhook configured for any tier: the embedded default."""
    tiers_configure({})
    settings.DISTRIBUTION_LATE_AFTER_SECONDS = 30


def trade_like(trade_id: int = 1, *, rationale: str = "Call sweeps above the ask with GEX flipping positive.", **extra):
    """An object with the attribute names of apps.execution.models.Trade and its Signal."""
    signal = SimpleNamespace(
        strategy="zero_dte",
        direction="bullish",
        rule="sweep_cluster_above_ask",
        rationale=rationale,
        confidence=Decimal("0.7250"),
        profit_target_pct=Decimal("0.5"),
        stop_loss_pct=Decimal("0.3"),
        time_exit_at=datetime(2026, 11, 20, 20, 45, tzinfo=UTC),
    )
    values = dict(
        id=trade_id,
        signal=signal,
        strategy="zero_dte",
        ticker="SPY",
        option_symbol="SPY261120C00600000",
        quantity=2,
        entry_price=Decimal("1.25"),
        entry_at=SESSION_START,
        exit_price=None,
        exit_at=None,
        exit_reason="",
        realized_pnl=None,
        fees=Decimal("1.30"),
        status="open",
    )
    values.update(extra)
    return SimpleNamespace(**values)


def schedule_trade(kind: str, trade) -> list:
    """Schedule a trade-like object's announcement the way post_schedule does for a real Trade row."""
    from apps.distribution import services
    from apps.distribution.discord import messages

    payloads = {
        tier: messages.trade_message(kind=kind, trade=trade, signal=trade.signal, tier=tier) for tier, _ in TIERS
    }
    return services.post_schedule_payloads(kind=kind, ref=f"trade:{trade.id}", trade_id=trade.id, payloads=payloads)
