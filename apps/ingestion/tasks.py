"""Ingestion's Celery task: a batch of socket lines in, the next stage enqueued after commit."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import shared_task
from celery.signals import worker_shutdown
from django.db import DatabaseError, OperationalError

from apps.ingestion.ib_market import ib_ticks_ingest
from apps.ingestion.services import ingest_lines

logger = logging.getLogger(__name__)

# Transient: the database or Redis went away, or "latest" keys kept changing under concurrent writers.
TRANSIENT = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.WatchError)


@shared_task(
    name="ingestion.ingest_batch",
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def ingest_batch(lines: list[str], source: str = "uw_ws") -> dict[str, Any]:
    """Ingest one batch of socket lines (``{"received_at", "frame"}`` JSON each).

    Running it twice is safe: every frame is archived once under the hash of its bytes, so a redelivered batch finds
    its frames already archived and counts them as duplicates; normalized rows sit behind unique natural keys;
    "latest" Redis keys only move forward in market time; and the whole batch is one transaction, so a failure
    part-way leaves nothing behind for the retry to trip over.
    """
    return ingest_lines(lines=lines, source=source).summary()


from apps.ingestion import rest_tasks  # noqa: F401, E402


@worker_shutdown.connect
def _drift_counts_flush(**_: object) -> None:
    """A worker going away writes the drift occurrence counts it held back (at most a few seconds of them)."""
    from apps.ingestion import drift

    try:
        drift.flush()
    except DatabaseError as exc:
        logger.warning("drift counts not written at shutdown: %s", exc)


@shared_task(
    name="ingestion.ib_ticks",
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def ib_ticks(ticks: list[dict[str, Any]]) -> int:
    """Store one batch of Interactive Brokers ticks (``apps.ingestion.ib_market``); returns the rows written.

    Running it twice is safe: the second run appends the same snapshot rows again (same keys, values and
    ``quoted_at``, so "the newest row of a key" reads the same), and the latest hashes only take a batch at least as
    new as what they hold, so rewriting them with the same values changes nothing and a late or redelivered older
    batch never rewinds them.  The rows are one transaction and the hashes are written after it commits, so a retry
    after a failure never finds half a batch.
    """
    return ib_ticks_ingest(ticks=ticks)
