"""The NYSE calendar (2025-2027 and beyond, from ``exchange_calendars``' XNYS): trading days, holidays, early closes,
regular and extended sessions, in America/New_York at the edges and UTC inside.

SPY, QQQ and IWM options trade 15 minutes past the equity close (``OPTIONS_CLOSE_DELAY``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
OPTIONS_CLOSE_DELAY = timedelta(minutes=15)
PRE_MARKET_OPEN = time(4, 0)
AFTER_HOURS_CLOSE = time(20, 0)
CALENDAR_START = "2024-01-01"
CALENDAR_END = "2028-12-31"


@dataclass(frozen=True)
class MarketSession:
    """One trading day. All datetimes are aware UTC."""

    day: date
    open: datetime
    close: datetime
    pre_market_open: datetime
    after_hours_close: datetime
    early_close: bool

    @property
    def options_close(self) -> datetime:
        return self.close + OPTIONS_CLOSE_DELAY

    def is_regular(self, instant: datetime) -> bool:
        return self.open <= instant < self.close

    def is_extended(self, instant: datetime) -> bool:
        return self.pre_market_open <= instant < self.after_hours_close and not self.is_regular(instant)

    def minutes_to_close(self, instant: datetime) -> float:
        return (self.close - instant).total_seconds() / 60.0

    def minutes_since_open(self, instant: datetime) -> float:
        return (instant - self.open).total_seconds() / 60.0


@functools.cache
def _xnys() -> Any:  # an exchange_calendars.ExchangeCalendar (the package ships no type information)
    import exchange_calendars

    return exchange_calendars.get_calendar("XNYS", start=CALENDAR_START, end=CALENDAR_END)


@functools.cache
def _sessions() -> dict[date, tuple[datetime, datetime]]:
    cal = _xnys()
    schedule = cal.schedule
    return {
        ts.date(): (row.open.to_pydatetime().astimezone(UTC), row.close.to_pydatetime().astimezone(UTC))
        for ts, row in zip(schedule.index, schedule.itertuples(), strict=True)
    }


def _at(day: date, wall: time) -> datetime:
    return datetime.combine(day, wall, tzinfo=NEW_YORK).astimezone(UTC)


def _check_range(day: date) -> None:
    if not (date.fromisoformat(CALENDAR_START) <= day <= date.fromisoformat(CALENDAR_END)):
        raise ValueError(f"{day} is outside the calendar ({CALENDAR_START} to {CALENDAR_END})")


def is_trading_day(day: date) -> bool:
    _check_range(day)
    return day in _sessions()


def session_for(day: date) -> MarketSession | None:
    """The session of ``day``, or ``None`` on weekends and holidays."""
    _check_range(day)
    times = _sessions().get(day)
    if times is None:
        return None
    open_, close = times
    regular_close = _at(day, time(16, 0))
    return MarketSession(
        day=day,
        open=open_,
        close=close,
        pre_market_open=_at(day, PRE_MARKET_OPEN),
        after_hours_close=_at(day, AFTER_HOURS_CLOSE),
        early_close=close < regular_close,
    )


def next_trading_day(day: date) -> date:
    candidate = day + timedelta(days=1)
    while not is_trading_day(candidate):
        candidate += timedelta(days=1)
    return candidate


def previous_trading_day(day: date) -> date:
    candidate = day - timedelta(days=1)
    while not is_trading_day(candidate):
        candidate -= timedelta(days=1)
    return candidate


def trading_days_between(start: date, end: date) -> int:
    """Trading days in ``(start, end]``: 0 for an option expiring today, 1 for tomorrow's expiry."""
    if end <= start:
        return 0
    return sum(1 for d in _sessions() if start < d <= end)


def market_day(instant: datetime) -> date:
    """The New York calendar date of an instant."""
    return instant.astimezone(NEW_YORK).date()


def holidays(year: int) -> list[date]:
    """Weekday holidays of ``year`` (days the exchange is closed that are not weekends)."""
    days = []
    d = date(year, 1, 1)
    while d.year == year:
        if d.weekday() < 5 and not is_trading_day(d):
            days.append(d)
        d += timedelta(days=1)
    return days
