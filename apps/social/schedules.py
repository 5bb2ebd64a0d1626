"""Beat entries for the social queue, read by ``manage.py setup_schedules``."""

PERIODIC_TASKS = [
    dict(name="social: publish due posts", task="distribution.social_publish_due", interval_seconds=15),
]
