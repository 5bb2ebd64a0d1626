"""Feature arithmetic for the analytics snapshots: pure functions of rows already read (no I/O), so they are cheap
to test on constructed data.

Reading flow (see the trading-domain reference): ask-side premium on calls and bid-side premium on puts lean
bullish, the reverse bearish; sweeps signal urgency, floor trades and blocks size, repeated hits on one contract
conviction.  A *signed* amount is positive when it leans bullish.  Ratios are floats in [-1, 1]; prices stay
``Decimal`` until they are written as decimal strings in the JSON features.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from apps.core.money import ZERO, to_decimal

BLOCK_MIN_SIZE = 500
BLOCK_MIN_PREMIUM = Decimal("250000")
CLUSTER_MIN_HITS = 3
# 1-minute bars: 390 per regular session, 252 sessions a year.
MINUTE_BARS_PER_YEAR = 252 * 390


def dec_str(value: Decimal) -> str:
    """A decimal as plain text without trailing zeros (``"605"``, not ``"605.000000"`` or ``"6.05E+2"``)."""
    return format(value.normalize(), "f")


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` rounded to 4 places, 0 when there is nothing to divide by."""
    if not denominator:
        return 0.0
    return round(numerator / denominator, 4)


def alert_lean(alert: dict[str, Any]) -> Decimal:
    """Signed premium of one flow alert: (ask-side - bid-side) premium, negated for puts."""
    ask = to_decimal(alert["total_ask_side_prem"] or ZERO)
    bid = to_decimal(alert["total_bid_side_prem"] or ZERO)
    signed = ask - bid
    return signed if alert["right"] == "C" else -signed


def trade_side(trade: dict[str, Any]) -> str:
    """``ask``, ``bid`` or ``mid`` for an option trade: the feed's volume split, else its tags, else the NBBO."""
    side = (trade.get("side") or "").lower()
    if side in ("ask", "bid", "mid"):
        return side
    tags = trade.get("tags") or []
    if "ask_side" in tags:
        return "ask"
    if "bid_side" in tags:
        return "bid"
    bid, ask, price = trade.get("nbbo_bid"), trade.get("nbbo_ask"), trade.get("price")
    if bid is not None and ask is not None and price is not None and ask > bid:
        if price >= ask:
            return "ask"
        if price <= bid:
            return "bid"
    return "mid"


def trade_lean(trade: dict[str, Any]) -> int:
    """+1 when a trade leans bullish (bought calls, sold puts), -1 bearish, 0 at mid."""
    side = trade_side(trade)
    if side == "mid":
        return 0
    sign = 1 if side == "ask" else -1
    return sign if trade["right"] == "C" else -sign


