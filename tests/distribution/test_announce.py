"""Announcing real trades: distribution.announce reads the Trade and its Signal and schedules one post per tier."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from apps.core import clock
from apps.distribution import selectors, services
from apps.distribution.models import DistributionPost
from apps.distribution.tasks import announce
from tests.distribution.conftest import SESSION_START
from tests.distribution.rows import signal_row, trade_row

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _simulated_session():
    clock.set_simulated(SESSION_START)


@pytest.fixture
def trade():
    return trade_row(signal=signal_row(at=SESSION_START), at=SESSION_START)


def test_announce_schedules_each_tier_with_the_signal_rationale(discord, webhooks, trade):
    post_ids = announce.delay("entry", trade.pk).get()

    posts = DistributionPost.objects.filter(pk__in=post_ids).order_by("due_at")
    assert [(p.tier, p.due_at - SESSION_START) for p in posts] == [
        ("premium", timedelta(0)),
        ("standard", timedelta(seconds=60)),
        ("free", timedelta(seconds=300)),
    ]
    assert {p.trade_id for p in posts} == {trade.pk}
    assert {p.ref for p in posts} == {f"trade:{trade.pk}"}
    embed = posts[0].content["embeds"][0]
    assert embed["description"] == trade.signal.rationale
    assert embed["title"] == f"ENTRY SPY BULLISH {trade.option_symbol}"


def test_announcing_a_trade_twice_keeps_one_post_per_tier(discord, webhooks, trade):
    first = announce.delay("entry", trade.pk).get()
    second = announce.delay("entry", trade.pk).get()

    assert first == second
    assert DistributionPost.objects.count() == 3


def test_entry_and_exit_of_one_trade_reach_every_tier_once_each(discord, webhooks, trade):
    announce.delay("entry", trade.pk).get()
    services.posts_release_due()
    clock.advance_to(SESSION_START + timedelta(minutes=20))
    trade.exit_price, trade.exit_at, trade.exit_reason = Decimal("1.90"), clock.now(), "target"
    trade.realized_pnl, trade.status = Decimal("127.40"), "closed"
    trade.save()
    announce.delay("exit", trade.pk).get()

    for minutes in (20, 21, 25, 26):
        clock.advance_to(SESSION_START + timedelta(minutes=minutes))
        services.posts_release_due()

    assert selectors.posts_by_tier(kind="entry") == {"premium": 1, "standard": 1, "free": 1}
    assert selectors.posts_by_tier(kind="exit") == {"premium": 1, "standard": 1, "free": 1}
    for webhook in webhooks.values():
        contents = [r.body["content"] for r in discord.delivered(webhook)]
        assert contents == [
            f"Opened 2 x {trade.option_symbol} at $1.25",
            "Closed SPY (profit target reached): $127.40",
        ]


def test_announcing_an_unknown_trade_is_an_error(webhooks):
    with pytest.raises(services.TradeNotFound):
        services.post_schedule(kind="entry", trade_id=987654)
    assert DistributionPost.objects.count() == 0


def test_a_report_kind_cannot_be_announced_as_a_trade(webhooks, trade):
    with pytest.raises(ValueError, match="entry"):
        services.post_schedule(kind="report", trade_id=trade.pk)
