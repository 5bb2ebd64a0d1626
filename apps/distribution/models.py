"""Distribution: every message the platform announces, one row per Discord tier, and every delivery attempt.

A post is a row with a due time (``release_at``) that beat's sweep releases; it is never a long countdown on the
broker.  The unique key ``(kind, ref, tier)`` makes announcing the same trade twice a no-op.
"""

from __future__ import annotations

from django.db import models


class PostKind(models.TextChoices):
    ENTRY = "entry"
    EXIT = "exit"
    STOP = "stop"  # a trade's stop moved (breakeven rule or an operator)
    SUMMARY = "summary"  # the daily summary after the close
    REPORT = "report"  # an approved AI market report
    EXPLANATION = "explanation"  # an approved AI explanation of a trade
    CORRECTION = "correction"  # replaces what an earlier post said, sent to every tier that got it
    RETRACTION = "retraction"  # withdraws an earlier post, sent to every tier that got it


class DistributionTier(models.Model):
    """A subscriber tier: its Discord webhook and how long after the premium tier it hears of a trade.

    These rows are in force once they exist (seeded from ``DISTRIBUTION_TIERS`` / ``DISCORD_WEBHOOK_URL_<TIER>`` by
    migration 0002, edited in the admin); an empty table falls back to the settings.  A disabled tier gets nothing new.
    """

    name = models.SlugField(max_length=32, unique=True)
    delay_seconds = models.PositiveIntegerField()
    webhook_url = models.CharField(max_length=500, blank=True)  # a secret: masked in the admin; empty = local sink
    channel = models.CharField(max_length=100, blank=True)  # the Discord channel it posts to, for people reading
    enabled = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "distribution_tiers"
        ordering = ("position", "delay_seconds", "name")

    def __str__(self) -> str:
        return f"{self.name} (+{self.delay_seconds} s)"


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

    kind = models.CharField(max_length=16, choices=PostKind.choices)
    trade_id = models.BigIntegerField(null=True, blank=True, db_index=True)  # null for reports and summaries
    # The natural key with kind and tier: "trade:<id>", "report:<id>", "stop:<adjustment id>", "summary:<day>",
    # "<kind>:<ref>#<n>" for the n-th correction or retraction of a post.
    ref = models.CharField(max_length=96)
    # A correction or retraction: the original post of the same tier it amends.
    amends = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="amendments")
    tier = models.CharField(max_length=32)
    due_at = models.DateTimeField()
    release_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    content = models.JSONField()  # the Discord webhook payload: content + embeds, already within Discord's limits
    sink = models.CharField(max_length=8, choices=Sink.choices, blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)  # when the current send began (stuck-send detection)
    claim_token = models.CharField(max_length=64, blank=True)  # the task that claimed it: its redelivery may reclaim
    # The release time a short-countdown send task was queued for (the sweep queues each release time once).
    dispatched_for = models.DateTimeField(null=True, blank=True)
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
        permissions = [
            ("retract_distributionpost", "Can retract or correct a post already announced"),
            ("resend_distributionpost", "Can re-send a failed post"),
        ]
        indexes = [
            models.Index(fields=["status", "release_at"], name="distribution_post_due"),
            models.Index(fields=["status", "claimed_at"], name="distribution_post_claimed"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} -> {self.tier} ({self.status})"


class DistributionLog(models.Model):
    """One delivery attempt (or decision not to deliver) of anything the platform sends out: a Discord post to a tier,
    a social post to X or Reddit, an approval message to Telegram.  The audit trail of what each audience received."""

    class Channel(models.TextChoices):
        DISCORD = "discord"
        X = "x"
        REDDIT = "reddit"
        TELEGRAM = "telegram"

    class Outcome(models.TextChoices):
        SENT = "sent"
        LATE = "late"  # delivered, but later than DISTRIBUTION_LATE_AFTER_SECONDS after it was due
        FAILED = "failed"
        SKIPPED = "skipped"
        RATE_LIMITED = "rate_limited"
        RECLAIMED = "reclaimed"  # a send that never finished (worker died) was put back on the schedule
        REQUEUED = "requeued"  # an operator put a failed post back on the schedule

    post = models.ForeignKey(DistributionPost, null=True, blank=True, on_delete=models.CASCADE, related_name="logs")
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.DISCORD)
    ref = models.CharField(max_length=96, blank=True)  # what was sent: the post's ref, "social:<id>", "approval:<id>"
    tier = models.CharField(max_length=64)  # the audience: a Discord tier, "x", "r/<subreddit>", a Telegram chat
    sink = models.CharField(max_length=8, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField()

    class Meta:
        db_table = "distribution_logs"
        indexes = [models.Index(fields=["tier", "at"], name="distribution_log_tier_at")]

    def __str__(self) -> str:
        return f"{self.channel} {self.tier} {self.outcome} {self.ref or self.post_id}"
