"""Beat entries for distribution, read by ``manage.py setup_schedules``."""

PERIODIC_TASKS = [
    dict(
        name="distribution: release due posts",
        task="distribution.release_due",
        interval_seconds=5,
    ),
    dict(
        name="distribution: daily summary",
        task="distribution.daily_summary",
        crontab={"minute": "15", "hour": "16", "day_of_week": "mon-fri"},
        timezone="America/New_York",
    ),
]
