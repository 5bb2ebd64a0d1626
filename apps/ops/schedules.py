"""Periodic tasks of the ops app, installed into django_celery_beat by ``manage.py setup_schedules``."""

from django.conf import settings

from apps.core import queues

CANARY_INTERVAL_SECONDS = 60

# None of these runs in a replay ("replay": False): they watch the live processes, which a replay does not have.
PERIODIC_TASKS = [
    # Beat itself sends a canary to every stage queue, routed to that queue, so a worker that stays up but stops
    # consuming one queue shows as that queue's canary waiting (WorkerStalled) -- whichever worker is stuck.  The ops
    # queue's entry keeps its historical name; its canary also stamps ops:canary for `manage.py health`.
    *(
        {
            "name": "ops: worker canary" if queue == queues.OPS else f"ops: worker canary ({queue})",
            "task": "ops.canary",
            "interval_seconds": CANARY_INTERVAL_SECONDS,
            "queue": queue,
            "kwargs": {"queue": queue},
            "replay": False,
        }
        for queue in queues.ALL
    ),
    # The platform's own alert evaluator: operators are alerted even where no Prometheus runs (docs/alerting.md).
    {
        "name": "ops: evaluate alerts",
        "task": "ops.alerts_evaluate",
        "interval_seconds": 15,
        "queue": "ops",
        "replay": False,
    },
    # The dashboard's charts (PnL, ingestion rate, queue depth): one sample into Redis ops:dashboard:series.
    {
        "name": "ops: dashboard sample",
        "task": "ops.dashboard_sample",
        "interval_seconds": settings.DASHBOARD_SAMPLE_SECONDS,
        "queue": "ops",
        "replay": False,
    },
]
