"""Social queue: posts for X and Reddit drafted from closed trades and approved market reports.

A post is drafted ``pending_approval`` together with its ``ApprovalRequest``; only the approval moves it to
``approved``, and only an approved post whose request is approved is ever claimed for publishing.  The unique key
``(platform, source_ref)`` makes drafting the same trade or report twice a no-op.
"""

from __future__ import annotations

from django.db import models


class Platform(models.TextChoices):
    X = "x", "X (Twitter)"
    REDDIT = "reddit", "Reddit"


class Source(models.TextChoices):
    TRADE = "trade"
    REPORT = "report"


class SocialPost(models.Model):
    """One post for one platform.

    ``text`` is what will be (or was) published: the draft until a person decides, then the approved (possibly edited)
    text copied from the approval request.  ``next_attempt_at`` is the earliest instant the sweep may try: drafts are
    held back behind the slowest Discord tier, and backoff and rate limits push it later.
    """

    class Status(models.TextChoices):
        PENDING_APPROVAL = "pending_approval"
        APPROVED = "approved"
        PUBLISHING = "publishing"
        PUBLISHED = "published"
        REJECTED = "rejected"
        EXPIRED = "expired"
        FAILED = "failed"

    class Sink(models.TextChoices):
        API = "api"
        LOCAL = "local"

    platform = models.CharField(max_length=8, choices=Platform.choices)
    source = models.CharField(max_length=8, choices=Source.choices)
    source_ref = models.CharField(max_length=64)  # "trade:<id>" or "report:<id>"
    title = models.CharField(max_length=300, blank=True)  # Reddit's post title (X has none)
    text = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING_APPROVAL)
    approval = models.ForeignKey(
        "approvals.ApprovalRequest", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.CharField(max_length=120, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=64, blank=True)  # X: the tweet id; Reddit: the fullname (t3_...)
    external_url = models.CharField(max_length=300, blank=True)
    sink = models.CharField(max_length=8, choices=Sink.choices, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # every claim, rate-limited ones included
    failures = models.PositiveIntegerField(default=0)  # transient errors only: bounded by MAX_FAILURES
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)  # when the current publish began (stuck detection)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "social_queue"
        constraints = [
            models.UniqueConstraint(fields=["platform", "source_ref"], name="social_post_unique_platform_source")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="social_post_due"),
            models.Index(fields=["status", "claimed_at"], name="social_post_claimed"),
        ]
        permissions = [("requeue_socialpost", "Can re-queue failed social posts")]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.source_ref} ({self.status})"
