"""Celery signal receivers that record task metrics and serve a worker's metrics (imported by ``OpsConfig.ready``).

- ``tp_tasks_total{task,stage,outcome}``: every task run that ends (``task_postrun``), in the process that ran it.
- ``tp_stage_latency_seconds{stage}``: from the task's publication (or its ETA, when sent with a countdown) to the
  end of its run, so queue wait and run time together.  The tasks receive ids, not the market event's time, so the
  publication time is what every message can carry: ``before_task_publish`` puts the wall-clock time in the header
  ``tp_published_at``.  Eager runs (the replay, ``TP_TASKS_EAGER``) publish no message and record no latency; their
  runs are counted.
- A worker's main process serves the sum of its children on ``METRICS_PORT`` (``worker_init``, before the pool
  forks); a prefork child that exits is marked dead, so its live gauges stop counting (``worker_process_shutdown``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import datetime
from typing import Any

from celery.signals import before_task_publish, task_postrun, worker_init, worker_process_shutdown

from apps.ops import metrics

logger = logging.getLogger(__name__)

PUBLISHED_AT_HEADER = "tp_published_at"


@before_task_publish.connect(dispatch_uid="ops.metrics_published_at")
def published_at_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp the message with the time it was sent (a retry is a new message and gets a new stamp)."""
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = f"{time.time():.6f}"


def _published_at(task: Any) -> float | None:
    """When the run's message was sent, or when it was due if it was sent with a countdown (a post due in 10 s is
    not 10 s late when it runs on time)."""
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = getattr(request, PUBLISHED_AT_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(PUBLISHED_AT_HEADER)
    try:
        published = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    eta = getattr(request, "eta", None)
    if published is not None and eta:
        with contextlib.suppress(ValueError):  # not a timestamp: keep the publication time
            published = max(published, datetime.fromisoformat(str(eta)).timestamp())
    return published


@task_postrun.connect(dispatch_uid="ops.metrics_task_finished")
def task_finished(task: Any = None, state: str | None = None, **_: Any) -> None:
    """Count the run and, when its message carried its publication time, observe the stage latency."""
    name = getattr(task, "name", None)
    if not name:
        return
    published = _published_at(task)
    metrics.task_finished(
        task=name,
        outcome=(state or "success").lower(),
        latency_seconds=None if published is None else time.time() - published,
    )


@worker_init.connect(dispatch_uid="ops.metrics_worker_endpoint")
def worker_metrics_endpoint(**_: Any) -> None:
    """Serve the worker's metrics on ``METRICS_PORT`` from its main process (0: not served)."""
    from apps.ops.exporter import metrics_endpoint_start

    metrics_endpoint_start()


@worker_process_shutdown.connect(dispatch_uid="ops.metrics_child_dead")
def worker_child_dead(pid: int | None = None, **_: Any) -> None:
    """A prefork child going away: its live gauge files are removed; its counters stay in the sum."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid())
