"""The platform's one source of time.

Live, ``now()`` is the wall clock (shifted by ``TP_CLOCK_OFFSET_SECONDS``, which lets every process of a benchmark or a
rehearsal agree on a market-hours instant).  In a replay the clock is *simulated*: ``advance_to`` moves it to each
recorded timestamp, so strategy cut-offs, tier delays and report times behave as they do live.  All values are
timezone-aware UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_simulated: datetime | None = None


def _offset() -> timedelta:
    from django.conf import settings

    return timedelta(seconds=getattr(settings, "TP_CLOCK_OFFSET_SECONDS", 0))


def now() -> datetime:
    """The current instant: simulated when a replay drives the clock, else the (offset) wall clock."""
    current = _simulated
    if current is not None:
        return current
    return datetime.now(UTC) + _offset()


def is_simulated() -> bool:
    return _simulated is not None


def set_simulated(instant: datetime) -> None:
    """Start (or reset) the simulated clock at ``instant``; it only moves when told to."""
    global _simulated
    if instant.tzinfo is None:
        raise ValueError("the simulated clock needs an aware datetime")
    with _lock:
        _simulated = instant.astimezone(UTC)


def advance_to(instant: datetime) -> datetime:
    """Move the simulated clock forward to ``instant``; it never goes backwards (late frames do not rewind time)."""
    global _simulated
    if _simulated is None:
        raise RuntimeError("advance_to needs a simulated clock (set_simulated first)")
    with _lock:
        if instant > _simulated:
            _simulated = instant.astimezone(UTC)
        return _simulated


def use_wall_clock() -> None:
    global _simulated
    with _lock:
        _simulated = None


@contextmanager
def simulated(start: datetime) -> Iterator[None]:
    """Run a block on a simulated clock that starts at ``start``; the wall clock is back afterwards."""
    global _simulated
    previous = _simulated
    set_simulated(start)
    try:
        yield
    finally:
        with _lock:
            _simulated = previous
