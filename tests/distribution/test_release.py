"""Releasing posts through the real discord-webhook client to the local Discord stand-in, on a simulated clock."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from apps.core import clock, store
from apps.core.standins.discord import Scripted
from apps.distribution import selectors, services
from apps.distribution.models import DistributionLog, DistributionPost, DistributionTier
from tests.distribution.conftest import SESSION_START, schedule_trade, trade_like

pytestmark = pytest.mark.django_db
Status = DistributionPost.Status


def at(seconds: float) -> None:
    clock.advance_to(SESSION_START + timedelta(seconds=seconds))


@pytest.fixture(autouse=True)
def _simulated_session():
    clock.set_simulated(SESSION_START)
    yield


def test_each_tier_receives_each_post_once_at_its_delay(discord, webhooks):
    schedule_trade("entry", trade_like(1))
    schedule_trade("entry", trade_like(2))

    first = services.posts_release_due()
    assert first["by_tier"] == {"premium": 2}
    assert len(discord.delivered(webhooks["premium"])) == 2
    assert discord.requests_to(webhooks["standard"]) == []

    at(59)
    assert services.posts_release_due()["sent"] == 0
    at(60)
    assert services.posts_release_due()["by_tier"] == {"standard": 2}
    at(299)
    assert services.posts_release_due()["sent"] == 0
    at(300)
    assert services.posts_release_due()["by_tier"] == {"free": 2}

    for webhook in webhooks.values():
        bodies = [r.body["embeds"][0]["footer"]["text"] for r in discord.requests_to(webhook)]
        assert sorted(bodies) == sorted(set(bodies)) and len(bodies) == 2
        assert all(r.query == {"wait": ["True"]} for r in discord.requests_to(webhook))
    assert selectors.posts_by_tier() == {"premium": 2, "standard": 2, "free": 2}
    sent = DistributionPost.objects.get(ref="trade:1", tier="standard")
    assert sent.status == Status.SENT
    assert sent.sink == "discord"
    assert sent.message_id == discord.delivered(webhooks["standard"])[0].message_id
    assert sent.sent_at == SESSION_START + timedelta(seconds=60)
    assert sent.lateness_ms == 0 and sent.late is False
    assert list(sent.logs.values_list("outcome", "status_code")) == [("sent", 200)]


def test_announcing_the_same_trade_twice_schedules_one_post_per_tier(discord, webhooks):
    first = schedule_trade("entry", trade_like(5))
    at(10)
    again = schedule_trade("entry", trade_like(5))

    assert [p.pk for p in first] == [p.pk for p in again]
    assert DistributionPost.objects.count() == 3
    assert again[1].release_at == SESSION_START + timedelta(seconds=60)


def test_schedule_mirrors_release_times_in_the_redis_sorted_set(discord, webhooks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        posts = schedule_trade("exit", trade_like(8))

    scheduled = dict(store.get_redis().zrange(services.SCHEDULED_KEY, 0, -1, withscores=True))
    assert scheduled == {str(p.pk): p.release_at.timestamp() for p in posts}
    services.posts_release_due()
    assert str(posts[0].pk) not in store.get_redis().zrange(services.SCHEDULED_KEY, 0, -1)
    assert store.get_redis().llen(services.QUEUE_KEY) == 0


def test_release_twice_at_the_same_instant_sends_once(discord, webhooks):
    schedule_trade("entry", trade_like(1))

    assert services.posts_release_due()["sent"] == 1
    assert services.posts_release_due()["sent"] == 0
    assert len(discord.requests_to(webhooks["premium"])) == 1


def test_a_429_storm_is_honoured_without_losing_or_doubling_posts(discord, webhooks):
    limited = Scripted(429, {"message": "You are being rate limited.", "retry_after": 2.5}, {"Retry-After": "2"})
    discord.script(webhooks["premium"], *[limited] * 3)
    for trade_id in (1, 2, 3):
        schedule_trade("entry", trade_like(trade_id))

    counts = services.posts_release_due()
    # One 429 blocks the tier for the rest of the sweep: the other two posts are not even tried.
    assert counts == {**counts, "sent": 0, "rate_limited": 1}
    assert len(discord.requests_to(webhooks["premium"])) == 1
    assert set(DistributionPost.objects.filter(tier="premium").values_list("release_at", flat=True)) == {
        SESSION_START + timedelta(seconds=2)
    }

    at(1)
    assert services.posts_release_due()["sent"] == 0
    assert len(discord.requests_to(webhooks["premium"])) == 1  # nothing is sent before Retry-After has passed
    for second in range(2, 20):
        at(second)
        services.posts_release_due()

    assert len(discord.requests_to(webhooks["premium"])) == 3 + 3  # three 429s, then one delivery per post
    delivered = discord.delivered(webhooks["premium"])
    assert sorted(r.body["embeds"][0]["footer"]["text"] for r in delivered) == [
        f"premium tier · trade #{n} · not investment advice" for n in (1, 2, 3)
    ]
    premium = DistributionPost.objects.filter(tier="premium")
    assert set(premium.values_list("status", flat=True)) == {Status.SENT}
    assert DistributionLog.objects.filter(tier="premium", outcome="rate_limited").count() == 3
    assert all(p.failures == 0 for p in premium)


def test_a_429_with_only_a_body_retry_after_is_honoured(discord, webhooks):
    discord.script(webhooks["premium"], Scripted(429, {"message": "rate limited", "retry_after": 4.5, "global": False}))
    (post, *_) = schedule_trade("entry", trade_like(1))

    services.posts_release_due()
    post.refresh_from_db()
    assert post.status == Status.SCHEDULED
    assert post.release_at == SESSION_START + timedelta(seconds=4.5)
    assert post.due_at == SESSION_START

    at(4.5)
    services.posts_release_due()
    post.refresh_from_db()
    assert post.status == Status.SENT
    assert post.lateness_ms == 4500 and post.late is False
    assert post.attempts == 2


def test_a_deleted_webhook_404_marks_the_post_failed_and_it_is_not_retried(discord, webhooks):
    discord.gone(webhooks["premium"])
    (post, *_) = schedule_trade("entry", trade_like(1))

    counts = services.posts_release_due()
    at(600)
    services.posts_release_due()

    post.refresh_from_db()
    assert counts["failed"] == 1
    assert post.status == Status.FAILED
    assert "404" in post.last_error
    assert len(discord.requests_to(webhooks["premium"])) == 1
    log = post.logs.get()
    assert (log.outcome, log.status_code) == ("failed", 404)
    assert "Unknown Webhook" in log.response_excerpt
    # The other tiers still went out: one dead webhook does not hold back the rest.
    assert selectors.posts_by_tier() == {"premium": 0, "standard": 1, "free": 1}


def test_a_server_error_is_retried_with_backoff_then_delivered(discord, webhooks):
    discord.script(webhooks["premium"], Scripted(500, b"<html>oops</html>"), Scripted(502, b"bad gateway"))
    (post, *_) = schedule_trade("entry", trade_like(1))

    assert services.posts_release_due()["retried"] == 1
    post.refresh_from_db()
    assert post.release_at == SESSION_START + timedelta(seconds=services.BACKOFF_BASE_SECONDS)
    at(5)
    services.posts_release_due()
    post.refresh_from_db()
    assert post.release_at == SESSION_START + timedelta(seconds=5 + 2 * services.BACKOFF_BASE_SECONDS)
    at(15)
    services.posts_release_due()

    post.refresh_from_db()
    assert post.status == Status.SENT
    assert post.failures == 2 and post.attempts == 3
    assert list(post.logs.order_by("at", "pk").values_list("status_code", flat=True)) == [500, 502, 200]
    assert len(discord.delivered(webhooks["premium"])) == 1


def test_retries_stop_at_the_bound_and_the_post_is_marked_failed(discord, webhooks):
    discord.script(webhooks["premium"], *[Scripted(503, b"unavailable")] * (services.MAX_FAILURES + 2))
    (post, *_) = schedule_trade("entry", trade_like(1))

    for second in range(0, 400, 5):
        at(second)
        services.posts_release_due()

    post.refresh_from_db()
    assert post.status == Status.FAILED
    assert post.failures == services.MAX_FAILURES
    assert len(discord.requests_to(webhooks["premium"])) == services.MAX_FAILURES


def test_a_post_sent_after_the_late_threshold_is_marked_late_with_its_lateness(discord, webhooks):
    schedule_trade("entry", trade_like(1))

    at(45)
    counts = services.posts_release_due()
    at(61)
    services.posts_release_due()

    premium = DistributionPost.objects.get(tier="premium")
    standard = DistributionPost.objects.get(tier="standard")
    assert counts["late"] == 1
    assert (premium.late, premium.lateness_ms) == (True, 45_000)
    assert (standard.late, standard.lateness_ms) == (False, 1_000)
    assert premium.logs.get().outcome == "late"


def test_without_a_webhook_the_local_sink_delivers_and_records(local_sink, caplog):
    caplog.set_level(logging.INFO, logger="apps.distribution.local_sink")
    schedule_trade("exit", trade_like(4, exit_reason="target", realized_pnl=Decimal("120.00")))

    counts = services.posts_release_due()

    post = DistributionPost.objects.get(tier="premium")
    assert counts["sent"] == 1
    assert (post.status, post.sink, post.message_id) == (Status.SENT, "local", f"local-{post.pk}")
    assert post.logs.get().outcome == "sent"
    assert post.logs.get().sink == "local"
    assert "distribution local sink [premium]" in caplog.text
    assert "EXIT SPY" in caplog.text


def test_a_post_stuck_in_sending_is_reclaimed_and_sent_once(discord, webhooks):
    (post, *_) = schedule_trade("entry", trade_like(1))
    # A worker claimed it and died before recording the answer.
    DistributionPost.objects.filter(pk=post.pk).update(status=Status.SENDING, claimed_at=SESSION_START, attempts=1)

    at(services.SENDING_TIMEOUT.total_seconds() - 1)
    assert services.posts_release_due()["reclaimed"] == 0
    at(services.SENDING_TIMEOUT.total_seconds() + 1)
    counts = services.posts_release_due()
    services.posts_release_due()

    post.refresh_from_db()
    assert counts["reclaimed"] == 1
    assert post.status == Status.SENT
    assert len(discord.delivered(webhooks["premium"])) == 1
    assert list(post.logs.order_by("pk").values_list("outcome", flat=True)) == ["reclaimed", "late"]


def test_release_due_task_runs_the_sweep(discord, webhooks):
    from apps.distribution.tasks import release_due

    schedule_trade("entry", trade_like(1))

    result = release_due.delay().get()

    assert result["by_tier"] == {"premium": 1}


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_never_send_a_post_twice(requires_real_services, discord, webhooks):
    """Needs PostgreSQL: SQLite's in-memory test database locks whole tables across threads."""
    for trade_id in range(1, 6):
        schedule_trade("entry", trade_like(trade_id))
    discord.delay_seconds = 0.05
    results: list[dict] = []

    def sweep() -> None:
        try:
            results.append(services.posts_release_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r["sent"] for r in results) == 5
    assert len(discord.requests_to(webhooks["premium"])) == 5
    footers = [r.body["embeds"][0]["footer"]["text"] for r in discord.requests_to(webhooks["premium"])]
    assert len(set(footers)) == 5


def test_a_post_for_a_tier_that_was_removed_is_skipped_not_sent(discord, webhooks):
    schedule_trade("entry", trade_like(1))
    DistributionTier.objects.filter(name="free").delete()

    at(300)
    counts = services.posts_release_due()

    free = DistributionPost.objects.get(tier="free")
    assert counts["by_tier"] == {"premium": 1, "standard": 1}
    assert free.status == Status.SKIPPED
    assert free.logs.get().outcome == "skipped"
    assert discord.requests_to(webhooks["free"]) == []


def test_an_unreachable_webhook_is_retried_not_lost(discord, webhooks):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    DistributionTier.objects.filter(name="premium").update(webhook_url=f"http://127.0.0.1:{closed_port}/x")
    (post, *_) = schedule_trade("entry", trade_like(1))

    counts = services.posts_release_due()

    post.refresh_from_db()
    assert counts["retried"] == 1
    assert (post.status, post.failures) == (Status.SCHEDULED, 1)
    assert "unreachable" in post.last_error
