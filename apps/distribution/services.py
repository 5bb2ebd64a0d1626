"""Distribution writes: scheduling one post per Discord tier, releasing each at its due time, and amending posts.

Guarantees:
- ``post_schedule`` is idempotent: the unique key (kind, ref, tier) means a redelivered announce adds nothing.
- Punctuality without long countdowns: a post due within ``LOOKAHEAD`` gets a send task counting down to its release
  time (queued once per release time, at schedule time or by the beat sweep); the sweep itself sends anything whose
  task has not run ``OVERDUE`` after it fell due.  Countdowns never exceed ``LOOKAHEAD`` (seconds), far below the
  broker's visibility timeout.
- Every send claims its post with a conditional UPDATE (``scheduled -> sending`` where it is still scheduled and due),
  so the task and the sweep, or two sweeps, never send the same post twice.
- A rate-limited post goes back to ``scheduled`` with ``release_at`` pushed past the limit: never lost, never doubled.
- A send whose worker died: its redelivered task (same task id, ``task_reject_on_worker_lost``) takes the post back
  at once; otherwise the sweep does after ``SENDING_TIMEOUT``.  That is the one case that can show a message twice
  (Discord received it, we never learned so: webhooks have no idempotency key): at-least-once.
- Corrections and retractions reach every tier that received the original; a tier that had not received it yet gets
  the corrected post instead, or nothing (a retracted post is skipped).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from apps.core import clock, store
from apps.distribution import tiers
from apps.distribution.discord import messages
from apps.distribution.discord.transport import Delivery, TransportError, webhook_send
from apps.distribution.models import DistributionLog, DistributionPost, PostKind
from apps.ops import metrics

logger = logging.getLogger(__name__)
local_sink_logger = logging.getLogger("apps.distribution.local_sink")

SCHEDULED_KEY = "distribution:scheduled"  # sorted set: post id -> release epoch seconds (mirror of the DB)
QUEUE_KEY = "distribution:queue"  # list: ids of posts being sent right now (claimed, not yet recorded)

SEND_TASK = "distribution.send_post"
SENDING_TIMEOUT = timedelta(seconds=45)  # > the HTTP timeout (10 s) with margin: a send this old has lost its worker
RELEASE_BATCH = 200  # posts per sweep: keeps one beat tick short; the next tick (5 s) takes the rest
# The sweep runs every 5 s (schedules.py): it queues a countdown send for what falls due before its next two ticks,
# and sends by itself what a queued send left waiting longer than OVERDUE.
LOOKAHEAD = timedelta(seconds=12)
OVERDUE = timedelta(seconds=2)
MAX_FAILURES = 5  # transient errors (5xx, connection) before a post is marked failed
BACKOFF_BASE_SECONDS = 5
BACKOFF_MAX_SECONDS = 300
Post = DistributionPost
Status = DistributionPost.Status
Outcome = DistributionLog.Outcome


class TradeNotFound(LookupError):
    """The trade to announce does not exist; the failed task is kept as a dead letter."""


class PostNotFound(LookupError):
    """The post to correct or retract does not exist."""


def _mirror_scheduled(posts: list[tuple[int, datetime]]) -> None:
    if posts:
        store.get_redis().zadd(SCHEDULED_KEY, {str(pk): release_at.timestamp() for pk, release_at in posts})


def _dispatch(posts: Iterable[tuple[int, datetime]]) -> int:
    """Queue one send task per post due within LOOKAHEAD, counting down to its release time; each release time is
    queued once (``dispatched_for``), whoever asks.  Returns how many were queued.

    With eager tasks (the embedded replay, unit tests) a countdown cannot wait: the sweep releases posts there.
    """
    from celery import current_app

    if current_app.conf.task_always_eager:
        return 0

    now = clock.now()
    queued = 0
    for pk, release_at in posts:
        if release_at > now + LOOKAHEAD:
            continue
        marked = (
            DistributionPost.objects.filter(pk=pk, status=Status.SCHEDULED, release_at=release_at)
            .exclude(dispatched_for=release_at)
            .update(dispatched_for=release_at)
        )
        if marked != 1:
            continue
        countdown = max((release_at - now).total_seconds(), 0.0)
        current_app.send_task(SEND_TASK, args=(pk,), countdown=countdown)
        queued += 1
    return queued


def _after_commit_schedule(posts: list[tuple[int, datetime]]) -> None:
    def run() -> None:
        _mirror_scheduled(posts)
        _dispatch(posts)

    if posts:
        transaction.on_commit(run)


def _log(post: DistributionPost, *, outcome: str, status_code: int | None = None, excerpt: str = "") -> None:
    DistributionLog.objects.create(
        post=post,
        channel=DistributionLog.Channel.DISCORD,
        ref=post.ref,
        tier=post.tier,
        sink=post.sink,
        outcome=outcome,
        status_code=status_code,
        response_excerpt=(excerpt or "")[:500],
        at=clock.now(),
    )


def log_delivery(
    *,
    channel: str,
    ref: str,
    target: str,
    outcome: str,
    status_code: int | None = None,
    excerpt: str = "",
    sink: str = "",
) -> DistributionLog:
    """Mirror one delivery attempt of something other than a Discord post (a social post, a Telegram message) into
    ``distribution_logs``: ``channel`` x/reddit/telegram, ``ref`` what was sent ("social:12"), ``target`` the
    audience ("r/options", a chat id), ``outcome`` a ``DistributionLog.Outcome`` value."""
    DistributionLog.Channel(channel)
    DistributionLog.Outcome(outcome)
    return DistributionLog.objects.create(
        post=None,
        channel=channel,
        ref=ref[:96],
        tier=target[:64],
        sink=sink[:8],
        outcome=outcome,
        status_code=status_code,
        response_excerpt=(excerpt or "")[:500],
        at=clock.now(),
    )


@transaction.atomic
def post_schedule_payloads(
    *,
    kind: str,
    ref: str,
    trade_id: int | None,
    payloads: dict[str, dict[str, Any]],
    not_before: dict[str, datetime] | None = None,
    amends: dict[str, DistributionPost] | None = None,
) -> list[DistributionPost]:
    """One post per tier in ``payloads`` (every tier in force has one) released at now + the tier's delay, or at
    ``not_before[tier]`` if later; existing posts are kept.  ``amends`` links a correction/retraction to the original.

    Returns the tier posts in tier order, created or found.
    """
    if kind not in PostKind.values:
        raise ValueError(f"unknown post kind {kind!r}; expected one of {', '.join(PostKind.values)}")
    now = clock.now()
    posts: list[DistributionPost] = []
    created: list[tuple[int, datetime]] = []
    delays = {t.name: t.delay_seconds for t in tiers.tiers_configured()}
    for tier in payloads:
        due = now + timedelta(seconds=delays.get(tier, 0))
        if not_before and tier in not_before:
            due = max(due, not_before[tier])
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
                        "amends": (amends or {}).get(tier),
                        "created_at": now,
                    },
                )
        except IntegrityError:
            # A concurrent announce created it between our read and insert: theirs is the post.
            post, was_created = DistributionPost.objects.get(kind=kind, ref=ref, tier=tier), False
        posts.append(post)
        if was_created:
            created.append((post.pk, post.release_at))
    _after_commit_schedule(created)
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
        tier.name: messages.trade_message(kind=kind, trade=trade, signal=trade.signal, tier=tier.name)
        for tier in tiers.tiers_in_force()
    }
    return post_schedule_payloads(kind=kind, ref=f"trade:{trade_id}", trade_id=trade_id, payloads=payloads)


def _trade_entry_due(trade_id: int) -> dict[str, datetime]:
    """When each tier is (or was) due to hear of the trade's entry: nothing about a trade may reach a tier before."""
    return dict(
        DistributionPost.objects.filter(kind=PostKind.ENTRY, ref=f"trade:{trade_id}").values_list("tier", "due_at")
    )


