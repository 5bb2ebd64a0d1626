"""Ingestion reads: the latest values ingestion keeps in Redis, typed, and the quarantine at a glance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import cast

import orjson
from django.db.models import Count

from apps.core.money import InvalidAmount, to_decimal_or_none
from apps.core.store import get_redis
from apps.ingestion import redis_keys
from apps.ingestion.models import QuarantinedFrame


@dataclass(frozen=True)
class LatestQuote:
    """``latest:uw:quote:{OCC}``: the NBBO and greeks around the newest print of one contract."""

    option_symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    underlying_price: Decimal | None
    iv: Decimal | None
    delta: Decimal | None
    ts: datetime


def _decimal(text: str | None) -> Decimal | None:
    try:
        return to_decimal_or_none(text)
    except InvalidAmount:
        return None


def latest_quote(*, option_symbol: str) -> LatestQuote | None:
    """The contract's latest quote, or ``None`` when no trade of it has been ingested (or the hash is unreadable)."""
    data = cast(dict[str, str], get_redis().hgetall(redis_keys.latest_quote_key(option_symbol)))  # decode_responses
    if not data.get("ts"):
        return None
    try:
        ts = datetime.fromisoformat(data["ts"])
    except ValueError:
        return None
    return LatestQuote(
        option_symbol=option_symbol,
        bid=_decimal(data.get("bid")),
        ask=_decimal(data.get("ask")),
        last=_decimal(data.get("last")),
        underlying_price=_decimal(data.get("underlying_price")),
        iv=_decimal(data.get("iv")),
        delta=_decimal(data.get("delta")),
        ts=ts,
    )


def latest_price(*, ticker: str) -> tuple[Decimal, datetime] | None:
    """The underlying's latest close and its market time, from ``latest:uw:price:{T}``."""
    data = cast(dict[str, str], get_redis().hgetall(redis_keys.latest_price_key(ticker)))  # decode_responses
    close = _decimal(data.get("close"))
    if close is None or not data.get("ts"):
        return None
    return close, datetime.fromisoformat(data["ts"])


def recent_flow_alerts(*, limit: int = 50) -> list[dict[str, object]]:
    """The newest flow alerts, newest first, as ingestion published them (decimals as strings)."""
    return [orjson.loads(item) for item in get_redis().lrange(redis_keys.FLOW_ALERTS, 0, max(limit, 1) - 1)]


def quarantine_by_channel(*, since: datetime) -> dict[str, int]:
    """How many lines each channel sent to quarantine since ``since`` (``""`` when no channel was readable)."""
    rows = (
        QuarantinedFrame.objects.filter(stored_at__gte=since)
        .values("channel")
        .annotate(lines=Count("id"))
        .order_by("channel")
    )
    return {row["channel"]: row["lines"] for row in rows}
