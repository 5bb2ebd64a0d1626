"""Periodic tasks of the ops app, installed into django_celery_beat by ``manage.py setup_schedules``."""

PERIODIC_TASKS = [
    # Every minute, so a stalled worker shows as a canary older than a couple of minutes in ``manage.py health``.
    {"name": "ops: worker canary", "task": "ops.canary", "interval_seconds": 60, "queue": "ops"},
]
