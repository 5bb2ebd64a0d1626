"""Real rows for the tables distribution and commentary read (signals, risk decisions, trades, flow, GEX)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

_serial = itertools.count(1)


def signal_row(*, at: datetime, strategy: str = "zero_dte", status: str = "active", **extra: Any):
    from apps.signals.models import Signal

    n = next(_serial)
    values: dict[str, Any] = dict(
        signal_id=f"sig{n:029d}",
        strategy=strategy,
        bucket={"zero_dte": "0dte", "one_dte": "1dte", "swing_14d": "14d", "moc": "moc"}[strategy],
        ticker="SPY",
        direction="bullish",
        option_symbol="SPY261120C00600000",
        expiry=at.date(),
        right="C",
        strike=Decimal("600"),
        limit_price=Decimal("1.25"),
        profit_target_pct=Decimal("0.5"),
        stop_loss_pct=Decimal("0.3"),
        time_exit_at=at + timedelta(hours=5),
        rule="sweep_cluster_above_ask",
        rationale="Three call sweeps above the ask within a minute while dealer gamma turned positive.",
        confidence=Decimal("0.7250"),
        status=status,
        as_of=at,
        created_at=at,
    )
    values.update(extra)
    return Signal.objects.create(**values)


def risk_decision_row(*, signal, approved: bool, at: datetime, reason: str = "within limits"):
    from apps.risk.models import RiskDecision, RiskLimits

    limits = RiskLimits.objects.filter(active=True).first() or RiskLimits.objects.create(version=1, created_at=at)
    return RiskDecision.objects.create(
        signal=signal,
        limits=limits,
        approved=approved,
        quantity=2 if approved else 0,
        limit_price=Decimal("1.30"),
        reason=reason,
        decided_at=at,
    )


def trade_row(*, signal, at: datetime, **extra: Any):
    from apps.execution.models import Trade

    values: dict[str, Any] = dict(
        signal=signal,
        strategy=signal.strategy,
        ticker=signal.ticker,
        option_symbol=signal.option_symbol,
        quantity=2,
        entry_price=Decimal("1.25"),
        entry_at=at,
        status="open",
        fees=Decimal("1.30"),
    )
    values.update(extra)
    return Trade.objects.create(**values)


def flow_alert_row(*, at: datetime, premium: str, ticker: str = "SPY", sweep: bool = True):
    from apps.ingestion.models import FlowAlert

    n = next(_serial)
    return FlowAlert.objects.create(
        uw_id=f"flow-{n}",
        rule_name="RepeatedHits",
        ticker=ticker,
        option_symbol=f"{ticker}261120C00600000",
        expiry=at.date(),
        right="C",
        strike=Decimal("600"),
        total_premium=Decimal(premium),
        has_sweep=sweep,
        executed_at=at,
    )


def gex_snapshot_row(*, at: datetime, ticker: str = "SPY", gamma_oi: str = "123456789.5"):
    from apps.ingestion.models import GexSnapshot

    return GexSnapshot.objects.create(ticker=ticker, ts=at, price=Decimal("600.12"), gamma_oi=Decimal(gamma_oi))