def flow_features(*, alerts: Sequence[dict[str, Any]], as_of: datetime, window: timedelta) -> dict[str, Any]:
    """Premium imbalance, sweep and block intensity, repeated-hit clusters and the net premium trend of the alerts."""
    minutes = window.total_seconds() / 60.0
    bull = bear = ZERO
    call_ask = call_bid = put_ask = put_bid = ZERO
    sweep_bull = sweep_bear = block_bull = block_bear = ZERO
    sweeps = blocks = 0
    opening = total = ZERO
    recent_start = as_of - window / 3
    recent_net = earlier_net = ZERO
    hits: dict[tuple[str, int], int] = defaultdict(int)
    for alert in alerts:
        ask = to_decimal(alert["total_ask_side_prem"] or ZERO)
        bid = to_decimal(alert["total_bid_side_prem"] or ZERO)
        premium = to_decimal(alert["total_premium"] or ZERO)
        lean = alert_lean(alert)
        total += premium
        if alert["right"] == "C":
            call_ask += ask
            call_bid += bid
            bull += ask
            bear += bid
        else:
            put_ask += ask
            put_bid += bid
            bull += bid
            bear += ask
        if alert["has_sweep"]:
            sweeps += 1
            if lean >= 0:
                sweep_bull += premium
            else:
                sweep_bear += premium
        if alert["has_floor"] or alert["total_size"] >= BLOCK_MIN_SIZE or premium >= BLOCK_MIN_PREMIUM:
            blocks += 1
            if lean >= 0:
                block_bull += premium
            else:
                block_bear += premium
        if alert["all_opening_trades"] or (alert["open_interest"] and alert["volume"] > alert["open_interest"]):
            opening += premium
        if alert["executed_at"] >= recent_start:
            recent_net += lean
        else:
            earlier_net += lean
        if lean:
            hits[(alert["option_symbol"], 1 if lean > 0 else -1)] += 1
    clusters = {key: count for key, count in hits.items() if count >= CLUSTER_MIN_HITS}
    cluster_bull = sum(count for (_, sign), count in clusters.items() if sign > 0)
    cluster_bear = sum(count for (_, sign), count in clusters.items() if sign < 0)
    top_cluster: dict[str, Any] = {}
    if clusters:
        (symbol, sign), count = max(clusters.items(), key=lambda item: (item[1], item[0][0]))
        top_cluster = {"option_symbol": symbol, "hits": count, "direction": "bullish" if sign > 0 else "bearish"}
    # Per-minute net premium in the newest third of the window against the older two thirds: > 0 when the
    # bullish lean is accelerating.
    recent_rate = float(recent_net) / (minutes / 3)
    earlier_rate = float(earlier_net) / (minutes * 2 / 3)
    scale = max(abs(recent_rate), abs(earlier_rate))
    return {
        "alert_count": len(alerts),
        "flow_premium": dec_str(total),
        "call_ask_premium": dec_str(call_ask),
        "call_bid_premium": dec_str(call_bid),
        "put_ask_premium": dec_str(put_ask),
        "put_bid_premium": dec_str(put_bid),
        "bullish_premium": dec_str(bull),
        "bearish_premium": dec_str(bear),
        "net_premium": dec_str(bull - bear),
        "premium_imbalance": ratio(float(bull - bear), float(bull + bear)),
        "sweep_count": sweeps,
        "sweep_intensity": round(sweeps / minutes * 10, 4),  # sweeps per 10 minutes
        "sweep_direction": ratio(float(sweep_bull - sweep_bear), float(sweep_bull + sweep_bear)),
        "block_count": blocks,
        "block_intensity": round(blocks / minutes * 10, 4),
        "block_direction": ratio(float(block_bull - block_bear), float(block_bull + block_bear)),
        "cluster_count": len(clusters),
        "cluster_direction": ratio(float(cluster_bull - cluster_bear), float(cluster_bull + cluster_bear)),
        "top_cluster": top_cluster,
        "opening_share": ratio(float(opening), float(total)),
        "net_premium_recent": dec_str(recent_net),
        "net_premium_trend": ratio(recent_rate - earlier_rate, scale),
    }


