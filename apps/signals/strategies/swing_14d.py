"""14D+: swing entries in contracts 14 or more calendar days out, on sustained, opening flow.

Rules (defaults):
- entries 10:00-15:30 New York; flow over the last 90 minutes: >= 2 alerts, >= $200k premium, score >= +/-0.30 with
  the premium imbalance agreeing, and at least 30 % of the premium in opening trades (new positions, not closes);
- buy the contract nearest delta 0.40 (0.25-0.55), spread <= 15 %, OI >= 100, fresh quote (quotes of longer-dated
  contracts print less often: up to 15 minutes old);
- target +80 %, stop -40 %, time exit 15:30 New York five trading days later (never later than the trading day
  before expiry); cooldown 120 minutes per ticker.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from apps.core import calendar
from apps.signals.models import Bucket, Strategy
from apps.signals.strategies.base import FlowStrategy, session_time


class Swing14d(FlowStrategy):
    name = Strategy.SWING_14D.value
    bucket = Bucket.SWING_14D.value
    title = "14D+ swing"
    defaults: dict[str, Any] = {
        "entry_start": "10:00",
        "entry_cutoff": "15:30",
        "time_exit": "15:30",
        "hold_trading_days": 5,
        "min_flow_premium": 200000,
        "min_score": 0.30,
        "min_opening_share": 0.30,
        # Outer strikes print less often; still no older than the broker accepts (capped in choose_contract).
        "max_quote_age_seconds": 300,
        "profit_target_pct": 0.8,
        "stop_loss_pct": 0.4,
        "cooldown_minutes": 120,
    }

    def extra_gate(self, features: dict[str, Any], params: dict[str, Any], direction: str, as_of: datetime) -> str:
        share = float(features.get("opening_share", 0.0))
        if share < float(params["min_opening_share"]):
            return f"only {share:.0%} of the premium opens positions (need {float(params['min_opening_share']):.0%})"
        return ""

    def time_exit(
        self, session: calendar.MarketSession, params: dict[str, Any], contract: dict[str, Any], as_of: datetime
    ) -> datetime:
        day = session.day
        last_day = calendar.previous_trading_day(date.fromisoformat(contract["expiry"]))
        for _ in range(int(params["hold_trading_days"])):
            following = calendar.next_trading_day(day)
            if following > last_day:
                break
            day = following
        exit_session = calendar.session_for(day)
        assert exit_session is not None
        return session_time(exit_session, params["time_exit"])