def stop_post_schedule(*, adjustment_id: int) -> list[DistributionPost]:
    """Announce a stop move to every tier, never before the tier got the trade's entry; idempotent per move."""
    from apps.execution.models import StopAdjustment

    adjustment = StopAdjustment.objects.select_related("trade").filter(pk=adjustment_id).first()
    if adjustment is None:
        raise TradeNotFound(f"stop adjustment {adjustment_id} does not exist")
    trade = adjustment.trade
    payloads = {
        tier.name: messages.stop_message(
            trade=trade,
            old_stop=adjustment.old_stop,
            new_stop=adjustment.new_stop,
            reason=adjustment.reason,
            at=adjustment.at,
            tier=tier.name,
        )
        for tier in tiers.tiers_in_force()
    }
    return post_schedule_payloads(
        kind=PostKind.STOP,
        ref=f"stop:{adjustment_id}",
        trade_id=trade.pk,
        payloads=payloads,
        not_before=_trade_entry_due(trade.pk),
    )


def report_post_schedule(*, report_ref: str, title: str, text: str) -> list[DistributionPost]:
    """Schedule a market report (already approved by a person) to every tier; idempotent per report."""
    payloads = {
        tier.name: messages.report_message(title=title, text=text, tier=tier.name) for tier in tiers.tiers_in_force()
    }
    return post_schedule_payloads(kind=PostKind.REPORT, ref=f"report:{report_ref}", trade_id=None, payloads=payloads)


