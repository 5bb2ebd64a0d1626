"""Beat entries for the Unusual Whales REST polls, read by ``manage.py setup_schedules``.

Crontabs in New York time, weekdays 09:00-16:59 (the tasks also skip holidays and the hours after an early close:
``market_hours_only``).  The budget is ``UW_REST_REQUESTS_PER_MINUTE`` = 120 shared by every process; with the
three default ``TRACKED_TICKERS`` (N = 3) these entries cost, per minute:

    spot exposures, net premium ticks, stock state   every minute per ticker   3 x N      = 9
    flow alerts backfill                              every minute              1          = 1   (more pages only
                                                                                                  after a gap)
    1-minute candles                                  every 5 minutes per ticker N / 5     = 0.6
    news headlines                                    every 2 minutes           1 / 2      = 0.5
    market tide                                       every 5 minutes           1 / 5      = 0.2
    greek exposure, option contracts                  every 15 minutes per t.   2 x N / 15 = 0.4
                                                                                 average   ~ 11.7 / minute

The busiest minute (:00, :30) fires everything at once: 9 + 1 + 3 + 1 + 1 + 6 = 21 requests, a sixth of the budget,
which leaves room for backfill pages after an outage and for retries.  A day of 8 polled hours is about
480 x 11.7 = 5,600 requests, well under a 15,000/day plan.  Each extra ticker adds about 3.8 requests a minute.
"""

from django.conf import settings

_WEEKDAYS = "mon-fri"
_HOURS = "9-16"
_NY = "America/New_York"


def _every(minutes: str) -> dict[str, str]:
    return {"minute": minutes, "hour": _HOURS, "day_of_week": _WEEKDAYS}


def _poll(endpoint: str, minutes: str, ticker: str | None = None) -> dict[str, object]:
    kwargs: dict[str, object] = {"endpoint": endpoint, "market_hours_only": True}
    if ticker:
        kwargs["ticker"] = ticker
    return {
        "name": f"ingestion: rest {endpoint}" + (f" {ticker}" if ticker else ""),
        "task": "ingestion.rest_poll",
        "crontab": _every(minutes),
        "timezone": _NY,
        "kwargs": kwargs,
        "queue": "ingestion",
        # The recorded session is a replay's data: the live API is never asked (rest_tasks._should_skip).
        "replay": False,
    }


PERIODIC_TASKS: list[dict[str, object]] = [
    {
        "name": "ingestion: flow alerts backfill",
        "task": "ingestion.flow_alerts_backfill",
        "crontab": _every("*"),
        "timezone": _NY,
        "kwargs": {"market_hours_only": True},
        "queue": "ingestion",
        "replay": False,
    },
    _poll("news", "*/2"),
    _poll("market_tide", "*/5"),
]
for _ticker in settings.TRACKED_TICKERS:
    PERIODIC_TASKS += [
        _poll("spot_exposures", "*", _ticker),
        _poll("net_prem_ticks", "*", _ticker),
        _poll("stock_state", "*", _ticker),
        _poll("candles_1m", "*/5", _ticker),
        _poll("greek_exposure", "*/15", _ticker),
        _poll("option_contracts", "*/15", _ticker),
    ]
