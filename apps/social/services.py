"""Social queue writes: drafting posts from closed trades and approved reports, reacting to approval decisions, and
publishing approved posts to X and Reddit (or the local sink).

Guarantees:
- Nothing is published before a person with ``approvals.decide_approvalrequest`` approves it: a draft is
  ``pending_approval`` with its ``ApprovalRequest``; only the approval handler moves it to ``approved``, and the claim
  that starts a publication also requires the request row itself to be ``approved`` (defence in depth).  A post whose
  request is not approved is refused and marked failed, never sent.
- Drafting is idempotent: one post per (platform, source), its request opened in the same transaction.
- Trade posts are drafted from exits only, and every post is held back until the slowest Discord tier has had the
  news (``next_attempt_at``): the public never learns of a trade before the paying tiers, nor before the free one.
- Publishing claims the post with a conditional UPDATE (``approved -> publishing``), so two workers never publish
  the same post.  A publication whose worker died is reclaimed after ``PUBLISHING_TIMEOUT``: at-least-once, the one
  case that can publish twice (X then refuses the copy as duplicate content, which counts as published).
- Every attempt is mirrored to ``distribution_logs`` (``log_delivery``); rate limits are waited out, transient errors
  retried with backoff up to ``MAX_FAILURES``, permanent refusals marked failed and never retried.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q

from apps.approvals import services as approvals
from apps.approvals.models import ApprovalRequest, SubjectType
from apps.core import clock, store
from apps.distribution import tiers
from apps.distribution.models import DistributionLog
from apps.distribution.services import log_delivery
from apps.ops import metrics
from apps.social import texts
from apps.social.delivery import Published, TransportError
from apps.social.models import Platform, SocialPost, Source
from apps.social.reddit import transport as reddit
from apps.social.x import transport as x

logger = logging.getLogger(__name__)
local_sink_logger = logging.getLogger("apps.social.local_sink")

BLOCKED_KEY = "social:{platform}:blocked_until"  # string: epoch seconds before which the platform is not called
PUBLISHING_TIMEOUT = timedelta(seconds=120)  # > the worst case of four HTTP requests (token, submit, again)
PUBLISH_BATCH = 50  # posts per sweep; the next tick takes the rest
MAX_FAILURES = 5  # transient errors (5xx, connection) before a post is marked failed
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 1800
RECLAIMED = "reclaimed: the publication never finished"
SUBJECT_TYPE = SubjectType.SOCIAL_POST
REQUEUE_PERMISSION = "social.requeue_socialpost"
Status = SocialPost.Status
Outcome = DistributionLog.Outcome


class SourceNotFound(LookupError):
    """The trade or report to draft from does not exist."""


class SourceNotPublishable(ValueError):
    """The trade is not closed, or the report is not approved: nothing of it may go public yet."""


# -- mirror and helpers ---------------------------------------------------------------------------------------------
def _target(platform: str) -> str:
    return f"r/{settings.REDDIT_SUBREDDIT}" if platform == Platform.REDDIT else platform


def _mirror(
    post: SocialPost, *, outcome: str, status_code: int | None = None, excerpt: str = "", sink: str = ""
) -> None:
    """One row in ``distribution_logs`` per attempt, beside the Discord deliveries."""
    log_delivery(
        channel=post.platform,
        ref=f"social:{post.pk}",
        target=_target(post.platform),
        outcome=outcome,
        status_code=status_code,
        excerpt=excerpt,
        sink=sink or post.sink,
    )


def _hold_until(now: datetime) -> datetime:
    """Now plus the longest Discord tier delay (disabled tiers included): the public hears last."""
    delays = [tier.delay_seconds for tier in tiers.tiers_configured()]
    return now + timedelta(seconds=max(delays, default=0))


def _max_length(platform: str) -> int:
    return texts.X_MAX if platform == Platform.X else texts.REDDIT_TEXT_MAX


# -- drafting -------------------------------------------------------------------------------------------------------
def _draft(*, platform: str, source: str, source_ref: str, subject: str, draft: texts.Draft) -> SocialPost:
    """The post for (platform, source_ref), created with its approval request or found (unchanged)."""
    now = clock.now()
    try:
        with transaction.atomic():
            post, created = SocialPost.objects.get_or_create(
                platform=platform,
                source_ref=source_ref,
                defaults={
                    "source": source,
                    "title": draft.title,
                    "text": draft.text,
                    "created_at": now,
                    "next_attempt_at": _hold_until(now),
                },
            )
            if created:
                post.approval = approvals.request_open(
                    subject_type=SUBJECT_TYPE,
                    subject_id=post.pk,
                    title=f"{Platform(platform).label}: {subject}",
                    text=draft.text,
                    max_length=_max_length(platform),
                )
                post.save(update_fields=["approval"])
    except IntegrityError:
        # A concurrent draft of the same source won the insert: theirs is the post (and its request).
        post = SocialPost.objects.get(platform=platform, source_ref=source_ref)
        created = False
    if created:
        logger.info("social: drafted %s post %s from %s, waiting for approval", platform, post.pk, source_ref)
    return post


def drafts_for_trade(*, kind: str, trade_id: int) -> list[SocialPost]:
    """The social drafts of a trade fill, one per configured platform, each waiting for approval (idempotent).

    Only exits are drafted (``kind="exit"``, a closed trade with its result); an entry returns ``[]``: posted publicly
    it would beat the paying Discord tiers to the trade.  Raises ``SourceNotFound`` for an unknown trade and
    ``SourceNotPublishable`` for an exit of a trade that is not closed.
    """
    if kind == "entry":
        return []
    if kind != "exit":
        raise ValueError(f"a trade fill is 'entry' or 'exit', not {kind!r}")
    from apps.execution.models import Trade

    trade = Trade.objects.select_related("signal").filter(pk=trade_id).first()
    if trade is None:
        raise SourceNotFound(f"trade {trade_id} does not exist")
    if trade.status != Trade.Status.CLOSED or trade.exit_at is None or trade.exit_price is None:
        raise SourceNotPublishable(f"trade {trade_id} is {trade.status}: only closed trades are posted")
    drafts = {
        Platform.X: texts.trade_exit_x(trade),
        Platform.REDDIT: texts.trade_exit_reddit(trade, rationale=trade.signal.rationale or ""),
    }
    subject = f"closed trade #{trade.pk} {trade.option_symbol}"
    return _drafts_for(source=Source.TRADE, source_ref=f"trade:{trade.pk}", subject=subject, drafts=drafts)


def drafts_for_report(*, report_id: int) -> list[SocialPost]:
    """The social drafts of an approved market report, one per configured platform, each waiting for its own
    approval (idempotent).  Raises ``SourceNotFound`` for an unknown report and ``SourceNotPublishable`` for one
    that is not approved (or published)."""
    from apps.commentary.models import AiReport
    from apps.commentary.services.reports import TEMPLATE_NOTICE

    report = AiReport.objects.filter(pk=report_id).first()
    if report is None:
        raise SourceNotFound(f"report {report_id} does not exist")
    if report.status not in (AiReport.Status.APPROVED, AiReport.Status.PUBLISHED):
        raise SourceNotPublishable(f"report {report_id} is {report.status}: only approved reports are posted")
    title = texts.report_title(kind_label=report.get_kind_display(), day=report.day)
    content = report.published_text or report.content  # the approver's edits of the report carry over
    drafts = {
        # A tweet has no room for the template notice; the Reddit post keeps the report as written.
        Platform.X: texts.report_x(title=title, content=content, drop=(TEMPLATE_NOTICE,)),
        Platform.REDDIT: texts.report_reddit(title=title, content=content),
    }
    return _drafts_for(source=Source.REPORT, source_ref=f"report:{report.pk}", subject=title, drafts=drafts)


def _drafts_for(*, source: str, source_ref: str, subject: str, drafts: dict[Platform, texts.Draft]) -> list[SocialPost]:
    """One draft per configured platform for one source, in one transaction (each opens its approval request)."""
    with transaction.atomic():
        return [
            _draft(
                platform=platform,
                source=source,
                source_ref=source_ref,
                subject=subject,
                draft=drafts[Platform(platform)],
            )
            for platform in settings.SOCIAL_PLATFORMS
        ]


# -- approval decisions (called inside the deciding transaction) ---------------------------------------------------
def _decided(request: ApprovalRequest, *, status: str, **values: Any) -> bool:
    updated = SocialPost.objects.filter(
        pk=request.subject_id, approval_id=request.pk, status=Status.PENDING_APPROVAL
    ).update(status=status, **values)
    if updated != 1:
        logger.warning(
            "social: approval %s decided (%s) but post %s was not pending", request.pk, status, request.subject_id
        )
    return updated == 1


def on_approved(request: ApprovalRequest) -> None:
    """The approved (possibly edited) text becomes the post's, and its publication is enqueued once this commits."""
    post_id = request.subject_id
    if _decided(
        request,
        status=Status.APPROVED,
        text=request.text,
        approved_by=request.decided_by,
        approved_at=request.decided_at or clock.now(),
    ):
        from apps.social import tasks

        transaction.on_commit(lambda: tasks.social_publish.delay(post_id))


