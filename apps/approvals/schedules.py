"""Beat entries for approvals, read by ``manage.py setup_schedules``."""

PERIODIC_TASKS = [
    dict(name="approvals: expire unanswered requests", task="distribution.approvals_expire", interval_seconds=30),
]
