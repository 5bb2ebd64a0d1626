"""Commentary reads: the day's facts a report is written from and the evidence a trade explanation cites, gathered
from the other stages' tables.

Reports: each section says ``available: False`` (with the reason) only when the app that owns it is not installed;
any other problem (a missing table, a broken query) is an error, not a silently thinner report.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.db.models import Count, Q, Sum

from apps.commentary.models import AiExplanation, AiReport, ReportKind
from apps.core import calendar, clock

BIGGEST_FLOW_ALERTS = 5
TRADES_LISTED = 20
GEX_STRIKES = 3


def _model(label: str, name: str) -> type[Any] | None:
    """The model class, or None when its app is not installed (the only reason a section is 'not available')."""
    try:
        return django_apps.get_model(label, name)
    except LookupError:
        return None


def _unavailable(label: str, name: str) -> dict[str, Any]:
    return {"available": False, "reason": f"{label}.{name} is not installed"}


def _money(value: Decimal | None) -> str:
    return str((value or Decimal("0")).quantize(Decimal("0.01")))


def _ny(instant: datetime | None) -> str | None:
    return instant.astimezone(calendar.NEW_YORK).isoformat() if instant else None


def report_window(*, kind: str, day: date) -> tuple[datetime, datetime]:
    """The UTC interval a report covers: the New York calendar day; a pre-market report recaps from the previous
    trading day's midnight to the time of writing (the previous session plus the overnight flow)."""
    start_day = calendar.previous_trading_day(day) if kind == ReportKind.PRE_MARKET else day
    start = datetime.combine(start_day, time(0), tzinfo=calendar.NEW_YORK).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=calendar.NEW_YORK).astimezone(UTC)
    if kind != ReportKind.POST_MARKET:
        end = min(end, max(clock.now(), start))
    return start, end


def _signals_facts(start: datetime, end: datetime) -> dict[str, Any]:
    Signal = _model("signals", "Signal")
    if Signal is None:
        return _unavailable("signals", "Signal")
    rows = Signal.objects.filter(as_of__gte=start, as_of__lt=end)
    by_strategy: dict[str, dict[str, int]] = {}
    for strategy, status, n in rows.values_list("strategy", "status").annotate(n=Count("id")).order_by():
        by_strategy.setdefault(strategy, {"total": 0})
        by_strategy[strategy][status] = n
        by_strategy[strategy]["total"] += n
    return {
        "available": True,
        "total": sum(s["total"] for s in by_strategy.values()),
        "by_strategy": dict(sorted(by_strategy.items())),
    }


def _risk_facts(start: datetime, end: datetime) -> dict[str, Any]:
    RiskDecision = _model("risk", "RiskDecision")
    if RiskDecision is None:
        return _unavailable("risk", "RiskDecision")
    rows = RiskDecision.objects.filter(decided_at__gte=start, decided_at__lt=end)
    counts = rows.aggregate(
        n_approved=Count("id", filter=Q(approved=True)),
        n_rejected=Count("id", filter=Q(approved=False)),
    )
    reasons = Counter(rows.filter(approved=False).values_list("reason", flat=True))
    return {
        "available": True,
        "approved": counts["n_approved"],
        "rejected": counts["n_rejected"],
        "top_rejection_reasons": [{"reason": r, "count": n} for r, n in reasons.most_common(5)],
    }


def _trade_row(trade: Any) -> dict[str, Any]:
    return {
        "id": trade.pk,
        "strategy": trade.strategy,
        "ticker": trade.ticker,
        "option_symbol": trade.option_symbol,
        "quantity": trade.quantity,
        "entry_price": str(trade.entry_price),
        "entry_at": _ny(trade.entry_at),
        "exit_price": None if trade.exit_price is None else str(trade.exit_price),
        "exit_at": _ny(trade.exit_at),
        "exit_reason": trade.exit_reason or None,
        "realized_pnl": None if trade.realized_pnl is None else _money(trade.realized_pnl),
        "status": trade.status,
    }


