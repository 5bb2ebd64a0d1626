"""AI Commentator: market reports (one per kind and day) and trade explanations (one per trade), each waiting for a
person's approval before anyone sees it, and one ``AiCall`` row per call to Claude (tokens, cost, latency, errors).

Nothing here is read on the order path: the trading pipeline never waits for, or looks at, what the model wrote.
"""

from __future__ import annotations

from django.db import models


class ReportKind(models.TextChoices):
    PRE_MARKET = "pre_market", "Pre-market"
    INTRADAY = "intraday", "Intraday"
    POST_MARKET = "post_market", "Post-market"


class Decision(models.Model):
    """What a person (or the approval's expiry) decided about the text, copied from the approval request."""

    published_text = models.TextField(blank=True)  # the approved text (possibly edited by the approver), as posted
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=120, blank=True)  # "telegram:<id> (<name>)", "admin:<user>", "system"
    decision_note = models.TextField(blank=True)

    class Meta:
        abstract = True


class AiReport(Decision):
    """A market report written by Claude (``is_template`` False) or, without an API key, by the built-in template.

    ``facts`` is exactly what the writer was given, so every number in ``content`` can be traced to the database.
    """

    class Status(models.TextChoices):
        PENDING_APPROVAL = "pending_approval"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
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


class CallPurpose(models.TextChoices):
    REPORT = "report", "Market report"
    EXPLANATION = "explanation", "Trade explanation"


class AiCall(models.Model):
    """One call to Claude (the SDK's own retries included: ``attempts`` says how many HTTP requests it took), written
    whether it succeeded or not.  ``ref`` names what it was for: ``<kind>:<day>`` for a report, ``trade:<id>`` for an
    explanation.  Tokens are zero and ``cost_usd`` null when the call failed (nothing billed as far as we know)."""

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"

    purpose = models.CharField(max_length=16, choices=CallPurpose.choices)
    ref = models.CharField(max_length=64)
    model = models.CharField(max_length=64)  # the model the API answered with, else the one asked for
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)  # null: price unknown
    latency_ms = models.PositiveIntegerField()  # wall time of the whole call, retries and their waits included
    attempts = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=5, choices=Status.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # the API's HTTP status on error
    error = models.TextField(blank=True)
    at = models.DateTimeField(db_index=True)  # platform clock when the call started

    class Meta:
        db_table = "ai_calls"
        indexes = [models.Index(fields=["purpose", "ref"], name="ai_call_purpose_ref")]
        ordering = ("-at",)

    def __str__(self) -> str:
        return f"{self.purpose} {self.ref} {self.status} ({self.input_tokens}+{self.output_tokens} tokens)"


class AiExplanation(Decision):
    """Why the platform entered a trade, in words that cite the evidence they rest on.

    ``evidence`` is exactly what the writer was given: ``{"trade": {...}, "items": [{"id": "S1", ...}, ...]}`` with the
    signal (S1), the biggest flow alerts before it (F1..Fn), the GEX levels (G1..Gn) and the risk decision (R1).
    ``citations`` are the ids the text cites, in order of first use; ``unknown_citations`` those that are not in the
    evidence (a failed explanation keeps them, to show why it failed).  Tokens and cost add up every call made for it.
    """

    class Status(models.TextChoices):
        PENDING_APPROVAL = "pending_approval"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        PUBLISHED = "published"
        FAILED = "failed"

    trade_id = models.BigIntegerField(unique=True)  # execution.Trade; no FK: commentary never holds the trade up
    evidence = models.JSONField(default=dict)
    content = models.TextField(blank=True)
    citations = models.JSONField(default=list)
    unknown_citations = models.JSONField(default=list)
    model = models.CharField(max_length=64)  # the Anthropic model id, or "template"
    is_template = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING_APPROVAL, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "ai_explainability"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        writer = "template" if self.is_template else self.model
        return f"Explanation of trade {self.trade_id} ({writer}, {self.status})"
