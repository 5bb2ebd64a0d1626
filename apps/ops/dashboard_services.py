"""Writes of the operations dashboard: the chart history in Redis (``ops:dashboard:series``)."""

from __future__ import annotations

from typing import Any

import orjson

from apps.core import clock, store
from apps.ops.dashboard_selectors import SERIES_KEY, dashboard_sample, series_capacity


def dashboard_sample_record() -> dict[str, Any] | None:
    """Append one sample of the charts' figures to ``ops:dashboard:series`` and trim the list to one trading session
    (``series_capacity()``), in one round trip.  Returns the sample written.

    The list is capped, so it never grows past a session however long beat runs; the charts read only the current
    New York day from it.  Under a simulated clock (a replay fires every beat declaration as its day passes) nothing
    is recorded and ``None`` is returned: the charts are of the live platform, and a replayed day would spend
    thousands of samples on a page nobody watches.
    """
    if clock.is_simulated():
        return None
    sample = dashboard_sample()
    with store.get_redis().pipeline(transaction=True) as pipe:
        pipe.rpush(SERIES_KEY, orjson.dumps(sample))
        pipe.ltrim(SERIES_KEY, -series_capacity(), -1)
        pipe.execute()
    return sample
