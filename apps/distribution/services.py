"""Distribution writes: scheduling one post per Discord tier and releasing the ones that are due.

Guarantees:
- ``post_schedule`` is idempotent: the unique key (kind, ref, tier) means a redelivered announce adds nothing.
- ``posts_release_due`` claims each post with a conditional UPDATE (``scheduled -> sending`` where it is still
  scheduled and due), so two sweeps running at once never send the same post twice.
- A rate-limited post goes back to ``scheduled`` with ``release_at`` pushed past the limit: never lost, never doubled.
- A post whose send never finished (a worker killed mid-request) is put back by the sweep after ``SENDING_TIMEOUT``.
  That is the one case that can show a message twice (Discord received it, we never learned so): at-least-once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from apps.core import clock, store
from apps.distribution.discord import messages
from apps.distribution.discord.transport import Delivery, TransportError, webhook_send
from apps.distribution.models import DistributionLog, DistributionPost, PostKind

logger = logging.getLogger(__name__)
local_sink_logger = logging.getLogger("apps.distribution.local_sink")

SCHEDULED_KEY = "distribution:scheduled"  # sorted set: post id -> release epoch seconds (mirror of the DB)
QUEUE_KEY = "distribution:queue"  # list: ids of posts being sent right now (claimed, not yet recorded)

SENDING_TIMEOUT = timedelta(seconds=120)  # > the HTTP timeout with margin: a send this old has lost its worker
RELEASE_BATCH = 200  # posts per sweep: keeps one beat tick short; the next tick (5 s) takes the rest
MAX_FAILURES = 5  # transient errors (5xx, connection) before a post is marked failed
BACKOFF_BASE_SECONDS = 5
BACKOFF_MAX_SECONDS = 300
Post = DistributionPost
Status = DistributionPost.Status
Outcome = DistributionLog.Outcome


class TradeNotFound(LookupError):
    """The trade to announce does not exist; the failed task is kept as a dead letter."""


def _tier_delays() -> dict[str, int]:
    return dict(settings.DISTRIBUTION_TIERS)


def _webhook_url(tier: str) -> str:
    return (settings.DISCORD_WEBHOOK_URLS or {}).get(tier, "") or ""


def _mirror_scheduled(posts: list[tuple[int, datetime]]) -> None:
    if posts:
        store.get_redis().zadd(SCHEDULED_KEY, {str(pk): release_at.timestamp() for pk, release_at in posts})


def _log(post: DistributionPost, *, outcome: str, status_code: int | None = None, excerpt: str = "") -> None:
    DistributionLog.objects.create(
        post=post,
        tier=post.tier,
        sink=post.sink,
        outcome=outcome,
        status_code=status_code,
        response_excerpt=(excerpt or "")[:500],
        at=clock.now(),
    )


@transaction.atomic
def post_schedule_payloads(
    *, kind: str, ref: str, trade_id: int | None, payloads: dict[str, dict[str, Any]]
) -> list[DistributionPost]:
    """One post per configured tier (payload per tier) released at now + the tier's delay; existing posts are kept.

    Returns the tier posts in tier order, created or found.
    """
    if kind not in PostKind.values:
        raise ValueError(f"unknown post kind {kind!r}; expected one of {', '.join(PostKind.values)}")
    now = clock.now()
    posts: list[DistributionPost] = []
    created: list[tuple[int, datetime]] = []
    for tier, delay in settings.DISTRIBUTION_TIERS:
        due = now + timedelta(seconds=delay)
        try:
            with transaction.atomic():
                post, was_created = DistributionPost.objects.get_or_create(
                    kind=kind,
                    ref=ref,
                    tier=tier,
                    defaults={
                        "trade_id": trade_id,
                        "due_at": due,
                        "release_at": due,
                        "content": messages.payload_fit(payloads[tier]),
                        "created_at": now,
                    },
                )
        except IntegrityError:
            # A concurrent announce created it between our read and insert: theirs is the post.
            post, was_created = DistributionPost.objects.get(kind=kind, ref=ref, tier=tier), False
        posts.append(post)
        if was_created:
            created.append((post.pk, post.release_at))
    transaction.on_commit(lambda: _mirror_scheduled(created))
    return posts


def post_schedule(*, kind: str, trade_id: int) -> list[DistributionPost]:
    """Announce a trade's entry or exit to every tier, each released after its delay (idempotent per kind/trade)."""
    if kind not in (PostKind.ENTRY, PostKind.EXIT):
        raise ValueError(f"a trade announcement is 'entry' or 'exit', not {kind!r}")
    from apps.execution.models import Trade

    trade = Trade.objects.select_related("signal").filter(pk=trade_id).first()
    if trade is None:
        raise TradeNotFound(f"trade {trade_id} does not exist")
    payloads = {
        tier: messages.trade_message(kind=kind, trade=trade, signal=trade.signal, tier=tier)
        for tier, _ in settings.DISTRIBUTION_TIERS
    }
    return post_schedule_payloads(kind=kind, ref=f"trade:{trade_id}", trade_id=trade_id, payloads=payloads)


