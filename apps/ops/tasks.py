"""Ops tasks: the worker canary of each stage queue and the platform's own alert evaluator."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.core import queues
from apps.ops import alerts, services


@shared_task(name="ops.canary", ignore_result=True)
def canary(*, queue: str = queues.OPS) -> str:
    """Prove that a worker consumes ``queue`` by stamping ``ops:canary:<queue>`` (and, for ``ops``, ``ops:canary``)
    with the time it ran.  Beat sends one to every stage queue, routed to that queue, with ``queue`` naming it.

    ``queue`` is keyword-only: a canary sent with positional arguments is a mistake and fails (a dead letter).
    Running it twice only moves the stamp forward to the later run, which is exactly what it should say.
    """
    return services.canary_beat(queue=queue)


@shared_task(name="ops.alerts_evaluate", ignore_result=True)
def alerts_evaluate() -> dict[str, Any]:
    """Check every alert condition, open, refresh or resolve the ``Alert`` rows, then deliver what is owed.

    Running it twice (or two at once) is safe: one open row per key is a database constraint, evaluation and
    delivery run under one Redis lock (a second run finding it held does nothing), and a channel that received a
    notice is marked on the row before the next one is tried, so a delivered notice is never sent again.
    """
    return alerts.alerts_evaluate().as_dict()


@shared_task(name="ops.alerts_deliver", ignore_result=True)
def alerts_deliver() -> dict[str, Any]:
    """Deliver the notices owed (sent after Alertmanager's webhook changed rows; the next evaluation is the backstop).

    Safe to run twice for the same reasons as ``ops.alerts_evaluate``.
    """
    return alerts.alerts_deliver().as_dict()
