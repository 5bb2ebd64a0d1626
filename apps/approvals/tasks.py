"""Approval tasks (on the distribution queue)."""

from __future__ import annotations

from celery import shared_task

from apps.approvals import services


@shared_task(name="distribution.approvals_expire", acks_late=True)
def approvals_expire() -> int:
    """Expire the approval requests nobody answered in time (beat).  Safe to run twice: each is expired under its row
    lock only while still pending."""
    return services.requests_expire_due()
