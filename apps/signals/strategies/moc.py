"""MOC: the closing window.  Options have no closing auction, so this is an options order placed in the window
before the closing-auction cut-offs, with a hard entry deadline, exited before the options close.

Rules (defaults):
- acts only from 15:30 to the entry deadline, 15:50 New York (NYSE's MOC cut-off; stricter than Arca's 15:59 and
  Nasdaq's 15:55); never before the window, never after the deadline (``Signal.entry_deadline`` is at most 15:50);
- flow over the last 20 minutes: >= 1 alert, >= $50k premium; the score leans on the last 15 minutes' price
  momentum and the distance from VWAP as well as the flow; score >= +/-0.30 with the premium imbalance agreeing;
- contracts expiring today or the next trading day, nearest delta 0.40, spread <= 15 %, OI >= 100, fresh quote;
- target +30 %, stop -25 %, time exit 16:10 New York, before the 16:15 options close: a long in-the-money option
  expiring today is never carried into the close (exercise, pin risk); cooldown 10 minutes per ticker.
On an early-close day every time moves earlier by as much as the close does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.core import calendar
from apps.signals.models import Bucket, Strategy
from apps.signals.strategies.base import FlowStrategy, session_time


class MarketOnClose(FlowStrategy):
    name = Strategy.MOC.value
    bucket = Bucket.MOC.value
    title = "MOC closing window"
    defaults: dict[str, Any] = {
        "entry_start": "15:30",
        "entry_cutoff": "15:50",
        "time_exit": "16:10",
        "min_alerts": 1,
        "min_flow_premium": 50000,
        "min_score": 0.30,
        "profit_target_pct": 0.3,
        "stop_loss_pct": 0.25,
        "cooldown_minutes": 10,
        "signal_ttl_minutes": 3,
        "weights": {
            "premium_imbalance": 0.25,
            "volume_imbalance": 0.10,
            "sweep_pressure": 0.15,
            "cluster_direction": 0.05,
            "block_direction": 0.05,
            "net_premium_trend": 0.05,
            "vwap_alignment": 0.15,
            "momentum_15m": 0.20,
        },
    }

    def time_exit(
        self, session: calendar.MarketSession, params: dict[str, Any], contract: dict[str, Any], as_of: datetime
    ) -> datetime:
        return min(session_time(session, params["time_exit"]), session.options_close)

    def exit_note(self) -> str:
        return "Sold before the options close: an in-the-money option expiring today is never held into exercise."
