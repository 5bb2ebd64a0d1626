"""Approvals: nothing drafted for the public (a social post, an AI report, a trade explanation) is published before a
person with the permission approves it.

One ``ApprovalRequest`` per subject (``subject_type``, ``subject_id``); every action on it, allowed or refused, is an
``ApprovalAction``.  Who may act is decided per person: a Telegram user id is only an identity (``TelegramIdentity``
links it to a Django user), and that user's permissions decide, exactly as they do in the admin and the API.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SubjectType(models.TextChoices):
    SOCIAL_POST = "social_post", "Social post"
    AI_REPORT = "ai_report", "AI market report"
    AI_EXPLANATION = "ai_explanation", "AI trade explanation"


class ApprovalRequest(models.Model):
    """A text waiting for a person's decision.  ``text`` is what will be published: an edit replaces it (and bumps
    ``revision`` so the Telegram bot shows the new text); ``original_text`` keeps what was drafted."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"

    subject_type = models.CharField(max_length=32, choices=SubjectType.choices)
    subject_id = models.BigIntegerField()
    title = models.CharField(max_length=200)
    text = models.TextField()
    original_text = models.TextField()
    max_length = models.PositiveIntegerField(null=True, blank=True)  # the publishing channel's limit (X: 280)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=120, blank=True)  # "telegram:<user id> (<username>)", "admin:<username>"
    decision_note = models.TextField(blank=True)
    edits = models.PositiveIntegerField(default=0)
    revision = models.PositiveIntegerField(default=1)
    # The Telegram message that shows this request (the bot's bookkeeping).
    telegram_chat_id = models.CharField(max_length=32, blank=True)
    telegram_message_id = models.BigIntegerField(null=True, blank=True)
    presented_revision = models.PositiveIntegerField(default=0)  # < revision: the bot must (re)show the text
    presented_at = models.DateTimeField(null=True, blank=True)
    closed_notice_at = models.DateTimeField(null=True, blank=True)  # the message was updated with the decision

    class Meta:
        db_table = "approvals_requests"
        constraints = [
            models.UniqueConstraint(fields=["subject_type", "subject_id"], name="approval_request_unique_subject")
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="approval_request_due")]
        permissions = [("decide_approvalrequest", "Can approve, reject or edit what is published")]

    def __str__(self) -> str:
        return f"{self.get_subject_type_display()} {self.subject_id}: {self.status}"


class ApprovalAction(models.Model):
    """One action by a person or the system, allowed or refused: approvals, edits, expiries, Telegram commands and
    every unauthorized attempt.  Never edited."""

    class Channel(models.TextChoices):
        TELEGRAM = "telegram"
        ADMIN = "admin"
        API = "api"
        SYSTEM = "system"

    request = models.ForeignKey(
        ApprovalRequest, null=True, blank=True, on_delete=models.CASCADE, related_name="actions"
    )  # null for a Telegram command
    channel = models.CharField(max_length=10, choices=Channel.choices)
    actor = models.CharField(max_length=120)
    telegram_user_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=40)  # approve, reject, edit, expire, present, command:/kill, ...
    allowed = models.BooleanField()
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        db_table = "approvals_actions"
        indexes = [models.Index(fields=["at"], name="approval_action_at")]

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "refused"
        return f"{self.actor} {self.action} ({verdict})"


class TelegramIdentity(models.Model):
    """A Telegram user id an operator acts from, linked to the Django user whose permissions apply."""

    telegram_user_id = models.BigIntegerField(unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="telegram_identities")
    label = models.CharField(max_length=120, blank=True)  # e.g. the Telegram @username, for people reading the log
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "approvals_telegram_identities"
        verbose_name_plural = "Telegram identities"

    def __str__(self) -> str:
        return f"telegram {self.telegram_user_id} -> {self.user}"