def report_post_schedule(*, report_ref: str, title: str, text: str) -> list[DistributionPost]:
    """Schedule a market report (already approved by a person) to every tier; idempotent per report."""
    payloads = {
        tier: messages.report_message(title=title, text=text, tier=tier) for tier, _ in settings.DISTRIBUTION_TIERS
    }
    return post_schedule_payloads(kind=PostKind.REPORT, ref=f"report:{report_ref}", trade_id=None, payloads=payloads)


@dataclass
class ReleaseCounts:
    """What one sweep did, per outcome and per tier (what the replay prints)."""

    sent: int = 0
    late: int = 0
    rate_limited: int = 0
    retried: int = 0
    failed: int = 0
    reclaimed: int = 0
    by_tier: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "late": self.late,
            "rate_limited": self.rate_limited,
            "retried": self.retried,
            "failed": self.failed,
            "reclaimed": self.reclaimed,
            "by_tier": dict(self.by_tier),
        }


def posts_reclaim_stuck() -> int:
    """Put back on the schedule every post stuck in ``sending`` longer than SENDING_TIMEOUT (its worker died)."""
    now = clock.now()
    reclaimed = 0
    cutoff = now - SENDING_TIMEOUT
    for post in DistributionPost.objects.filter(status=Status.SENDING, claimed_at__lt=cutoff):
        assert post.claimed_at is not None  # claimed_at__lt above
        updated = DistributionPost.objects.filter(pk=post.pk, status=Status.SENDING, claimed_at=post.claimed_at).update(
            status=Status.SCHEDULED, release_at=now, claimed_at=None, last_error="reclaimed: send never finished"
        )
        if updated == 1:
            reclaimed += 1
            _log(post, outcome=Outcome.RECLAIMED, excerpt=f"in sending since {post.claimed_at.isoformat()}")
            client = store.get_redis()
            client.lrem(QUEUE_KEY, 0, str(post.pk))
            client.zadd(SCHEDULED_KEY, {str(post.pk): now.timestamp()})
    if reclaimed:
        logger.warning("distribution: reclaimed %d posts stuck in sending", reclaimed)
    return reclaimed


def _claim(post_id: int, now: datetime) -> bool:
    updated = DistributionPost.objects.filter(pk=post_id, status=Status.SCHEDULED, release_at__lte=now).update(
        status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
    )
    return updated == 1


def _block_tier(tier: str, until: datetime) -> None:
    """Everything else this tier has due waits for the rate limit too, instead of drawing more 429s."""
    ids = list(
        DistributionPost.objects.filter(tier=tier, status=Status.SCHEDULED, release_at__lt=until).values_list(
            "pk", flat=True
        )
    )
    if ids:
        DistributionPost.objects.filter(pk__in=ids, status=Status.SCHEDULED, release_at__lt=until).update(
            release_at=until
        )
        store.get_redis().zadd(SCHEDULED_KEY, {str(pk): until.timestamp() for pk in ids})


def _finish_sent(post: DistributionPost, *, sink: str, message_id: str, status_code: int | None, excerpt: str) -> str:
    now = clock.now()
    lateness = now - post.due_at
    lateness_ms = max(int(lateness.total_seconds() * 1000), 0)
    late = lateness > timedelta(seconds=settings.DISTRIBUTION_LATE_AFTER_SECONDS)
    updated = DistributionPost.objects.filter(pk=post.pk, status=Status.SENDING).update(
        status=Status.SENT,
        sink=sink,
        message_id=message_id,
        sent_at=now,
        lateness_ms=lateness_ms,
        late=late,
        claimed_at=None,
        last_error="",
    )
    post.sink = sink
    if updated != 1:
        # The sweep reclaimed it while our request was in flight (it took longer than SENDING_TIMEOUT).  The message
        # is out; record it, and the reclaimed copy may go out again (logged so the duplicate is explainable).
        logger.warning("distribution: post %s was reclaimed while being sent; it may appear twice", post.pk)
    outcome = Outcome.LATE if late else Outcome.SENT
    _log(post, outcome=outcome, status_code=status_code, excerpt=excerpt or message_id)
    if late:
        logger.warning("distribution: post %s to %s sent %d ms after it was due", post.pk, post.tier, lateness_ms)
    return outcome


def _send_local(post: DistributionPost) -> str:
    """The local sink: the message goes to the log (console/JSON) and the database, as delivered."""
    embeds = post.content.get("embeds") or []
    local_sink_logger.info(
        "distribution local sink [%s] %s: %s",
        post.tier,
        post.content.get("content", ""),
        embeds[0].get("title", "") if embeds else "",
        extra={"post_id": post.pk, "tier": post.tier, "kind": post.kind, "payload": post.content},
    )
    return _finish_sent(post, sink=Post.Sink.LOCAL, message_id=f"local-{post.pk}", status_code=None, excerpt="")