def tape_features(*, trades: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Volume and premium imbalance of the individual option prints (ask vs bid side)."""
    bull_volume = bear_volume = 0
    bull_premium = bear_premium = ZERO
    for trade in trades:
        lean = trade_lean(trade)
        if lean > 0:
            bull_volume += trade["size"]
            bull_premium += trade["premium"]
        elif lean < 0:
            bear_volume += trade["size"]
            bear_premium += trade["premium"]
    return {
        "trade_count": len(trades),
        "tape_bullish_volume": bull_volume,
        "tape_bearish_volume": bear_volume,
        "volume_imbalance": ratio(bull_volume - bear_volume, bull_volume + bear_volume),
        "tape_premium_imbalance": ratio(float(bull_premium - bear_premium), float(bull_premium + bear_premium)),
    }


def minute_closes(ticks: Sequence[dict[str, Any]]) -> list[tuple[datetime, Decimal]]:
    """The last close of each minute (the feed may tick several times a minute), oldest first."""
    by_minute: dict[datetime, Decimal] = {}
    for tick in ticks:
        by_minute[tick["ts"].replace(second=0, microsecond=0)] = to_decimal(tick["close"])
    return sorted(by_minute.items())


def price_features(
    *,
    ticks: Sequence[dict[str, Any]],
    as_of: datetime,
    vwap: Decimal | None,
    opening_range: tuple[Decimal, Decimal] | None,
    tick_count: int,
) -> dict[str, Any]:
    """VWAP distance, realized volatility (annualized, from 1-minute log returns of the recent ``ticks``), the
    position against the opening range and the 15-minute return."""
    minutes = minute_closes(ticks)
    if not minutes:
        return {"tick_count": tick_count}
    spot = minutes[-1][1]
    vwap = vwap or spot
    closes = [float(close) for _, close in minutes]
    returns = [math.log(b / a) for a, b in zip(closes, closes[1:], strict=False) if a > 0 and b > 0]
    realized = statistics.pstdev(returns) * math.sqrt(MINUTE_BARS_PER_YEAR) if len(returns) >= 2 else 0.0
    features: dict[str, Any] = {
        "tick_count": tick_count,
        "spot": dec_str(spot),
        "vwap": dec_str(vwap.quantize(Decimal("0.0001"))),
        "spot_vs_vwap_pct": round(float((spot - vwap) / vwap * 100), 4) if vwap else 0.0,
        "realized_vol": round(realized, 4),
    }
    if opening_range is not None:
        high, low = opening_range
        features["opening_range_high"], features["opening_range_low"] = dec_str(high), dec_str(low)
        features["opening_range"] = "above" if spot > high else "below" if spot < low else "inside"
    earlier = [close for minute, close in minutes if minute <= as_of - timedelta(minutes=15)]
    if earlier and earlier[-1]:
        features["return_15m_pct"] = round(float((spot - earlier[-1]) / earlier[-1] * 100), 4)
    return features


def gamma_profile(*, strikes: Sequence[tuple[Decimal, float, float]], spot: Decimal | None) -> dict[str, Any]:
    """Net gamma by strike -> the flip level and the call/put walls.

    ``strikes`` are ``(strike, call_gamma, put_gamma)`` in dollars per 1 % move, put gamma already negative (dealers
    are assumed short the puts customers buy).  The flip is where the cumulative net gamma, summed up from the lowest
    strike, changes sign (interpolated between the two strikes); the walls are the strikes with the largest call and
    (absolute) put gamma.
    """
    if not strikes:
        return {}
    ordered = sorted(strikes)
    call_wall = max(ordered, key=lambda s: (s[1], -s[0]))[0]
    put_wall = max(ordered, key=lambda s: (abs(s[2]), s[0]))[0]
    profile: dict[str, Any] = {"call_wall": dec_str(call_wall), "put_wall": dec_str(put_wall)}
    cumulative = 0.0
    previous: tuple[Decimal, float] | None = None
    for strike, call_gamma, put_gamma in ordered:
        before = cumulative
        cumulative += call_gamma + put_gamma
        if previous is not None and before < 0 <= cumulative or previous is not None and before > 0 >= cumulative:
            lower = previous[0]
            share = Decimal(repr(abs(before) / (abs(before) + abs(cumulative)))) if before != cumulative else ZERO
            profile["gamma_flip"] = str((lower + (strike - lower) * share).quantize(Decimal("0.01")))
        previous = (strike, cumulative)
    if spot:
        for name in ("call_wall", "put_wall", "gamma_flip"):
            if name in profile:
                level = Decimal(profile[name])
                profile[f"dist_{name}_pct"] = round(float((level - spot) / spot * 100), 4)
    return profile


def strikes_from_trades(
    *, trades: Sequence[dict[str, Any]], spot: Decimal | None
) -> list[tuple[Decimal, float, float]]:
    """An approximate per-strike gamma profile from the prints when the feed sent no ``gex_strike`` frame:
    open interest x gamma x 100 shares x spot^2 x 1 %, from the newest print of each contract."""
    if not spot:
        return []
    newest: dict[str, dict[str, Any]] = {}
    for trade in trades:
        if trade.get("gamma") is not None and trade.get("open_interest"):
            newest[trade["option_symbol"]] = trade
    by_strike: dict[Decimal, list[float]] = defaultdict(lambda: [0.0, 0.0])
    s2 = float(spot) ** 2 * 0.01 * 100
    for trade in newest.values():
        exposure = float(trade["gamma"]) * trade["open_interest"] * s2
        if trade["right"] == "C":
            by_strike[trade["strike"]][0] += exposure
        else:
            by_strike[trade["strike"]][1] -= exposure
    return [(strike, calls, puts) for strike, (calls, puts) in by_strike.items()]


def data_confidence(*, alert_count: int, trade_count: int, tick_count: int, has_gex: bool) -> Decimal:
    """How much data backs a snapshot, 0..1: prints, alerts, price history and a fresh GEX reading."""
    score = (
        0.35 * min(1.0, trade_count / 30)
        + 0.35 * min(1.0, alert_count / 3)
        + 0.15 * min(1.0, tick_count / 15)
        + 0.15 * (1.0 if has_gex else 0.0)
    )
    return Decimal(repr(round(score, 4)))
