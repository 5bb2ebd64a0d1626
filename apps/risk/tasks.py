"""Risk stage task: thin, by id."""

from __future__ import annotations

from celery import shared_task

from apps.risk.services import signal_review


@shared_task(name="risk.review", acks_late=True)
def review(signal_id: str) -> int:
    """Decide on one signal and, when approved, enqueue ``execution.submit_order`` after commit.

    Running twice is safe: there is one decision per signal (unique), and a second run returns the first decision
    without enqueueing anything again.
    """
    return signal_review(signal_id=signal_id).pk
