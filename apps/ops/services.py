"""Writes of the ops app: dead letters, audit entries and the worker canary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from apps.core import clock, queues, store
from apps.ops import metrics
from apps.ops.models import AuditLog, DeadLetter

CANARY_KEY = "ops:canary"
CANARY_TASK = "ops.canary"


def _json_safe(value: Any) -> Any:
    """A JSON-storable copy of ``value``: task arguments are JSON already, but a failure must be recorded whatever
    came in (a Decimal or a datetime passed by mistake becomes its string rather than losing the whole record)."""
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def dead_letter_record(
    *,
    task_name: str,
    task_id: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    exception: BaseException | str,
    traceback: str = "",
) -> DeadLetter:
    """Keep one failed task run.  Each failure is its own row: a task that fails on three retries leaves three."""
    text = exception if isinstance(exception, str) else f"{type(exception).__name__}: {exception}"
    row = DeadLetter.objects.create(
        task_name=task_name or "",
        task_id=task_id or "",
        args=_json_safe(list(args or ())),
        kwargs=_json_safe(dict(kwargs or {})),
        exception=text,
        traceback=traceback,
        at=clock.now(),
    )
    metrics.dead_letter()
    return row


def audit_record(*, actor: str, action: str, target: str = "", detail: Mapping[str, Any] | None = None) -> AuditLog:
    """Append one audit entry stamped with the platform clock; entries are never edited."""
    return AuditLog.objects.create(
        actor=actor, action=action, target=target, detail=_json_safe(dict(detail or {})), at=clock.now()
    )


def canary_consumed_key(queue: str) -> str:
    """When a worker of ``queue`` last ran a canary taken from it."""
    return f"ops:canary:{queue}"


def canary_pending_key(queue: str) -> str:
    """When the oldest canary sent to ``queue`` and not yet consumed was sent (absent: nothing waits)."""
    return f"ops:canary:pending:{queue}"


def canary_sent_key(queue: str) -> str:
    """When a canary was last sent to ``queue`` (by beat, or ``canaries_send``)."""
    return f"ops:canary:sent:{queue}"


def canary_beat(*, queue: str = queues.OPS) -> str:
    """A worker of ``queue`` consumed a canary: stamp ``ops:canary:<queue>`` with now and clear the queue's pending
    mark.  The ``ops`` queue's canary also stamps ``ops:canary``, which ``manage.py health --require-fresh-canary``
    reads.  A worker that stops consuming leaves its stamp growing old and the pending mark in place."""
    stamp = clock.now().isoformat()
    with store.get_redis().pipeline(transaction=False) as pipe:
        pipe.set(canary_consumed_key(queue), stamp)
        pipe.delete(canary_pending_key(queue))
        if queue == queues.OPS:
            pipe.set(CANARY_KEY, stamp)
        pipe.execute()
    return stamp


def canary_sent_record(*, queue: str) -> None:
    """A canary was published to ``queue``: note when, and start the pending mark unless an older canary still waits
    (``SET NX``), so the mark's age is how long the queue has left a canary unconsumed."""
    stamp = clock.now().isoformat()
    with store.get_redis().pipeline(transaction=False) as pipe:
        pipe.set(canary_sent_key(queue), stamp)
        pipe.set(canary_pending_key(queue), stamp, nx=True)
        pipe.execute()


def canaries_send(*, queue_names: Sequence[str] = queues.ALL) -> list[str]:
    """Publish one ``ops.canary`` to each of ``queue_names`` (what beat's canary entries do, one per queue).

    The publish itself is recorded by the ``after_task_publish`` receiver, whoever sends, so beat's sends and these
    are accounted for the same way.  Returns the queues sent to."""
    from celery import current_app

    for queue in queue_names:
        current_app.send_task(CANARY_TASK, kwargs={"queue": queue}, queue=queue)
    return list(queue_names)