def explanation_post_schedule(*, explanation_id: int, trade_id: int, title: str, text: str) -> list[DistributionPost]:
    """Schedule an approved AI explanation of a trade to every tier, never before that tier got the trade's entry;
    idempotent per explanation."""
    payloads = {
        tier.name: messages.explanation_message(title=title, text=text, tier=tier.name, trade_id=trade_id)
        for tier in tiers.tiers_in_force()
    }
    return post_schedule_payloads(
        kind=PostKind.EXPLANATION,
        ref=f"explanation:{explanation_id}",
        trade_id=trade_id,
        payloads=payloads,
        not_before=_trade_entry_due(trade_id),
    )


def summary_post_schedule(*, day: date | str) -> list[DistributionPost]:
    """Schedule the day's results (trades closed that New York day) to every tier; idempotent per day."""
    from apps.distribution import selectors

    day = day if isinstance(day, date) else date.fromisoformat(day)
    summary = selectors.day_summary(day=day)
    payloads = {
        tier.name: messages.summary_message(day=day.isoformat(), summary=summary, tier=tier.name)
        for tier in tiers.tiers_in_force()
    }
    return post_schedule_payloads(
        kind=PostKind.SUMMARY, ref=f"summary:{day.isoformat()}", trade_id=None, payloads=payloads
    )


# --- Corrections and retractions --------------------------------------------------------------------------------------
def _amend(*, kind: str, ref: str, amendment: str, text: str, actor: str) -> list[DistributionPost]:
    """Shared by ``post_correct`` and ``post_retract``: per tier, amend the original post of (kind, ref)."""
    from apps.ops.services import audit_record

    if not text.strip():
        raise ValueError(f"a {amendment} needs a text saying what changed")
    with transaction.atomic():
        originals = list(
            DistributionPost.objects.select_for_update().filter(kind=kind, ref=ref, amends__isnull=True).order_by("pk")
        )
        if not originals:
            raise PostNotFound(
                f"no {kind} post {ref!r} to {'correct' if amendment == PostKind.CORRECTION else 'retract'}"
            )
        seq = DistributionPost.objects.filter(kind=amendment, amends__in=originals).values("ref").distinct().count() + 1
        amendment_ref = f"{kind}:{ref}#{seq}"
        payloads: dict[str, dict[str, Any]] = {}
        amends: dict[str, DistributionPost] = {}
        skipped: list[DistributionPost] = []
        now = clock.now()
        for original in originals:
            if original.status == Status.SCHEDULED:
                # Not released to this tier yet: it gets the corrected post at its time, or nothing if retracted.
                if amendment == PostKind.RETRACTION:
                    DistributionPost.objects.filter(pk=original.pk, status=Status.SCHEDULED).update(
                        status=Status.SKIPPED, last_error=f"retracted before release: {text}"
                    )
                    _log(original, outcome=Outcome.SKIPPED, excerpt=f"retracted before release: {text}")
                    skipped.append(original)
                else:
                    DistributionPost.objects.filter(pk=original.pk, status=Status.SCHEDULED).update(
                        content=messages.corrected_message(original=original.content, text=text)
                    )
                continue
            if original.status not in (Status.SENT, Status.SENDING):
                continue  # failed or skipped: this tier never saw it
            # SENDING counts as received: the message may be out, and an amendment shown twice beats one missing.
            if amendment == PostKind.RETRACTION:
                payloads[original.tier] = messages.retraction_message(
                    original=original.content, message_id=original.message_id, reason=text, tier=original.tier
                )
            else:
                payloads[original.tier] = messages.correction_message(
                    original=original.content, message_id=original.message_id, text=text, tier=original.tier
                )
            amends[original.tier] = original
        posts: list[DistributionPost] = []
        if payloads:
            # Due at once: these readers already have the original; a delay would only prolong the error.
            delays_now = {tier: now for tier in payloads}
            posts = post_schedule_payloads(
                kind=amendment,
                ref=amendment_ref,
                trade_id=originals[0].trade_id,
                payloads=payloads,
                not_before=delays_now,
                amends=amends,
            )
            DistributionPost.objects.filter(pk__in=[p.pk for p in posts]).update(due_at=now, release_at=now)
            for post in posts:
                post.due_at = post.release_at = now
        if skipped:
            store.get_redis().zrem(SCHEDULED_KEY, *[str(p.pk) for p in skipped])
        audit_record(
            actor=actor,
            action=f"distribution.{amendment}",
            target=f"{kind}:{ref}",
            detail={
                "text": text,
                "amendment_ref": amendment_ref,
                "tiers_amended": sorted(payloads),
                "tiers_skipped": sorted(p.tier for p in skipped),
            },
        )
    return posts