def _trades_facts(start: datetime, end: datetime) -> dict[str, Any]:
    Trade = _model("execution", "Trade")
    if Trade is None:
        return _unavailable("execution", "Trade")
    # A trade belongs to the window when it opened or closed in it (an overnight swing closes on a later day).
    rows = Trade.objects.filter(Q(entry_at__gte=start, entry_at__lt=end) | Q(exit_at__gte=start, exit_at__lt=end))
    closed = rows.filter(status="closed", exit_at__gte=start, exit_at__lt=end)
    totals = closed.aggregate(
        pnl=Sum("realized_pnl"),
        fees=Sum("fees"),
        wins=Count("id", filter=Q(realized_pnl__gt=0)),
        losses=Count("id", filter=Q(realized_pnl__lte=0)),
    )
    by_strategy = {
        row["strategy"]: {"closed": row["n"], "realized_pnl": _money(row["pnl"])}
        for row in closed.values("strategy").annotate(n=Count("id"), pnl=Sum("realized_pnl")).order_by("strategy")
    }
    best = closed.order_by("-realized_pnl").first()
    worst = closed.order_by("realized_pnl").first()
    return {
        "available": True,
        "opened": rows.filter(entry_at__gte=start, entry_at__lt=end).count(),
        "closed": closed.count(),
        "still_open": rows.filter(status="open").count(),
        "wins": totals["wins"],
        "losses": totals["losses"],
        "realized_pnl": _money(totals["pnl"]),
        "fees": _money(totals["fees"]),
        "by_strategy": by_strategy,
        "best": _trade_row(best) if best else None,
        "worst": _trade_row(worst) if worst and worst.pk != getattr(best, "pk", None) else None,
        "trades": [_trade_row(t) for t in rows.order_by("entry_at")[:TRADES_LISTED]],
    }


def _flow_facts(start: datetime, end: datetime) -> dict[str, Any]:
    FlowAlert = _model("ingestion", "FlowAlert")
    if FlowAlert is None:
        return _unavailable("ingestion", "FlowAlert")
    rows = FlowAlert.objects.filter(executed_at__gte=start, executed_at__lt=end)
    biggest = rows.order_by("-total_premium")[:BIGGEST_FLOW_ALERTS]
    return {
        "available": True,
        "count": rows.count(),
        "biggest": [
            {
                "ticker": a.ticker,
                "option_symbol": a.option_symbol,
                "total_premium": _money(a.total_premium),
                "ask_side_premium": _money(a.total_ask_side_prem),
                "bid_side_premium": _money(a.total_bid_side_prem),
                "sweep": a.has_sweep,
                "rule": a.rule_name,
                "executed_at": _ny(a.executed_at),
            }
            for a in biggest
        ],
    }


def _gex_facts(start: datetime, end: datetime) -> dict[str, Any]:
    GexSnapshot = _model("ingestion", "GexSnapshot")
    if GexSnapshot is None:
        return _unavailable("ingestion", "GexSnapshot")
    GexStrike = _model("ingestion", "GexStrike")
    by_ticker: dict[str, Any] = {}
    for ticker in settings.TRACKED_TICKERS:
        snap = GexSnapshot.objects.filter(ticker=ticker, ts__gte=start, ts__lt=end).order_by("-ts").first()
        if snap is None:
            continue
        levels: dict[str, Any] = {
            "ts": _ny(snap.ts),
            "price": None if snap.price is None else str(snap.price),
            "gamma_oi": None if snap.gamma_oi is None else str(snap.gamma_oi),
            "gamma_vol": None if snap.gamma_vol is None else str(snap.gamma_vol),
            "delta_oi": None if snap.delta_oi is None else str(snap.delta_oi),
        }
        if GexStrike is not None:
            latest = GexStrike.objects.filter(ticker=ticker, ts__gte=start, ts__lt=end).order_by("-ts").first()
            if latest is not None:
                strikes = list(GexStrike.objects.filter(ticker=ticker, ts=latest.ts))
                strikes.sort(key=lambda s: abs((s.call_gamma_oi or 0) + (s.put_gamma_oi or 0)), reverse=True)
                levels["largest_gamma_strikes"] = [
                    {
                        "strike": str(s.strike),
                        "net_gamma_oi": str((s.call_gamma_oi or 0) + (s.put_gamma_oi or 0)),
                    }
                    for s in strikes[:GEX_STRIKES]
                ]
        by_ticker[ticker] = levels
    return {"available": True, "by_ticker": by_ticker}


