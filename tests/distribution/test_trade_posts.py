"""Posts that follow a real trade through the pipeline: the entry, a stop move, the daily summary."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.core import clock
from apps.distribution.models import DistributionPost
from apps.distribution.tasks import daily_summary
from apps.execution import services as execution
from tests.distribution.conftest import tiers_configure
from tests.execution.test_brackets import entered
from tests.risk.conftest import _session_clock
from tests.risk.factories import ny

__all__ = ["_session_clock"]  # the risk tests' session clock (autouse): a trading morning on the platform clock

pytestmark = pytest.mark.django_db(transaction=True)  # each stage hands over on commit


def test_a_stop_move_is_announced_to_every_tier_never_before_its_entry():
    tiers_configure({})
    trade = entered()
    clock.advance_to(ny(10, 31))

    execution.trade_stop_adjust(trade_id=trade.pk, stop_price=Decimal("1.05"), by="ops", reason="tighter after news")

    entries = {p.tier: p for p in DistributionPost.objects.filter(kind="entry", trade_id=trade.pk)}
    stops = {p.tier: p for p in DistributionPost.objects.filter(kind="stop", trade_id=trade.pk)}
    assert set(stops) == set(entries) == {"premium", "standard", "free"}
    for tier, stop in stops.items():
        assert stop.due_at >= entries[tier].due_at
        embed = stop.content["embeds"][0]
        assert embed["title"].startswith("STOP MOVED SPY")
        assert {f["name"]: f["value"] for f in embed["fields"]}["New stop"] == "$1.05"
        assert embed["description"] == "tighter after news"


def test_the_daily_summary_is_posted_on_a_trading_day_and_not_on_a_holiday():
    tiers_configure({})
    trade = entered()
    clock.advance_to(ny(10, 40))
    execution.trade_stop_adjust(trade_id=trade.pk, stop_price=Decimal("1.05"), by="ops", reason="x")

    assert daily_summary("2026-11-26") == []  # Thanksgiving: the market is closed
    day = clock.now().astimezone(ny(0, 0).tzinfo).date()
    posts = DistributionPost.objects.filter(pk__in=daily_summary(day.isoformat()))

    assert sorted(p.tier for p in posts) == ["free", "premium", "standard"]
    premium = posts.get(tier="premium").content["embeds"][0]
    assert premium["title"] == f"DAILY SUMMARY {day.isoformat()}"
    fields = {f["name"]: f["value"] for f in premium["fields"]}
    assert fields["Still open"] == "1" and fields["Trades closed"] == "0"
    assert isinstance(day, date)