def on_rejected(request: ApprovalRequest) -> None:
    _decided(request, status=Status.REJECTED)


def on_expired(request: ApprovalRequest) -> None:
    _decided(request, status=Status.EXPIRED, last_error="approval expired unanswered")


def handlers_register() -> None:
    """Tell approvals what a decision on a social post does (``SocialConfig.ready``)."""
    approvals.handler_register(SUBJECT_TYPE, on_approved=on_approved, on_rejected=on_rejected, on_expired=on_expired)


# -- publishing -----------------------------------------------------------------------------------------------------
@dataclass
class PublishCounts:
    """What one sweep did."""

    published: int = 0
    rate_limited: int = 0
    retried: int = 0
    failed: int = 0
    refused: int = 0
    reclaimed: int = 0

    def add(self, outcome: str | None) -> None:
        if outcome is not None:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, int]:
        return {
            "published": self.published,
            "rate_limited": self.rate_limited,
            "retried": self.retried,
            "failed": self.failed,
            "refused": self.refused,
            "reclaimed": self.reclaimed,
        }


def _blocked_until(platform: str) -> datetime | None:
    raw = cast(str | None, store.get_redis().get(BLOCKED_KEY.format(platform=platform)))
    if not raw:
        return None
    return datetime.fromtimestamp(float(raw), tz=UTC)