def _backoff(failures: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS))


def _handle_error(post: DistributionPost, error: TransportError, counts: ReleaseCounts) -> datetime | None:
    """Record a failed attempt; returns the instant the tier is blocked until when it was a rate limit."""
    now = clock.now()
    base = DistributionPost.objects.filter(pk=post.pk, status=Status.SENDING)
    if error.retry_after is not None:
        until = now + timedelta(seconds=error.retry_after)
        base.update(status=Status.SCHEDULED, release_at=until, claimed_at=None, last_error=str(error))
        store.get_redis().zadd(SCHEDULED_KEY, {str(post.pk): until.timestamp()})
        _log(post, outcome=Outcome.RATE_LIMITED, status_code=error.status_code, excerpt=error.excerpt)
        counts.rate_limited += 1
        return until
    failures = post.failures + 1
    if error.permanent or failures >= MAX_FAILURES:
        base.update(status=Status.FAILED, failures=failures, claimed_at=None, last_error=str(error))
        _log(post, outcome=Outcome.FAILED, status_code=error.status_code, excerpt=error.excerpt or str(error))
        logger.error("distribution: post %s to %s failed for good: %s", post.pk, post.tier, error)
        counts.failed += 1
        return None
    retry_at = now + _backoff(failures)
    base.update(status=Status.SCHEDULED, release_at=retry_at, failures=failures, claimed_at=None, last_error=str(error))
    store.get_redis().zadd(SCHEDULED_KEY, {str(post.pk): retry_at.timestamp()})
    _log(post, outcome=Outcome.FAILED, status_code=error.status_code, excerpt=error.excerpt or str(error))
    counts.retried += 1
    return None


def post_release(*, post_id: int, counts: ReleaseCounts | None = None) -> str | None:
    """Claim one due post and deliver it.  Returns the outcome, or None when it was not ours to send (already
    claimed by another sweep, already sent, or not due)."""
    counts = counts if counts is not None else ReleaseCounts()
    now = clock.now()
    if not _claim(post_id, now):
        return None
    post = DistributionPost.objects.get(pk=post_id)
    client = store.get_redis()
    client.zrem(SCHEDULED_KEY, str(post.pk))
    client.lpush(QUEUE_KEY, str(post.pk))
    try:
        if post.tier not in _tier_delays():
            # The tier was removed from DISTRIBUTION_TIERS after this post was scheduled: nobody subscribes to it
            # any more, and sending it to the local sink would pretend it was delivered.
            DistributionPost.objects.filter(pk=post.pk, status=Status.SENDING).update(
                status=Status.SKIPPED, claimed_at=None, last_error=f"tier {post.tier!r} is no longer configured"
            )
            _log(post, outcome=Outcome.SKIPPED, excerpt=f"tier {post.tier!r} is no longer configured")
            return Outcome.SKIPPED
        url = _webhook_url(post.tier)
        if not url:
            outcome = _send_local(post)
        else:
            post.sink = Post.Sink.DISCORD
            try:
                delivery: Delivery = webhook_send(url=url, payload=post.content)
            except TransportError as error:
                until = _handle_error(post, error, counts)
                if until is not None:
                    _block_tier(post.tier, until)
                return Outcome.RATE_LIMITED if until is not None else Outcome.FAILED
            outcome = _finish_sent(
                post,
                sink=Post.Sink.DISCORD,
                message_id=delivery.message_id,
                status_code=delivery.status_code,
                excerpt=delivery.excerpt,
            )
            if delivery.remaining == 0 and delivery.reset_after:
                # Discord says the bucket is empty: wait for it rather than earn a 429.
                _block_tier(post.tier, clock.now() + timedelta(seconds=delivery.reset_after))
    finally:
        client.lrem(QUEUE_KEY, 0, str(post.pk))
    counts.sent += 1
    counts.by_tier[post.tier] += 1
    if outcome == Outcome.LATE:
        counts.late += 1
    return outcome


def posts_release_due() -> dict[str, Any]:
    """Send every post whose release time has come (oldest first, up to RELEASE_BATCH), after putting back any post
    whose send was abandoned.  Returns counts: sent, late, rate_limited, retried, failed, reclaimed, by_tier.

    Safe to run concurrently and repeatedly: each post is claimed by one conditional UPDATE before it is sent.
    """
    counts = ReleaseCounts()
    counts.reclaimed = posts_reclaim_stuck()
    now = clock.now()
    due = list(
        DistributionPost.objects.filter(status=Status.SCHEDULED, release_at__lte=now)
        .order_by("release_at", "pk")
        .values_list("pk", "tier")[:RELEASE_BATCH]
    )
    blocked: set[str] = set()
    for post_id, tier in due:
        if tier in blocked:
            continue  # _block_tier pushed it past the rate limit; claiming it now would fail the release_at check
        outcome = post_release(post_id=post_id, counts=counts)
        if outcome == Outcome.RATE_LIMITED:
            blocked.add(tier)
    return counts.as_dict()
