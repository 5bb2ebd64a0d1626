"""The correlation id across Celery: one market event keeps one id from the task that ingested it to the post that
announced the trade it led to.

A task enqueued while a correlation id is set carries it in a message header (``correlation_id``); the worker that
runs the task sets it again for the run, so every log line of every stage (``apps.core.logging.CorrelationFilter``)
and every task that run enqueues carry it on.  A task that arrives with none (a batch from the WebSocket listener, a
beat tick) starts one of its own: ``<stage>-<first 12 characters of its task id>``.

In-process (eager) runs never publish a message: the id simply stays set in the caller's context, and a nested task
keeps it.  Each run ends by putting back the id that was set before it, so a worker thread never leaks one run's id
into the next.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from apps.core.logging import correlation_id

HEADER = "tp_correlation_id"  # Celery uses "correlation_id" itself (the task id)
UNSET = "-"

# Each task run's line at DEBUG (``apps.core.tasks``): with LOG_LEVEL=debug, ``jq 'select(.correlation_id == …)'``
# lists every task one event went through, with its duration, beside the stages' own lines.
task_logger = logging.getLogger("apps.core.tasks")

# task id -> (the correlation token to reset, the run's start on the monotonic clock)
_runs: dict[str, tuple[Any, float]] = {}


def current() -> str:
    """The correlation id set in this context, or ``-``."""
    return correlation_id.get()


def origin_id(*, task_name: str, task_id: str) -> str:
    """The id a task with no inherited one starts: its stage (the task name's first part) and its task id."""
    stage = task_name.split(".", 1)[0] or "task"
    return f"{stage}-{task_id.replace('-', '')[:12]}"


@before_task_publish.connect(dispatch_uid="core.correlation_header")
def correlation_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Put the current correlation id in the message headers of a task being sent (protocol 2 headers)."""
    cid = correlation_id.get()
    if headers is not None and cid != UNSET and HEADER not in headers:
        headers[HEADER] = cid


def _inherited(task: Any) -> str:
    request = getattr(task, "request", None)
    value = getattr(request, HEADER, None) if request is not None else None
    if not value and request is not None:
        value = (getattr(request, "headers", None) or {}).get(HEADER)
    return str(value) if value else ""


@task_prerun.connect(dispatch_uid="core.correlation_task_start")
def correlation_task_start(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Set the run's correlation id: the one its message carried, else the caller's (eager), else a new one."""
    if not task_id:
        return
    cid = _inherited(task) or correlation_id.get()
    if cid == UNSET:
        cid = origin_id(task_name=getattr(task, "name", "") or "", task_id=task_id)
    _runs[task_id] = (correlation_id.set(cid), time.monotonic())


@task_postrun.connect(dispatch_uid="core.correlation_task_end")
def correlation_task_end(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    """Log the run at DEBUG with its duration and put back the correlation id that was set before it."""
    run = _runs.pop(task_id or "", None)
    if run is None:
        return
    token, started = run
    task_logger.debug(
        "task %s %s in %.1f ms",
        getattr(task, "name", "?"),
        (state or "done").lower(),
        (time.monotonic() - started) * 1000,
        extra={"task": getattr(task, "name", "?"), "task_id": task_id},
    )
    try:
        correlation_id.reset(token)
    except ValueError:
        # Reset from another context than the one that set it (should not happen with Celery's pools): fall back to
        # clearing, never to leaking this run's id.
        correlation_id.set(UNSET)
