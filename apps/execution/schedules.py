"""Beat entries for execution, read by ``manage.py setup_schedules`` (and fired on the simulated clock in a replay)."""

PERIODIC_TASKS = [
    # A backstop for exits: analytics only calls manage_exits when new data arrives for a ticker, and a time exit
    # (or a book close of a contract whose quotes stopped) must not wait for that.
    {"name": "execution: sweep exits", "task": "execution.sweep_exits", "interval_seconds": 60, "queue": "execution"},
]
