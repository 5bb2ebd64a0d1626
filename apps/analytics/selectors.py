"""Reads for the analytics workers: time-windowed queries on indexed columns, and the latest:* Redis keys.

Every query is bounded by a window ending at ``as_of`` on an index (``ticker, executed_at`` / ``ticker, ts``), so a
snapshot costs the same at 09:31 as at 15:59 and reads nothing newer than the instant it describes (a replay sees
what a live process would have seen).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import orjson
from django.db.models import DecimalField, F, Max, Min, Sum

from apps.core.money import to_decimal
from apps.core.store import get_redis
from apps.ingestion.models import FlowAlert, GexSnapshot, GexStrike, OptionTrade, PriceTick

ALERT_FIELDS = (
    "uw_id",
    "option_symbol",
    "expiry",
    "right",
    "strike",
    "total_premium",
    "total_ask_side_prem",
    "total_bid_side_prem",
    "has_sweep",
    "has_floor",
    "all_opening_trades",
    "volume",
    "open_interest",
    "total_size",
    "executed_at",
)
TRADE_FIELDS = (
    "uw_id",
    "option_symbol",
    "expiry",
    "right",
    "strike",
    "price",
    "size",
    "premium",
    "nbbo_bid",
    "nbbo_ask",
    "underlying_price",
    "open_interest",
    "implied_volatility",
    "delta",
    "gamma",
    "side",
    "executed_at",
)
GEX_STRIKE_LOOKBACK = timedelta(minutes=30)


def flow_alerts_between(*, ticker: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Flow alerts of ``ticker`` executed in ``[start, end]``, oldest first."""
    rows = FlowAlert.objects.filter(ticker=ticker, executed_at__gte=start, executed_at__lte=end).order_by(
        "executed_at", "uw_id"
    )
    return list(rows.values(*ALERT_FIELDS))


def latest_flow_alert_id(*, ticker: str, end: datetime, lookback: timedelta) -> str:
    """The uw_id of the newest flow alert of ``ticker`` at or before ``end`` (empty when none in ``lookback``)."""
    row = (
        FlowAlert.objects.filter(ticker=ticker, executed_at__gte=end - lookback, executed_at__lte=end)
        .order_by("-executed_at", "-uw_id")
        .values_list("uw_id", flat=True)
        .first()
    )
    return row or ""


def option_trades_between(*, ticker: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Option trades of ``ticker`` executed in ``[start, end]``, oldest first."""
    rows = OptionTrade.objects.filter(ticker=ticker, executed_at__gte=start, executed_at__lte=end).order_by(
        "executed_at", "uw_id"
    )
    return list(rows.values(*TRADE_FIELDS))


def price_ticks_between(*, ticker: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Price ticks (``ts``, ``close``, ``volume``) of ``ticker`` in ``[start, end]``, oldest first."""
    rows = PriceTick.objects.filter(ticker=ticker, ts__gte=start, ts__lte=end).order_by("ts")
    # values() rows are plain dicts; the stubs type them as a TypedDict, which is not a dict[str, Any]
    return cast(list[dict[str, Any]], list(rows.values("ts", "close", "volume")))


def session_vwap(*, ticker: str, start: datetime, end: datetime) -> Decimal | None:
    """Volume-weighted average of the tick closes in ``[start, end]``, summed in the database (one row back)."""
    totals = PriceTick.objects.filter(ticker=ticker, ts__gte=start, ts__lte=end).aggregate(
        value=Sum(F("close") * F("volume"), output_field=DecimalField(max_digits=40, decimal_places=6)),
        volume=Sum("volume"),
    )
    if not totals["volume"] or totals["value"] is None:
        return None
    return to_decimal(totals["value"]) / totals["volume"]


def price_range(*, ticker: str, start: datetime, end: datetime) -> tuple[Decimal, Decimal] | None:
    """(high, low) of the tick closes in ``[start, end)``; ``None`` without ticks."""
    extremes = PriceTick.objects.filter(ticker=ticker, ts__gte=start, ts__lt=end).aggregate(
        high=Max("close"), low=Min("close")
    )
    if extremes["high"] is None:
        return None
    return to_decimal(extremes["high"]), to_decimal(extremes["low"])


def latest_gex(*, ticker: str, end: datetime, lookback: timedelta) -> GexSnapshot | None:
    """The newest ticker-level GEX row at or before ``end`` (``None`` when it is older than ``lookback``)."""
    return GexSnapshot.objects.filter(ticker=ticker, ts__gte=end - lookback, ts__lte=end).order_by("-ts").first()


def latest_gex_strikes(*, ticker: str, end: datetime) -> list[dict[str, Any]]:
    """The per-strike GEX rows (all expiries combined) of the newest ``gex_strike`` frame set at or before ``end``."""
    recent = GexStrike.objects.filter(
        ticker=ticker, ts__gte=end - GEX_STRIKE_LOOKBACK, ts__lte=end, expiry__isnull=True
    )
    newest = recent.order_by("-ts").values_list("ts", flat=True).first()
    if newest is None:
        return []
    rows = recent.filter(ts=newest).order_by("strike")
    return cast(list[dict[str, Any]], list(rows.values("id", "strike", "call_gamma_oi", "put_gamma_oi")))  # as above


def latest_price(*, ticker: str) -> dict[str, str]:
    """``latest:uw:price:{T}`` as written by ingestion (``close``, ``ts``, ``volume``); empty when absent."""
    return cast(dict[str, str], get_redis().hgetall(f"latest:uw:price:{ticker}"))  # decode_responses


def latest_quotes(*, symbols: Iterable[str]) -> dict[str, dict[str, str]]:
    """``latest:uw:quote:{OCC}`` for each symbol, in one round trip."""
    ordered = list(symbols)
    if not ordered:
        return {}
    pipe = get_redis().pipeline(transaction=False)
    for symbol in ordered:
        pipe.hgetall(f"latest:uw:quote:{symbol}")
    return {symbol: quote for symbol, quote in zip(ordered, pipe.execute(), strict=True) if quote}


def snapshot_from_redis(*, ticker: str, bucket: str) -> dict[str, Any]:
    """The latest snapshot of ``analytics:{ticker}:{bucket}`` with its features decoded; empty when absent."""
    data = cast(dict[str, Any], get_redis().hgetall(f"analytics:{ticker}:{bucket}"))  # str values, decode_responses
    if data.get("features"):
        data["features"] = orjson.loads(data["features"])
    return data
