"""Risk stage tasks: thin, by id."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.core import queues
from apps.risk.services import audit_purge, positions_flatten, signal_review

FLATTEN_QUEUE = queues.EXECUTION


@shared_task(name="risk.review", acks_late=True)
def review(signal_id: str) -> int:
    """Decide on one signal and, when approved, enqueue ``execution.submit_order`` after commit.

    Running twice is safe: there is one decision per signal (unique), and a second run returns the first decision
    without enqueueing anything again.
    """
    return signal_review(signal_id=signal_id).pk


@shared_task(name="risk.flatten_all", acks_late=True)
def flatten_all(event_id: int) -> list[dict[str, Any]]:
    """Close every open trade for kill switch event ``event_id`` and record on it what stayed open.

    Sent to the execution queue (``FLATTEN_QUEUE``), whose single worker owns the book, so the pass never races an
    entry or an exit pass; ``kill_switch_engage`` sends it there explicitly, since routing by name would pick "risk".

    Running twice is safe: a closed trade is skipped, a working exit order is resumed rather than sent again, and the
    second run only records the newer list of what is still open.
    """
    return positions_flatten(event_id=event_id)


@shared_task(name="risk.purge_audit", acks_late=True)
def purge_audit() -> int:
    """Delete risk decisions older than two years (``risk_audit`` retention); returns how many went.

    Running twice is safe: the second run finds only rows that are still older than the cut-off, none once the first
    has finished, and deleting an already deleted row deletes nothing.
    """
    return audit_purge()
