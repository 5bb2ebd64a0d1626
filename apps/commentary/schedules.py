"""Beat entries for the market reports (New York wall-clock times, weekdays; holidays are skipped by the task)."""

_WEEKDAYS = "mon-fri"

PERIODIC_TASKS = [
    dict(
        name="commentary: pre-market report",
        task="commentary.market_report",
        crontab={"minute": "0", "hour": "9", "day_of_week": _WEEKDAYS},
        timezone="America/New_York",
        kwargs={"kind": "pre_market"},
    ),
    dict(
        name="commentary: intraday report",
        task="commentary.market_report",
        crontab={"minute": "30", "hour": "12", "day_of_week": _WEEKDAYS},
        timezone="America/New_York",
        kwargs={"kind": "intraday"},
    ),
    dict(
        name="commentary: post-market report",
        task="commentary.market_report",
        crontab={"minute": "30", "hour": "16", "day_of_week": _WEEKDAYS},
        timezone="America/New_York",
        kwargs={"kind": "post_market"},
    ),
]
