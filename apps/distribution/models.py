"""Distribution: every message the platform announces, one row per Discord tier, and every delivery attempt.

A post is a row with a due time (``release_at``) that beat's sweep releases; it is never a long countdown on the
broker.  The unique key ``(kind, ref, tier)`` makes announcing the same trade twice a no-op.
"""

from __future__ import annotations

from django.db import models


class PostKind(models.TextChoices):
    ENTRY = "entry"
    EXIT = "exit"
    REPORT = "report"


class DistributionPost(models.Model):
    """One message for one tier.

    ``due_at`` is when the tier was promised the message (announce time + tier delay) and never moves; ``release_at``
    is when the sweep may next try to send it (pushed back by rate limits and retries).  Lateness is measured against
    ``due_at`` so a rate-limited post still shows how late its readers got it.
    """

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"

    class Sink(models.TextChoices):
        DISCORD = "discord"
        LOCAL = "local"

    kind = models.CharField(max_length=8, choices=PostKind.choices)
    trade_id = models.BigIntegerField(null=True, blank=True, db_index=True)  # null for reports
    ref = models.CharField(max_length=64)  # "trade:<id>" or "report:<id>": the natural key with kind and tier
    tier = models.CharField(max_length=32)
    due_at = models.DateTimeField()
    release_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    content = models.JSONField()  # the Discord webhook payload: content + embeds, already within Discord's limits
    sink = models.CharField(max_length=8, choices=Sink.choices, blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)  # when the current send began (stuck-send detection)
    sent_at = models.DateTimeField(null=True, blank=True)
    lateness_ms = models.BigIntegerField(null=True, blank=True)
    late = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)  # every claim, rate-limited ones included
    failures = models.PositiveIntegerField(default=0)  # transient errors only: bounded by MAX_FAILURES
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "distribution_posts"
        constraints = [models.UniqueConstraint(fields=["kind", "ref", "tier"], name="distribution_post_unique")]
        indexes = [
            models.Index(fields=["status", "release_at"], name="distribution_post_due"),
            models.Index(fields=["status", "claimed_at"], name="distribution_post_claimed"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} -> {self.tier} ({self.status})"


class DistributionLog(models.Model):
    """One delivery attempt (or decision not to deliver) of a post: the audit trail of what each tier received."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        LATE = "late"  # delivered, but later than DISTRIBUTION_LATE_AFTER_SECONDS after it was due
        FAILED = "failed"
        SKIPPED = "skipped"
        RATE_LIMITED = "rate_limited"
        RECLAIMED = "reclaimed"  # a send that never finished (worker died) was put back on the schedule

    post = models.ForeignKey(DistributionPost, on_delete=models.CASCADE, related_name="logs")
    tier = models.CharField(max_length=32)
    sink = models.CharField(max_length=8, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField()

    class Meta:
        db_table = "distribution_logs"
        indexes = [models.Index(fields=["tier", "at"], name="distribution_log_tier_at")]

    def __str__(self) -> str:
        return f"{self.tier} {self.outcome} post {self.post_id}"
