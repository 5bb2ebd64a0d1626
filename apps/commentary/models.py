"""AI Commentator: market reports, one per kind and day, waiting for a person's approval before anyone sees them."""

from __future__ import annotations

from django.db import models


class ReportKind(models.TextChoices):
    PRE_MARKET = "pre_market", "Pre-market"
    INTRADAY = "intraday", "Intraday"
    POST_MARKET = "post_market", "Post-market"


class AiReport(models.Model):
    """A market report written by Claude (``is_template`` False) or, without an API key, by the built-in template.

    ``facts`` is exactly what the writer was given, so every number in ``content`` can be traced to the database.
    """

    class Status(models.TextChoices):
        PENDING_APPROVAL = "pending_approval"
        APPROVED = "approved"
        REJECTED = "rejected"
        PUBLISHED = "published"
        FAILED = "failed"

    kind = models.CharField(max_length=16, choices=ReportKind.choices)
    day = models.DateField()  # the New York trading day the report is about
    model = models.CharField(max_length=64)  # the Anthropic model id, or "template"
    is_template = models.BooleanField(default=False)
    content = models.TextField(blank=True)
    facts = models.JSONField(default=dict)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)  # null: price unknown
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING_APPROVAL, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "ai_reports"
        constraints = [models.UniqueConstraint(fields=["kind", "day"], name="ai_report_unique_kind_day")]
        ordering = ("-day", "kind")

    def __str__(self) -> str:
        writer = "template" if self.is_template else self.model
        return f"{self.get_kind_display()} report {self.day} ({writer}, {self.status})"
