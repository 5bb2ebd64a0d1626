"""One entered trade with everything an explanation cites, and decoys the evidence must leave out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.distribution.rows import flow_alert_row, gex_snapshot_row, risk_decision_row, signal_row, trade_row

SIGNAL_AT = datetime(2026, 11, 20, 14, 35, tzinfo=UTC)  # Friday 09:35 New York
ENTRY_AT = SIGNAL_AT + timedelta(seconds=20)
CHECKS = [
    {"check": "kill_switch", "passed": True, "detail": "off"},
    {"check": "max_open_positions", "passed": True, "detail": "1 of 6"},
    {"check": "premium_share", "passed": True, "detail": "0.8% of net liq"},
]
EVIDENCE_IDS = ["S1", "F1", "F2", "F3", "G1", "G2", "G3", "G4", "R1"]


@dataclass
class EnteredTrade:
    trade: Any
    signal: Any


def _strike(*, at: datetime, strike: str, call: str, put: str, expiry: Any = None, ticker: str = "SPY") -> None:
    from apps.ingestion.models import GexStrike

    GexStrike.objects.create(
        ticker=ticker,
        ts=at,
        strike=Decimal(strike),
        expiry=expiry,
        call_gamma_oi=Decimal(call),
        put_gamma_oi=Decimal(put),
        natural_key=f"{ticker}|{at.isoformat()}|{strike}|{expiry or ''}",
    )


def entered_trade() -> EnteredTrade:
    """A zero_dte SPY call entered at 09:35:20 New York.  Evidence: three SPY flow alerts in the 30 minutes before
    the signal (F1 $1.8M, F2 $640k, F3 $250k), the 09:32 GEX snapshot (G1) and its three largest-gamma strikes
    (G2 600, G3 595, G4 605), the approved risk decision (R1).  Decoys: a bigger alert an hour earlier, a QQQ alert,
    an alert after the signal, a later GEX snapshot, a per-expiry strike row and a smaller strike."""
    signal = signal_row(
        at=SIGNAL_AT,
        features={"sweep_count": 3, "ask_side_share": "0.91"},
        evidence={"flow_alerts": ["flow-cited"]},
    )
    decision = risk_decision_row(signal=signal, approved=True, at=SIGNAL_AT + timedelta(seconds=2))
    decision.checks = CHECKS
    decision.account = {"net_liq": "100000.00", "buying_power": "80000.00"}
    decision.save(update_fields=["checks", "account"])
    trade = trade_row(signal=signal, at=ENTRY_AT)
    for minutes, premium in ((10, "250000"), (4, "1800000"), (25, "640000")):
        alert = flow_alert_row(at=SIGNAL_AT - timedelta(minutes=minutes), premium=premium)
        if premium == "1800000":  # the alert the signal itself names
            alert.uw_id = "flow-cited"
            alert.save(update_fields=["uw_id"])
    flow_alert_row(at=SIGNAL_AT - timedelta(hours=1), premium="9000000")  # before the window
    flow_alert_row(at=SIGNAL_AT - timedelta(minutes=5), premium="7000000", ticker="QQQ")  # another ticker
    flow_alert_row(at=SIGNAL_AT + timedelta(minutes=1), premium="8000000")  # after the signal
    snapshot_at = SIGNAL_AT - timedelta(minutes=3)
    gex_snapshot_row(at=snapshot_at, gamma_oi="-5000000")
    gex_snapshot_row(at=SIGNAL_AT + timedelta(minutes=1), gamma_oi="42")  # after the signal
    _strike(at=snapshot_at, strike="600", call="9000000", put="-1000000")  # net 8M
    _strike(at=snapshot_at, strike="595", call="1000000", put="-7000000")  # net -6M
    _strike(at=snapshot_at, strike="605", call="3000000", put="0")  # net 3M
    _strike(at=snapshot_at, strike="610", call="100", put="0")  # too small
    _strike(at=snapshot_at, strike="590", call="99000000", put="0", expiry=SIGNAL_AT.date())  # one expiry only
    return EnteredTrade(trade=trade, signal=signal)
