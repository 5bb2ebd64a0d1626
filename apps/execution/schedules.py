"""Beat entries for execution, read by ``manage.py setup_schedules`` (and fired on the simulated clock in a replay)."""

PERIODIC_TASKS = [
    # A backstop for exits: analytics only calls manage_exits when new data arrives for a ticker, and a time exit
    # (or a book close of a contract whose quotes stopped) must not wait for that.
    {"name": "execution: sweep exits", "task": "execution.sweep_exits", "interval_seconds": 60, "queue": "execution"},
    # After the close (options stop at 16:15): the day's order log and trades as CSV for the books.
    {
        "name": "execution: export trade log",
        "task": "execution.export_trade_log",
        "crontab": {"minute": "30", "hour": "17", "day_of_week": "mon-fri"},
        "timezone": "America/New_York",
        "queue": "execution",
    },
]