def report_facts(*, kind: str, day: date) -> dict[str, Any]:
    """Everything a report about ``day`` may say, as JSON-ready values (money as strings, times in New York)."""
    start, end = report_window(kind=kind, day=day)
    return {
        "kind": kind,
        "day": day.isoformat(),
        "window": {"start": _ny(start), "end": _ny(end)},
        "signals": _signals_facts(start, end),
        "risk": _risk_facts(start, end),
        "trades": _trades_facts(start, end),
        "flow": _flow_facts(start, end),
        "gex": _gex_facts(start, end),
    }


def reports_pending() -> list[AiReport]:
    return list(AiReport.objects.filter(status=AiReport.Status.PENDING_APPROVAL).order_by("day", "kind"))


# --- trade explanations -------------------------------------------------------------------------------------------

FLOW_WINDOW = timedelta(minutes=30)  # flow alerts this long before the signal are its evidence
EXPLANATION_FLOW_ALERTS = 5
GEX_LOOKBACK = timedelta(hours=24)  # an older GEX snapshot says nothing about the trade
EXPLANATION_GEX_STRIKES = 3


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _signal_item(signal: Any) -> dict[str, Any]:
    return {
        "id": "S1",
        "kind": "signal",
        "signal_id": signal.signal_id,
        "strategy": signal.strategy,
        "rule": signal.rule,
        "direction": signal.direction,
        "confidence": str(signal.confidence),
        "rationale": signal.rationale,
        "features": signal.features,
        "ticker": signal.ticker,
        "option_symbol": signal.option_symbol,
        "limit_price": str(signal.limit_price),
        "as_of": _ny(signal.as_of),
    }


def _flow_items(signal: Any) -> list[dict[str, Any]]:
    FlowAlert = _model("ingestion", "FlowAlert")
    if FlowAlert is None:
        return []
    cited_by_signal = set((signal.evidence or {}).get("flow_alerts") or [])
    alerts = FlowAlert.objects.filter(
        ticker=signal.ticker, executed_at__gte=signal.as_of - FLOW_WINDOW, executed_at__lte=signal.as_of
    ).order_by("-total_premium", "-executed_at")[:EXPLANATION_FLOW_ALERTS]
    return [
        {
            "id": f"F{n}",
            "kind": "flow_alert",
            "uw_id": a.uw_id,
            "option_symbol": a.option_symbol,
            "rule": a.rule_name,
            "total_premium": _money(a.total_premium),
            "ask_side_premium": _money(a.total_ask_side_prem),
            "bid_side_premium": _money(a.total_bid_side_prem),
            "sweep": a.has_sweep,
            "volume": a.volume,
            "open_interest": a.open_interest,
            "executed_at": _ny(a.executed_at),
            "named_by_signal": a.uw_id in cited_by_signal,
        }
        for n, a in enumerate(alerts, start=1)
    ]


