"""The Celery application: one queue per pipeline stage, routed by the dotted task name's first part."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")

app = Celery("tradingplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")

# Task names are stable dotted strings (``ingestion.ingest_batch``): beat rows store them as text, and the first part
# names the stage, which is also the queue.
STAGES = ("ingestion", "analytics", "signals", "risk", "execution", "distribution", "commentary", "ops")
app.conf.task_routes = {
    # Flattening sells through the broker: it runs where every order runs, on the one execution consumer.
    "risk.flatten_all": {"queue": "execution"},
    **{f"{stage}.*": {"queue": stage} for stage in STAGES},
}
app.autodiscover_tasks()


@setup_logging.connect(dispatch_uid="tradingplatform.keep_django_logging")
def keep_django_logging(**_: Any) -> None:
    """Workers and beat log through Django's ``LOGGING`` (LOG_LEVEL, LOG_FORMAT, the correlation id) and nothing else.

    Without a receiver of this signal Celery configures logging itself and sets the root level from its own
    ``--loglevel`` (WARNING by default), which silenced every INFO line of the stages in the workers whatever LOG_LEVEL
    said.  Django has configured logging already when a worker or beat starts (the Django fixup calls setup).
    """