def post_correct(*, kind: str, ref: str, text: str, actor: str) -> list[DistributionPost]:
    """Correct the ``kind`` post ``ref`` (e.g. ``exit``, ``trade:12``): every tier that received it gets a correction
    at once; a tier still waiting for it gets the corrected post at its own time.  Audited.  Returns the correction
    posts."""
    return _amend(kind=kind, ref=ref, amendment=PostKind.CORRECTION, text=text, actor=actor)


def post_retract(*, kind: str, ref: str, reason: str, actor: str) -> list[DistributionPost]:
    """Retract the ``kind`` post ``ref``: every tier that received it gets a retraction at once; a tier still waiting
    for it never gets it (skipped).  Audited.  Returns the retraction posts."""
    return _amend(kind=kind, ref=ref, amendment=PostKind.RETRACTION, text=reason, actor=actor)


def posts_resend_failed(*, post_ids: Iterable[int], actor: str) -> int:
    """Put failed posts back on the schedule, due now (after their webhook was fixed); audited.  Returns how many."""
    from apps.ops.services import audit_record

    now = clock.now()
    ids = list(post_ids)
    with transaction.atomic():
        requeued = list(
            DistributionPost.objects.select_for_update().filter(pk__in=ids, status=Status.FAILED).order_by("pk")
        )
        DistributionPost.objects.filter(pk__in=[p.pk for p in requeued]).update(
            status=Status.SCHEDULED, release_at=now, failures=0, claimed_at=None, claim_token="", last_error=""
        )
        for post in requeued:
            _log(post, outcome=Outcome.REQUEUED, excerpt=f"re-sent by {actor}")
        audit_record(
            actor=actor, action="distribution.resend", target="posts", detail={"post_ids": [p.pk for p in requeued]}
        )
        _after_commit_schedule([(p.pk, now) for p in requeued])
    return len(requeued)


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

    def as_dict(self) -> dict[str, Any]:  # "queued" is added by the sweep
        return {
            "sent": self.sent,
            "late": self.late,
            "rate_limited": self.rate_limited,
            "retried": self.retried,
            "failed": self.failed,
            "reclaimed": self.reclaimed,
            "by_tier": dict(self.by_tier),
        }


def _reclaim(post: DistributionPost, *, now: datetime, why: str) -> bool:
    """Put one post stuck in ``sending`` back on the schedule, due now.  Conditional on the same claim."""
    updated = DistributionPost.objects.filter(
        pk=post.pk, status=Status.SENDING, claimed_at=post.claimed_at, claim_token=post.claim_token
    ).update(status=Status.SCHEDULED, release_at=now, claimed_at=None, claim_token="", last_error=f"reclaimed: {why}")
    if updated != 1:
        return False
    _log(post, outcome=Outcome.RECLAIMED, excerpt=why)
    client = store.get_redis()
    client.lrem(QUEUE_KEY, 0, str(post.pk))
    client.zadd(SCHEDULED_KEY, {str(post.pk): now.timestamp()})
    return True


