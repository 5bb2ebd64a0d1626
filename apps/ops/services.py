"""Writes of the ops app: dead letters, audit entries and the worker canary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from apps.core import clock, store
from apps.ops.models import AuditLog, DeadLetter

CANARY_KEY = "ops:canary"


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
    return DeadLetter.objects.create(
        task_name=task_name or "",
        task_id=task_id or "",
        args=_json_safe(list(args or ())),
        kwargs=_json_safe(dict(kwargs or {})),
        exception=text,
        traceback=traceback,
        at=clock.now(),
    )


def audit_record(*, actor: str, action: str, target: str = "", detail: Mapping[str, Any] | None = None) -> AuditLog:
    """Append one audit entry stamped with the platform clock; entries are never edited."""
    return AuditLog.objects.create(
        actor=actor, action=action, target=target, detail=_json_safe(dict(detail or {})), at=clock.now()
    )


def canary_beat() -> str:
    """Write the current instant to ``ops:canary``: a worker that stops consuming leaves the value growing old."""
    stamp = clock.now().isoformat()
    store.get_redis().set(CANARY_KEY, stamp)
    return stamp
