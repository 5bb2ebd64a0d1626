"""Analytics tasks: thin wrappers that call the snapshot service."""

from __future__ import annotations

from celery import shared_task

from apps.analytics.services import snapshot_compute


@shared_task(name="analytics.update_ticker", acks_late=True)
def update_ticker(ticker: str, as_of: str) -> int:
    """Recompute the bucket snapshots of ``ticker`` at ``as_of`` (ISO) and hand them to the signal engine.

    Safe to run twice: snapshots are keyed by ``(ticker, bucket, as_of)`` and the follow-up tasks are sent only for
    snapshots this run created; a second run within the debounce interval does no work at all.
    Returns the number of snapshots written or found.
    """
    return len(snapshot_compute(ticker=ticker, as_of=as_of).snapshots)