def _block(platform: str, *, until: datetime, seconds: float) -> None:
    """Every post of this platform waits for the rate limit, instead of drawing more 429s."""
    store.get_redis().set(BLOCKED_KEY.format(platform=platform), str(until.timestamp()), ex=math.ceil(seconds) + 60)
    SocialPost.objects.filter(platform=platform, status=Status.APPROVED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=until)
    ).update(next_attempt_at=until)


def _backoff(failures: int) -> timedelta:
    seconds = min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS)
    return timedelta(seconds=seconds * random.uniform(1.0, 1.1))  # jitter: retries of a burst spread out


def _due() -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=clock.now())


def _refuse(post: SocialPost, reason: str) -> str | None:
    """A post that must not be published (its request is not approved, its platform is gone): failed, logged."""
    updated = SocialPost.objects.filter(pk=post.pk, status=Status.APPROVED).update(
        status=Status.FAILED, last_error=f"refused: {reason}", claimed_at=None
    )
    if updated != 1:
        return None
    logger.error("social: post %s refused: %s", post.pk, reason)
    _mirror(post, outcome=Outcome.SKIPPED, excerpt=f"refused: {reason}")
    return "refused"


def _reddit_account() -> reddit.RedditAccount | None:
    """The Reddit account from the settings; None when none is configured (the local sink).  Raises a permanent
    ``TransportError`` when only some of it is: a half-configured account must not pass for published."""
    values = {
        "REDDIT_CLIENT_ID": settings.REDDIT_CLIENT_ID,
        "REDDIT_CLIENT_SECRET": settings.REDDIT_CLIENT_SECRET,
        "REDDIT_USERNAME": settings.REDDIT_USERNAME,
        "REDDIT_PASSWORD": settings.REDDIT_PASSWORD,
        "REDDIT_SUBREDDIT": settings.REDDIT_SUBREDDIT,
    }
    missing = [name for name, value in values.items() if not value]
    if len(missing) == len(values):
        return None
    if missing:
        raise TransportError(f"Reddit is partly configured: {', '.join(missing)} missing", permanent=True)
    return reddit.RedditAccount(
        client_id=settings.REDDIT_CLIENT_ID,
        client_secret=settings.REDDIT_CLIENT_SECRET,
        username=settings.REDDIT_USERNAME,
        password=settings.REDDIT_PASSWORD,
        user_agent=settings.REDDIT_USER_AGENT,
        auth_base_url=settings.REDDIT_AUTH_BASE_URL,
        api_base_url=settings.REDDIT_API_BASE_URL,
        timeout=settings.SOCIAL_HTTP_TIMEOUT_SECONDS,
    )


