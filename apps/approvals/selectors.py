"""Approval reads: what waits for a decision, and what the Telegram bot still has to show or close."""

from __future__ import annotations

from django.db.models import F, QuerySet

from apps.approvals.models import ApprovalRequest

Status = ApprovalRequest.Status


def pending() -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.filter(status=Status.PENDING).order_by("created_at", "pk")


def to_present() -> QuerySet[ApprovalRequest]:
    """Pending requests whose current text is not in Telegram yet (new, or edited since it was shown)."""
    return pending().filter(presented_revision__lt=F("revision"))


def to_close() -> QuerySet[ApprovalRequest]:
    """Decided or expired requests whose Telegram message still shows the buttons."""
    return (
        ApprovalRequest.objects.exclude(status=Status.PENDING)
        .filter(telegram_message_id__isnull=False, closed_notice_at__isnull=True)
        .order_by("decided_at", "pk")
    )


def request_for(*, subject_type: str, subject_id: int) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(subject_type=subject_type, subject_id=subject_id).first()
