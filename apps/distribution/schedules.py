"""Beat entries for distribution, read by ``manage.py setup_schedules``."""

PERIODIC_TASKS = [
    dict(
        name="distribution: release due posts",
        task="distribution.release_due",
        interval_seconds=5,
    ),
]