def posts_reclaim_stuck() -> int:
    """Put back on the schedule every post stuck in ``sending`` longer than SENDING_TIMEOUT (its worker died)."""
    now = clock.now()
    stuck = DistributionPost.objects.filter(status=Status.SENDING, claimed_at__lt=now - SENDING_TIMEOUT)
    return _reclaim_all(list(stuck), now=now)


def _reclaim_all(stuck: list[DistributionPost], *, now: datetime) -> int:
    reclaimed = 0
    for post in stuck:
        assert post.claimed_at is not None  # only posts claimed before the cutoff are passed
        if _reclaim(post, now=now, why=f"send never finished, in sending since {post.claimed_at.isoformat()}"):
            reclaimed += 1
    if reclaimed:
        logger.warning("distribution: reclaimed %d posts stuck in sending", reclaimed)
    return reclaimed


def _claim(post_id: int, now: datetime, token: str) -> bool:
    updated = DistributionPost.objects.filter(pk=post_id, status=Status.SCHEDULED, release_at__lte=now).update(
        status=Status.SENDING, claimed_at=now, claim_token=token, attempts=F("attempts") + 1
    )
    return updated == 1


def _reclaim_own(post_id: int, token: str, now: datetime) -> bool:
    """A send task redelivered after its worker died finds the post still claimed under its own task id: that claim
    is dead (a task id runs once at a time), so the post goes straight back rather than waiting SENDING_TIMEOUT."""
    post = DistributionPost.objects.filter(pk=post_id, status=Status.SENDING, claim_token=token).first()
    if post is None:
        return False
    return _reclaim(post, now=now, why=f"the worker of task {token} died mid-send")


def _reschedule(post_ids: list[int], until: datetime) -> None:
    store.get_redis().zadd(SCHEDULED_KEY, {str(pk): until.timestamp() for pk in post_ids})
    transaction.on_commit(lambda: _dispatch([(pk, until) for pk in post_ids]))


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
        _reschedule(ids, until)


