"""Ops tasks."""

from __future__ import annotations

from celery import shared_task

from apps.ops import services


@shared_task(name="ops.canary", ignore_result=True)
def canary() -> str:
    """Prove that a worker consumes the ``ops`` queue by stamping ``ops:canary`` with the time it ran.

    Running it twice only moves the stamp forward to the later run, which is exactly what it should say.
    """
    return services.canary_beat()
