"""Signal engine tasks: thin wrappers around the evaluation service."""

from __future__ import annotations

from celery import shared_task

from apps.signals.services import signal_evaluate


@shared_task(name="signals.evaluate", acks_late=True)
def evaluate(snapshot_id: int) -> str:
    """Evaluate the strategy of one analytics snapshot; returns the signal id, or "" when the strategy stayed quiet.

    Safe to run twice: the signal id is derived from the strategy version and the evidence, the row is unique on
    it, and ``risk.review`` is sent only by the run that created the row.
    """
    outcome = signal_evaluate(snapshot_id=snapshot_id)
    return outcome.signal.signal_id if outcome.signal is not None else ""
