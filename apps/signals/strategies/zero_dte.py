"""0DTE: contracts expiring today, on intraday flow momentum.

Rules (defaults; the live values are the newest ``StrategyConfig`` version):
- entries from 09:45 (after the first quarter hour's noise) until the cut-off, 15:00 New York; never after it;
- at least 2 flow alerts and $100k of premium in the last 30 minutes, a flow score of +/-0.35 or more whose sign the
  premium imbalance shares;
- quiet when long dealer gamma pins the price just under the call wall (bullish) or over the put wall (bearish);
- buy the contract nearest delta 0.40 (0.25-0.55), spread <= 15 %, open interest >= 100, quote <= 3 minutes old;
- target +50 %, stop -30 %, forced exit 15:45 New York: a long in-the-money 0DTE option held into the close is
  exercised into shares (pin and assignment risk), so it is always sold before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.core import calendar
from apps.signals.models import Bucket, Strategy
from apps.signals.strategies.base import FlowStrategy, session_time


class ZeroDte(FlowStrategy):
    name = Strategy.ZERO_DTE.value
    bucket = Bucket.ZERO_DTE.value
    title = "0DTE"
    defaults: dict[str, Any] = {
        "entry_start": "09:45",
        "entry_cutoff": "15:00",
        "time_exit": "15:45",
        "cooldown_minutes": 30,
        "wall_pin_pct": 0.10,
    }

    def time_exit(
        self, session: calendar.MarketSession, params: dict[str, Any], contract: dict[str, Any], as_of: datetime
    ) -> datetime:
        return session_time(session, params["time_exit"])

    def extra_gate(self, features: dict[str, Any], params: dict[str, Any], direction: str, as_of: datetime) -> str:
        if features.get("gex_regime") != "long_gamma":
            return ""
        pin = float(params["wall_pin_pct"])
        if direction == "bullish" and 0 <= features.get("dist_call_wall_pct", 99.0) < pin:
            return "long dealer gamma pins the price just under the call wall"
        if direction == "bearish" and -pin < features.get("dist_put_wall_pct", -99.0) <= 0:
            return "long dealer gamma pins the price just over the put wall"
        return ""

    def exit_note(self) -> str:
        return "Exited before the close in any case: an in-the-money 0DTE long left to expire is exercised."
