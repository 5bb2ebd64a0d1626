"""The dashboard's beat task: the charts' history, sampled every ``DASHBOARD_SAMPLE_SECONDS``."""

from __future__ import annotations

from celery import shared_task

from apps.ops.dashboard_services import dashboard_sample_record


@shared_task(name="ops.dashboard_sample", ignore_result=True)
def dashboard_sample() -> None:
    """Record one point of the dashboard's charts (PnL, ingestion rate, queue depths) in ``ops:dashboard:series``.

    Running it twice adds a second point a moment after the first: the charts draw one more point, nothing else
    changes.  A missed run leaves a gap in the charts, nothing to catch up.
    """
    dashboard_sample_record()
