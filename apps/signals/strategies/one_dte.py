"""1DTE: contracts expiring the next trading day, on today's flow, held into the next session.

Rules (defaults):
- entries 10:00-15:45 New York; flow over the last 45 minutes: >= 2 alerts, >= $100k premium, score >= +/-0.35 with
  the premium imbalance agreeing;
- buy the next-trading-day contract nearest delta 0.40 (0.25-0.55), spread <= 15 %, OI >= 100, fresh quote;
- target +60 %, stop -35 %, time exit 11:00 New York on the next trading day (the expiry day: out hours before
  the close, so no pin or assignment risk); cooldown 30 minutes per ticker.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from apps.core import calendar
from apps.signals.models import Bucket, Strategy
from apps.signals.strategies.base import FlowStrategy, session_time


class OneDte(FlowStrategy):
    name = Strategy.ONE_DTE.value
    bucket = Bucket.ONE_DTE.value
    title = "1DTE"
    defaults: dict[str, Any] = {
        "entry_start": "10:00",
        "entry_cutoff": "15:45",
        "time_exit": "11:00",
        "profit_target_pct": 0.6,
        "stop_loss_pct": 0.35,
        "cooldown_minutes": 30,
    }

    def expiries(self, session: calendar.MarketSession, features: dict[str, Any]) -> set[date] | None:
        return {calendar.next_trading_day(session.day)}

    def time_exit(
        self, session: calendar.MarketSession, params: dict[str, Any], contract: dict[str, Any], as_of: datetime
    ) -> datetime:
        following = calendar.session_for(calendar.next_trading_day(session.day))
        assert following is not None  # next_trading_day only returns days with a session
        return session_time(following, params["time_exit"])