def _gex_items(signal: Any) -> list[dict[str, Any]]:
    GexSnapshot = _model("ingestion", "GexSnapshot")
    if GexSnapshot is None:
        return []
    since = signal.as_of - GEX_LOOKBACK
    items: list[dict[str, Any]] = []
    snap = GexSnapshot.objects.filter(ticker=signal.ticker, ts__gte=since, ts__lte=signal.as_of).order_by("-ts").first()
    if snap is not None:
        items.append(
            {
                "kind": "gex_snapshot",
                "ts": _ny(snap.ts),
                "price": _text(snap.price),
                "gamma_oi": _text(snap.gamma_oi),
                "gamma_vol": _text(snap.gamma_vol),
                "delta_oi": _text(snap.delta_oi),
            }
        )
    GexStrike = _model("ingestion", "GexStrike")
    if GexStrike is not None:
        # The all-expiries rows (expiry null); the per-expiry frames would count a strike once per expiry.
        strikes_of = GexStrike.objects.filter(ticker=signal.ticker, expiry__isnull=True)
        latest = strikes_of.filter(ts__gte=since, ts__lte=signal.as_of).order_by("-ts").first()
        if latest is not None:
            strikes = list(strikes_of.filter(ts=latest.ts))
            strikes.sort(key=lambda s: abs((s.call_gamma_oi or 0) + (s.put_gamma_oi or 0)), reverse=True)
            items += [
                {
                    "kind": "gex_strike",
                    "ts": _ny(s.ts),
                    "strike": str(s.strike),
                    "net_gamma_oi": str((s.call_gamma_oi or 0) + (s.put_gamma_oi or 0)),
                    "call_gamma_oi": _text(s.call_gamma_oi),
                    "put_gamma_oi": _text(s.put_gamma_oi),
                }
                for s in strikes[:EXPLANATION_GEX_STRIKES]
            ]
    return [{"id": f"G{n}", **item} for n, item in enumerate(items, start=1)]


def _risk_item(signal: Any) -> dict[str, Any] | None:
    RiskDecision = _model("risk", "RiskDecision")
    if RiskDecision is None:
        return None
    decision = RiskDecision.objects.select_related("limits").filter(signal=signal).first()
    if decision is None:
        return None
    return {
        "id": "R1",
        "kind": "risk_decision",
        "approved": decision.approved,
        "quantity": decision.quantity,
        "limit_price": str(decision.limit_price),
        "reason": decision.reason,
        "checks": decision.checks,
        "account": decision.account,
        "limits_version": decision.limits.version,
        "decided_at": _ny(decision.decided_at),
    }


def explanation_evidence(*, trade_id: int) -> dict[str, Any] | None:
    """What an explanation of the trade may cite, each item with its citation id, as JSON-ready values; None when
    the trade does not exist.  S1 the signal; F1..F5 the biggest flow alerts on the ticker in the 30 minutes up to
    the signal; G1 the latest GEX snapshot and G2.. the largest-gamma strikes (within 24 hours before the signal);
    R1 the risk decision with its checks and sizing.  Missing sections are simply absent (the prompt says which)."""
    Trade = _model("execution", "Trade")
    if Trade is None:
        raise LookupError("execution.Trade is not installed: there are no trades to explain")
    trade = Trade.objects.select_related("signal").filter(pk=trade_id).first()
    if trade is None:
        return None
    signal = trade.signal
    items = [_signal_item(signal), *_flow_items(signal), *_gex_items(signal)]
    risk = _risk_item(signal)
    if risk is not None:
        items.append(risk)
    return {
        "trade": {
            "id": trade.pk,
            "strategy": trade.strategy,
            "ticker": trade.ticker,
            "option_symbol": trade.option_symbol,
            "quantity": trade.quantity,
            "entry_price": str(trade.entry_price),
            "entry_at": _ny(trade.entry_at),
        },
        "window": {"flow_from": _ny(signal.as_of - FLOW_WINDOW), "signal_at": _ny(signal.as_of)},
        "items": items,
    }


def explanations_pending() -> list[AiExplanation]:
    return list(AiExplanation.objects.filter(status=AiExplanation.Status.PENDING_APPROVAL).order_by("created_at"))