def _local(post: SocialPost, text: str) -> Published:
    """The local sink: the post goes to the log and the database, as published."""
    local_sink_logger.info(
        "social local sink [%s] %s",
        post.platform,
        text,
        extra={"post_id": post.pk, "platform": post.platform, "title": post.title, "source_ref": post.source_ref},
    )
    return Published(external_id=f"local-{post.pk}", external_url="", status_code=None, excerpt="local sink")


def _send(post: SocialPost, text: str) -> tuple[str, Published]:
    """Publish through the platform's API, or the local sink without credentials; returns (sink, proof)."""
    timeout = settings.SOCIAL_HTTP_TIMEOUT_SECONDS
    if post.platform == Platform.X:
        if not settings.X_ACCESS_TOKEN:
            return SocialPost.Sink.LOCAL, _local(post, text)
        return SocialPost.Sink.API, x.tweet_create(
            base_url=settings.X_API_BASE_URL, token=settings.X_ACCESS_TOKEN, text=text, timeout=timeout
        )
    account = _reddit_account()
    if account is None:
        return SocialPost.Sink.LOCAL, _local(post, text)
    return SocialPost.Sink.API, reddit.submit(
        account=account, subreddit=settings.REDDIT_SUBREDDIT, title=post.title, text=text
    )


def _finish(post: SocialPost, *, sink: str, text: str, published: Published) -> str:
    now = clock.now()
    updated = SocialPost.objects.filter(pk=post.pk, status=Status.PUBLISHING).update(
        status=Status.PUBLISHED,
        sink=sink,
        text=text,
        external_id=published.external_id,
        external_url=published.external_url,
        published_at=now,
        claimed_at=None,
        last_error="",
    )
    if updated != 1:
        # Reclaimed while our request was in flight (it outlasted PUBLISHING_TIMEOUT): the post is out; the reclaimed
        # copy may be published again, and this line explains the duplicate.
        logger.warning("social: post %s was reclaimed while being published; it may appear twice", post.pk)
    logger.info("social: published %s post %s (%s) %s", post.platform, post.pk, sink, published.external_url)
    due = max((t for t in (post.approved_at, post.next_attempt_at) if t is not None), default=post.created_at)
    metrics.delivery_lag(channel=post.platform, tier="social", seconds=(now - due).total_seconds())
    _mirror(
        post,
        outcome=Outcome.SENT,
        status_code=published.status_code,
        excerpt=published.external_url or published.external_id or published.excerpt,
        sink=sink,
    )
    return "published"


def _duplicate_of_our_own(post: SocialPost, error: TransportError) -> bool:
    """X refused as duplicate a post we reclaimed: the attempt that lost its worker did get through."""
    return (
        post.platform == Platform.X
        and error.status_code == 403
        and "duplicate" in f"{error} {error.excerpt}".lower()
        and post.last_error.startswith(RECLAIMED)
    )


