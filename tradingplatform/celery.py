"""The Celery application: one queue per pipeline stage, routed by the dotted task name's first part."""

from __future__ import annotations

import os

from celery import Celery

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