def _finish_sent(post: DistributionPost, *, sink: str, message_id: str, status_code: int | None, excerpt: str) -> str:
    now = clock.now()
    lateness = now - post.due_at
    lateness_ms = max(int(lateness.total_seconds() * 1000), 0)
    late = lateness > timedelta(seconds=settings.DISTRIBUTION_LATE_AFTER_SECONDS)
    updated = DistributionPost.objects.filter(pk=post.pk, status=Status.SENDING, claim_token=post.claim_token).update(
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
    metrics.delivery_lag(channel="discord", tier=post.tier, seconds=lateness.total_seconds())
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
    base = DistributionPost.objects.filter(pk=post.pk, status=Status.SENDING, claim_token=post.claim_token)
    if error.retry_after is not None:
        until = now + timedelta(seconds=error.retry_after)
        base.update(status=Status.SCHEDULED, release_at=until, claimed_at=None, claim_token="", last_error=str(error))
        _reschedule([post.pk], until)
        _log(post, outcome=Outcome.RATE_LIMITED, status_code=error.status_code, excerpt=error.excerpt)
        counts.rate_limited += 1
        return until
    failures = post.failures + 1
    if error.permanent or failures >= MAX_FAILURES:
        base.update(status=Status.FAILED, failures=failures, claimed_at=None, claim_token="", last_error=str(error))
        _log(post, outcome=Outcome.FAILED, status_code=error.status_code, excerpt=error.excerpt or str(error))
        logger.error("distribution: post %s to %s failed for good: %s", post.pk, post.tier, error)
        counts.failed += 1
        return None
    retry_at = now + _backoff(failures)
    base.update(
        status=Status.SCHEDULED,
        release_at=retry_at,
        failures=failures,
        claimed_at=None,
        claim_token="",
        last_error=str(error),
    )
    _reschedule([post.pk], retry_at)
    _log(post, outcome=Outcome.FAILED, status_code=error.status_code, excerpt=error.excerpt or str(error))
    counts.retried += 1
    return None


def post_release(*, post_id: int, counts: ReleaseCounts | None = None, claim_token: str = "") -> str | None:
    """Claim one due post and deliver it.  Returns the outcome, or None when it was not ours to send (already
    claimed by another sender, already sent, or not due).

    ``claim_token`` names the claimant (a send task passes its task id, so its redelivery after a worker death can
    take its own dead claim back at once); the default is a fresh token.
    """
    counts = counts if counts is not None else ReleaseCounts()
    token = claim_token or f"sweep:{uuid.uuid4().hex}"
    now = clock.now()
    if not _claim(post_id, now, token):
        if not (claim_token and _reclaim_own(post_id, token, now) and _claim(post_id, now, token)):
            return None
        counts.reclaimed += 1
    post = DistributionPost.objects.get(pk=post_id)
    client = store.get_redis()
    client.zrem(SCHEDULED_KEY, str(post.pk))
    client.lpush(QUEUE_KEY, str(post.pk))
    try:
        tier = tiers.tier_get(post.tier)
        if tier is None or not tier.enabled:
            # The tier was removed or disabled after this post was scheduled: nobody subscribes to it any more, and
            # sending it to the local sink would pretend it was delivered.
            why = f"tier {post.tier!r} is no longer configured" if tier is None else f"tier {post.tier!r} is disabled"
            DistributionPost.objects.filter(pk=post.pk, status=Status.SENDING).update(
                status=Status.SKIPPED, claimed_at=None, last_error=why
            )
            _log(post, outcome=Outcome.SKIPPED, excerpt=why)
            return Outcome.SKIPPED
        if not tier.webhook_url:
            outcome = _send_local(post)
        else:
            post.sink = Post.Sink.DISCORD
            try:
                delivery: Delivery = webhook_send(url=tier.webhook_url, payload=post.content)
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
    """The beat sweep: put back abandoned sends, send what is due and has no send task on the way (or whose task is
    OVERDUE), oldest first, up to RELEASE_BATCH, and queue countdown sends for what falls due within LOOKAHEAD.
    Returns counts: sent, late, rate_limited, retried, failed, reclaimed, queued, by_tier.

    One query finds all of it (the sweep runs every 5 s, and every 5 simulated seconds in a replay).  Safe to run
    concurrently and repeatedly: each post is claimed by one conditional UPDATE before it is sent, and each release
    time is queued once.
    """
    from celery import current_app

    counts = ReleaseCounts()
    now = clock.now()
    # With eager tasks nothing can be queued for later: the sweep sends everything that is due.
    horizon = now if current_app.conf.task_always_eager else now + LOOKAHEAD
    candidates = list(
        DistributionPost.objects.filter(
            Q(status=Status.SCHEDULED, release_at__lte=horizon)
            | Q(status=Status.SENDING, claimed_at__lt=now - SENDING_TIMEOUT)
        )
        .order_by("release_at", "pk")
        .only("pk", "status", "tier", "release_at", "dispatched_for", "claimed_at", "claim_token")[: RELEASE_BATCH * 2]
    )
    counts.reclaimed = _reclaim_all([p for p in candidates if p.status == Status.SENDING], now=now)
    now = clock.now()
    scheduled = [p for p in candidates if p.status == Status.SCHEDULED]
    # Sent here: due posts with no countdown task on the way for this release time, or whose task is overdue.
    due = [
        p
        for p in scheduled
        if p.release_at <= now and (p.dispatched_for != p.release_at or p.release_at <= now - OVERDUE)
    ][:RELEASE_BATCH]
    blocked: set[str] = set()
    for post in due:
        if post.tier in blocked:
            continue  # _block_tier pushed it past the rate limit; claiming it now would fail the release_at check
        outcome = post_release(post_id=post.pk, counts=counts)
        if outcome == Outcome.RATE_LIMITED:
            blocked.add(post.tier)
    upcoming = [(p.pk, p.release_at) for p in scheduled if p.release_at > now and p.dispatched_for != p.release_at]
    result = counts.as_dict()
    result["queued"] = _dispatch(upcoming) if upcoming else 0
    return result