def _handle_error(post: SocialPost, error: TransportError) -> str:
    now = clock.now()
    base = SocialPost.objects.filter(pk=post.pk, status=Status.PUBLISHING)
    if error.retry_after is not None:
        until = now + timedelta(seconds=error.retry_after)
        base.update(status=Status.APPROVED, next_attempt_at=until, claimed_at=None, last_error=str(error))
        _block(post.platform, until=until, seconds=error.retry_after)
        logger.warning("social: %s rate limited; post %s waits until %s", post.platform, post.pk, until.isoformat())
        _mirror(
            post,
            outcome=Outcome.RATE_LIMITED,
            status_code=error.status_code,
            excerpt=error.excerpt or str(error),
            sink=SocialPost.Sink.API,
        )
        return "rate_limited"
    failures = post.failures + 1
    if error.permanent or failures >= MAX_FAILURES:
        base.update(status=Status.FAILED, failures=failures, claimed_at=None, last_error=str(error))
        logger.error("social: %s post %s failed for good: %s", post.platform, post.pk, error)
        _mirror(
            post,
            outcome=Outcome.FAILED,
            status_code=error.status_code,
            excerpt=error.excerpt or str(error),
            sink=SocialPost.Sink.API,
        )
        return "failed"
    base.update(
        status=Status.APPROVED,
        next_attempt_at=now + _backoff(failures),
        failures=failures,
        claimed_at=None,
        last_error=str(error),
    )
    logger.warning(
        "social: %s post %s will be retried (%d/%d): %s", post.platform, post.pk, failures, MAX_FAILURES, error
    )
    _mirror(
        post,
        outcome=Outcome.FAILED,
        status_code=error.status_code,
        excerpt=error.excerpt or str(error),
        sink=SocialPost.Sink.API,
    )
    return "retried"


def _claim(post_id: int) -> bool:
    """approved -> publishing, only while due and only while its approval request is approved."""
    approved_request = ApprovalRequest.objects.filter(
        pk=OuterRef("approval_id"),
        subject_type=SUBJECT_TYPE,
        subject_id=OuterRef("pk"),
        status=ApprovalRequest.Status.APPROVED,
    )
    updated = SocialPost.objects.filter(_due(), Exists(approved_request), pk=post_id, status=Status.APPROVED).update(
        status=Status.PUBLISHING, claimed_at=clock.now(), attempts=F("attempts") + 1
    )
    return updated == 1


def post_publish(*, post_id: int) -> str | None:
    """Publish one approved, due post.  Returns ``published``, ``rate_limited``, ``retried``, ``failed`` or
    ``refused``; None when it was not ours to publish (not approved yet, already claimed or published, not due, or its
    platform is waiting out a rate limit)."""
    post = SocialPost.objects.select_related("approval").filter(pk=post_id).first()
    if post is None or post.status != Status.APPROVED:
        return None
    now = clock.now()
    if post.next_attempt_at is not None and post.next_attempt_at > now:
        return None
    approval = post.approval
    if (
        approval is None
        or approval.subject_type != SUBJECT_TYPE
        or approval.subject_id != post.pk
        or approval.status != ApprovalRequest.Status.APPROVED
    ):
        state = "missing" if approval is None else f"{approval.status} ({approval.subject_type} {approval.subject_id})"
        return _refuse(post, f"its approval request is {state}, not an approved request for this post")
    if post.platform not in settings.SOCIAL_PLATFORMS:
        return _refuse(post, f"platform {post.platform!r} is no longer in SOCIAL_PLATFORMS")
    blocked = _blocked_until(post.platform)
    if blocked is not None and blocked > now:
        SocialPost.objects.filter(pk=post.pk, status=Status.APPROVED).update(next_attempt_at=blocked)
        return None
    if not _claim(post.pk):
        return None
    post.refresh_from_db()
    text = approval.text  # the approved revision: a decided request can no longer be edited
    try:
        sink, published = _send(post, text)
    except TransportError as error:
        if _duplicate_of_our_own(post, error):
            return _finish(
                post,
                sink=SocialPost.Sink.API,
                text=text,
                published=Published(external_id="", external_url="", status_code=403, excerpt=error.excerpt),
            )
        return _handle_error(post, error)
    return _finish(post, sink=sink, text=text, published=published)


