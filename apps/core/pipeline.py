"""How a stage hands work to the next: after its transaction commits, passing ids, never payloads."""

from __future__ import annotations

from typing import Any

from celery import Task
from django.db import transaction


def enqueue_after_commit(task: Task, *args: Any, **kwargs: Any) -> None:
    """Send ``task`` once the surrounding transaction commits (at once when there is none).

    A rolled-back stage therefore never triggers the next one, and the next one never reads rows that are not there.
    """
    transaction.on_commit(lambda: task.apply_async(args=args, kwargs=kwargs))
