from datetime import date, datetime, time

import pytest

from apps.core import calendar


def test_thanksgiving_2026_is_a_holiday_and_the_day_after_closes_early():
    assert not calendar.is_trading_day(date(2026, 11, 26))
    friday = calendar.session_for(date(2026, 11, 27))
    assert friday is not None and friday.early_close
    assert friday.close.astimezone(calendar.NEW_YORK).time() == time(13, 0)


def test_regular_session_is_0930_to_1600_new_york_and_options_trade_15_minutes_more():
    session = calendar.session_for(date(2026, 11, 20))
    assert session is not None and not session.early_close
    assert session.open.astimezone(calendar.NEW_YORK).time() == time(9, 30)
    assert session.close.astimezone(calendar.NEW_YORK).time() == time(16, 0)
    assert session.options_close.astimezone(calendar.NEW_YORK).time() == time(16, 15)
    assert session.pre_market_open.astimezone(calendar.NEW_YORK).time() == time(4, 0)


@pytest.mark.parametrize(
    "day",
    [date(2025, 1, 1), date(2025, 4, 18), date(2025, 12, 25), date(2026, 7, 3), date(2027, 3, 26), date(2027, 6, 18)],
)
def test_holidays_2025_to_2027_are_closed(day):
    assert not calendar.is_trading_day(day)
    assert day in calendar.holidays(day.year)


def test_weekend_has_no_session_and_next_trading_day_skips_it():
    assert calendar.session_for(date(2026, 11, 21)) is None
    assert calendar.next_trading_day(date(2026, 11, 20)) == date(2026, 11, 23)
    assert calendar.previous_trading_day(date(2026, 11, 23)) == date(2026, 11, 20)


def test_trading_days_between_counts_dte():
    assert calendar.trading_days_between(date(2026, 11, 20), date(2026, 11, 20)) == 0
    assert calendar.trading_days_between(date(2026, 11, 20), date(2026, 11, 23)) == 1
    # Thanksgiving is skipped
    assert calendar.trading_days_between(date(2026, 11, 25), date(2026, 11, 27)) == 1


def test_session_classifies_regular_and_extended_hours():
    session = calendar.session_for(date(2026, 11, 20))
    assert session is not None
    ny = calendar.NEW_YORK
    assert session.is_regular(datetime(2026, 11, 20, 10, 0, tzinfo=ny))
    assert session.is_extended(datetime(2026, 11, 20, 8, 0, tzinfo=ny))
    assert not session.is_extended(datetime(2026, 11, 20, 21, 0, tzinfo=ny))


def test_dates_outside_the_calendar_are_refused_clearly():
    with pytest.raises(ValueError, match="outside the calendar"):
        calendar.is_trading_day(date(1999, 1, 4))
