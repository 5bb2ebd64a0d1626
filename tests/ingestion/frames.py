"""Builders for Unusual Whales socket frames and input lines, shaped like the documented payloads."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

RECEIVED_MS = 1795185060000  # 2026-11-20 14:31:00 UTC (09:31 New York), a Friday session
_ids = itertools.count(1)


def line(channel: str, payload: Any, received_at: Any = RECEIVED_MS) -> str:
    return orjson.dumps({"received_at": received_at, "frame": [channel, payload]}).decode()


def flow_alert(**overrides: Any) -> dict[str, Any]:
    payload = {
        "id": f"alert-{next(_ids)}",
        "rule_id": "75c54b23-151e-6e2e-661b-069994792242",
        "rule_name": "RepeatedHits",
        "ticker": "SPY",
        "option_chain": "SPY261120C00600000",
        "underlying_price": 599.5,
        "volume": 12000,
        "total_size": 2100,
        "total_premium": 145645.39,
        "total_ask_side_prem": 125137.06,
        "total_bid_side_prem": 20508.33,
        "start_time": RECEIVED_MS - 900,
        "end_time": RECEIVED_MS - 100,
        "executed_at": RECEIVED_MS - 100,
        "url": "",
        "price": 0.67,
        "bid": "0.65",
        "ask": "0.69",
        "has_multileg": False,
        "has_sweep": True,
        "has_floor": False,
        "has_singleleg": True,
        "all_opening_trades": True,
        "open_interest": 40000,
        "volume_oi_ratio": 0.0,
        "trade_ids": ["934368bb-11d9-6c39-6a55-4c70ba038207"],
        "trade_count": 9,
        "expiry_count": 1,
        "ask_vol": 1868,
        "bid_vol": 306,
        "mid_vol": 0,
        "no_side_vol": 0,
        "multi_vol": 0,
        "stock_multi_vol": 0,
        "upstream_condition_details": ["auto"],
        "exchanges": ["XCBO"],
    }
    payload.update(overrides)
    return payload


def option_trade(**overrides: Any) -> dict[str, Any]:
    payload = {
        "id": f"trade-{next(_ids)}",
        "underlying_symbol": "SPY",
        "option_symbol": "SPY261120C00600000",
        "option_type": "call",
        "strike": "600",
        "expiry": "2026-11-20",
        "executed_at": RECEIVED_MS - 500,
        "created_at": RECEIVED_MS - 400,
        "price": "3.91",
        "size": 50,
        "premium": "19550.00",
        "nbbo_bid": "3.89",
        "nbbo_ask": "3.93",
        "ewma_nbbo_bid": "3.89",
        "ewma_nbbo_ask": "3.93",
        "underlying_price": "599.86",
        "volume": 6191,
        "open_interest": 39840,
        "implied_volatility": "0.144949",
        "delta": "0.52901",
        "gamma": "0.0123",
        "theta": "-0.41",
        "vega": "0.08",
        "rho": "0.01",
        "theo": "3.9069",
        "tags": ["ask_side", "bullish"],
        "report_flags": [],
        "trade_code": "auto",
        "exchange": "XPHO",
        "ask_vol": 1,
        "bid_vol": 1,
        "no_side_vol": 0,
        "mid_vol": 0,
        "multi_vol": 0,
        "stock_multi_vol": 0,
    }
    payload.update(overrides)
    return payload


def price(ticker: str = "SPY", **overrides: Any) -> dict[str, Any]:
    payload = {"close": "661.90", "time": RECEIVED_MS - 60_000, "vol": 822582, "ticker": ticker}
    payload.update(overrides)
    return payload


def gex(ticker: str = "SPY", **overrides: Any) -> dict[str, Any]:
    payload = {
        "ticker": ticker,
        "timestamp": RECEIVED_MS - 60_000,
        "price": "662.28",
        "gamma_per_one_percent_move_oi": "909536312.57153",
        "gamma_per_one_percent_move_vol": "1182397206.34299",
        "gamma_per_one_percent_move_dir": "-363814525.02861",
        "delta_per_one_percent_move_oi": "",
        "delta_per_one_percent_move_vol": "0",
        "delta_per_one_percent_move_dir": "0",
        "charm_per_one_percent_move_oi": "1234.5",
        "charm_per_one_percent_move_vol": "2234.5",
        "charm_per_one_percent_move_dir": "-34.5",
        "vanna_per_one_percent_move_oi": "-99.1",
        "vanna_per_one_percent_move_vol": "12.0",
        "vanna_per_one_percent_move_dir": "3.3",
    }
    payload.update(overrides)
    return payload


def gex_strike(ticker: str = "SPY", **overrides: Any) -> dict[str, Any]:
    payload = {
        "ticker": ticker,
        "timestamp": RECEIVED_MS - 60_000,
        "strike": "600",
        "price": "599.9",
        **{
            f"{side}_{greek}_{basis}": f"{n}.25"
            for n, (side, greek, basis) in enumerate(
                (s, g, b)
                for s in ("call", "put")
                for g in ("gamma", "charm", "vanna")
                for b in ("oi", "vol", "ask_vol", "bid_vol")
            )
        },
    }
    payload.update(overrides)
    return payload


def news(**overrides: Any) -> dict[str, Any]:
    payload = {
        "headline": "Fed holds rates steady",
        "timestamp": "2026-11-20T14:30:12Z",
        "source": "Reuters",
        "tickers": ["SPY", "QQQ"],
        "is_trump_ts": False,
    }
    payload.update(overrides)
    return payload


def join_ack(channel: str) -> str:
    return line(channel, {"response": {}, "status": "ok"})


def archived_frames() -> int:
    """Frames in the raw archive: a row each in ``uw_raw_frames``, plus the option tape's compressed blocks."""
    from django.db.models import Sum

    from apps.ingestion.models import RawBatch, RawFrame

    return RawFrame.objects.count() + (RawBatch.objects.aggregate(n=Sum("frames"))["n"] or 0)
