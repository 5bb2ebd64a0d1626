"""Beat entries for risk, read by ``manage.py setup_schedules`` (and fired on the simulated clock in a replay)."""

PERIODIC_TASKS = [
    # Two-year retention of risk_audit, at night New York time: far from the session and from the end-of-day reports.
    dict(
        name="risk: purge audit",
        task="risk.purge_audit",
        crontab={"minute": "30", "hour": "3"},
        timezone="America/New_York",
        queue="risk",
    ),
]