def posts_reclaim_stuck() -> int:
    """Put back every post stuck in ``publishing`` longer than PUBLISHING_TIMEOUT (its worker died)."""
    now = clock.now()
    return _reclaim_all(
        list(SocialPost.objects.filter(status=Status.PUBLISHING, claimed_at__lt=now - PUBLISHING_TIMEOUT)), now=now
    )


def _reclaim_all(stuck: list[SocialPost], *, now: datetime) -> int:
    reclaimed = 0
    for post in stuck:
        assert post.claimed_at is not None  # only posts claimed before the cutoff are passed
        updated = SocialPost.objects.filter(pk=post.pk, status=Status.PUBLISHING, claimed_at=post.claimed_at).update(
            status=Status.APPROVED, next_attempt_at=now, claimed_at=None, last_error=RECLAIMED
        )
        if updated == 1:
            reclaimed += 1
            _mirror(post, outcome=Outcome.RECLAIMED, excerpt=f"in publishing since {post.claimed_at.isoformat()}")
    if reclaimed:
        logger.warning("social: reclaimed %d posts stuck in publishing", reclaimed)
    return reclaimed


def posts_publish_due() -> dict[str, int]:
    """Publish every approved post that is due (oldest first, up to PUBLISH_BATCH), after reclaiming abandoned ones.
    Returns counts: published, rate_limited, retried, failed, refused, reclaimed.

    One query finds both (the sweep also runs every 15 simulated seconds of a replay).  Safe to run concurrently and
    repeatedly: each post is claimed by one conditional UPDATE before it is published.
    """
    counts = PublishCounts()
    now = clock.now()
    candidates = list(
        SocialPost.objects.filter(
            (Q(status=Status.APPROVED) & _due()) | Q(status=Status.PUBLISHING, claimed_at__lt=now - PUBLISHING_TIMEOUT)
        ).order_by(F("next_attempt_at").asc(nulls_first=True), "pk")[: PUBLISH_BATCH * 2]
    )
    if not candidates:
        return counts.as_dict()
    counts.reclaimed = _reclaim_all([p for p in candidates if p.status == Status.PUBLISHING], now=now)
    due = [(p.pk, p.platform) for p in candidates if p.status == Status.APPROVED][:PUBLISH_BATCH]
    if counts.reclaimed:
        # Reclaimed posts are due at once: take them in this sweep too.
        due += [(p.pk, p.platform) for p in candidates if p.status == Status.PUBLISHING][: PUBLISH_BATCH - len(due)]
    limited: set[str] = set()
    for post_id, platform in due:
        if platform in limited:
            continue  # _block pushed it past the rate limit
        outcome = post_publish(post_id=post_id)
        counts.add(outcome)
        if outcome == "rate_limited":
            limited.add(platform)
    return counts.as_dict()


def posts_requeue_failed(*, post_ids: list[int], actor: str) -> list[int]:
    """Put failed posts back in the queue (failures reset) and enqueue their publication; each one audited.  Only
    posts whose approval request is approved qualify: a refused post stays refused.  Returns the ids re-queued."""
    from apps.ops.services import audit_record
    from apps.social import tasks

    requeued: list[int] = []
    with transaction.atomic():
        for post in SocialPost.objects.filter(pk__in=post_ids, status=Status.FAILED).order_by("pk"):
            updated = SocialPost.objects.filter(
                pk=post.pk, status=Status.FAILED, approval__status=ApprovalRequest.Status.APPROVED
            ).update(status=Status.APPROVED, failures=0, next_attempt_at=clock.now(), claimed_at=None, last_error="")
            if updated != 1:
                continue
            _mirror(post, outcome=Outcome.REQUEUED, excerpt=f"by {actor}; was: {post.last_error}")
            audit_record(
                actor=actor,
                action="social.requeue",
                target=f"social:{post.pk}",
                detail={"platform": post.platform, "source_ref": post.source_ref, "last_error": post.last_error},
            )
            requeued.append(post.pk)
        for post_id in requeued:
            transaction.on_commit(partial(tasks.social_publish.delay, post_id))
    return requeued
