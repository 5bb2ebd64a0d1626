"""Celery signal receivers of the ops app (imported by ``OpsConfig.ready``)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.signals import after_task_publish, task_failure, task_internal_error, worker_process_init

from apps.core import store
from apps.ops import services

logger = logging.getLogger(__name__)


def _dead_letter(sender: Any, task_id: str | None, exception: Any, args: Any, kwargs: Any, einfo: Any) -> None:
    task_name = getattr(sender, "name", None) or str(sender)
    row = services.dead_letter_record(
        task_name=task_name,
        task_id=task_id or "",
        args=args,
        kwargs=kwargs,
        exception=exception if exception is not None else "unknown failure",
        traceback=str(einfo) if einfo is not None else "",
    )
    logger.error(
        "task failed; dead letter recorded", extra={"task": task_name, "task_id": task_id, "dead_letter_id": row.pk}
    )


@task_failure.connect(dispatch_uid="ops.dead_letter_on_task_failure")
def dead_letter_on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """Record every failed task run as a DeadLetter row, so a failed link of a chain is visible and can be re-sent."""
    _dead_letter(sender, task_id, exception, args, kwargs, einfo)


@task_internal_error.connect(dispatch_uid="ops.dead_letter_on_eager_task_error")
def dead_letter_on_eager_task_error(
    sender: Any = None,
    task_id: str | None = None,
    args: Any = None,
    kwargs: Any = None,
    request: Any = None,
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """Record the failures of in-process (eager) runs, which never send ``task_failure``.

    With ``task_eager_propagates`` (the embedded default) Celery re-raises a task's exception into the caller before
    its failure path runs and reports it only through this signal.  On a worker an internal error is followed by
    ``task_failure``, which records it, so only eager runs are recorded here.
    """
    is_eager = request.get("is_eager", False) if isinstance(request, dict) else getattr(request, "is_eager", False)
    if is_eager:
        _dead_letter(sender, task_id, exception, args, kwargs, einfo)


@worker_process_init.connect(dispatch_uid="ops.fresh_redis_client_in_worker_child")
def fresh_redis_client_in_worker_child(**_: Any) -> None:
    """A prefork child must not share the parent's Redis socket: two processes on one socket garble replies."""
    store.reset_client()


@after_task_publish.connect(dispatch_uid="ops.canary_sent")
def canary_sent(sender: Any = None, body: Any = None, routing_key: str | None = None, **_: Any) -> None:
    """Note each canary published (by beat, in whatever process sends it) with the queue it went to: the alert
    evaluator raises WorkerStalled only for a canary that was really sent and has waited too long."""
    if sender != services.CANARY_TASK:
        return
    # Message protocol 2: (args, kwargs, embed); the canary names its queue, else the routing key is the queue.
    kwargs = body[1] if isinstance(body, list | tuple) and len(body) > 1 and isinstance(body[1], dict) else {}
    queue = str(kwargs.get("queue") or routing_key or "")
    if not queue:
        return
    try:
        services.canary_sent_record(queue=queue)
    except redis.RedisError as exc:  # the publish succeeded; a missing mark only delays WorkerStalled
        logger.warning("canary sent to %s not recorded: %s", queue, exc)
