"""Unusual Whales REST items -> unsaved model rows, with the socket normalizers' readers and rules.

Decimal strings and JSON numbers both become ``Decimal`` quantized to the column; ISO times of any precision and
epoch milliseconds or seconds become aware UTC datetimes; OCC symbols are parsed with ``apps.core.occ``.  Flow alerts
and news go through the socket normalizer itself (their REST names mapped onto the socket's), so a REST copy of an
alert or a headline becomes exactly the row the socket frame would have.  An item that cannot be read is returned as
a rejection with its reason; the rest of the page is unaffected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import models

from apps.ingestion.models import (
    BIG,
    GREEK,
    MONEY,
    PRICE,
    Candle,
    FlowAlert,
    GexSnapshot,
    GreekExposure,
    MarketTide,
    NetPremTick,
    OptionContract,
    StockState,
)
from apps.ingestion.uw.channels import Channel, ChannelKind
from apps.ingestion.uw.normalize import (
    GEX_FIELDS,
    NormalizationError,
    RejectKind,
    normalize_frame,
    read_date,
    read_decimal,
    read_int,
    read_required_time,
    read_symbol,
    read_text,
    read_ticker,
)


def stream_name(endpoint: str) -> str:
    """The channel name REST items carry in the quarantine and in drift: ``rest:<endpoint>``."""
    return f"rest:{endpoint}"


@dataclass(frozen=True, slots=True)
class Rejection:
    item: Any
    kind: RejectKind
    reason: str


@dataclass
class NormalizedPage:
    """One page's rows (in item order) and the items that could not become rows."""

    records: list[models.Model] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # uw_ids this page derived for flow alerts that came without an ``id`` (the service checks these against the
    # socket's copies, which carry UW's id).
    derived_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Context:
    endpoint: str
    ticker: str | None
    fetched_at: datetime

    @property
    def name(self) -> str:
        return stream_name(self.endpoint)


def _stated_ticker(ctx: _Context, item: Mapping[str, Any]) -> str:
    """The polled ticker; an item that names another one is refused (a mixed-up answer must not be stored as ours)."""
    stated = read_ticker(item, "ticker", ctx.name)
    if ctx.ticker is None:
        if stated is None:
            raise NormalizationError(RejectKind.MISSING_FIELD, f"missing required field 'ticker' in {ctx.name}")
        return stated
    if stated is not None and stated != ctx.ticker:
        raise NormalizationError(RejectKind.INVALID_VALUE, f"ticker {stated!r} in a {ctx.name} answer for {ctx.ticker}")
    return ctx.ticker


# --- flow alerts and news: the socket normalizer, fed REST names --------------------------------------------------


def derived_flow_alert_id(*, option_symbol: str, executed_at: datetime, total_size: int, total_premium: Decimal) -> str:
    """A stable id for a REST alert without one: the same alert always hashes the same, whatever its number format."""
    text = f"{option_symbol}|{executed_at.isoformat()}|{total_size}|{total_premium.normalize():f}"
    return "rest-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def _flow_alert(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    name = ctx.name
    mapped = dict(item)
    # REST names the alert time ``created_at`` (ISO) where the socket has ``executed_at`` (epoch ms).
    if mapped.get("executed_at") in (None, ""):
        mapped["executed_at"] = item.get("created_at")
    if mapped.get("executed_at") in (None, ""):
        raise NormalizationError(RejectKind.MISSING_FIELD, f"missing required field 'created_at' in {name}")
    derived = mapped.get("id") in (None, "")
    if derived:
        mapped["id"] = "pending"
    alert = normalize_frame(Channel(name=name, kind=ChannelKind.FLOW_ALERT, ticker=None), mapped).record
    assert isinstance(alert, FlowAlert)  # the flow-alert normalizer makes FlowAlert rows
    _check_contract(item, name, alert.option_symbol)
    if derived:
        alert.uw_id = derived_flow_alert_id(
            option_symbol=alert.option_symbol,
            executed_at=alert.executed_at,
            total_size=alert.total_size,
            total_premium=alert.total_premium,
        )
        page.derived_ids.add(alert.uw_id)
    return alert


def _check_contract(item: Mapping[str, Any], name: str, option_symbol: str) -> None:
    """REST alerts also state ``type``/``strike``/``expiry``; the OCC symbol is the identity, they must agree."""
    symbol = read_symbol({"option_chain": option_symbol}, ("option_chain",), name)
    strike = read_decimal(item, "strike", name, PRICE)
    if strike is not None and strike != symbol.strike:
        raise NormalizationError(
            RejectKind.INVALID_VALUE,
            f"invalid 'strike' in {name}: {strike.normalize()} but the option symbol says {symbol.strike}",
        )
    expiry = read_date(item, "expiry", name)
    if expiry is not None and expiry != symbol.expiry:
        raise NormalizationError(
            RejectKind.INVALID_VALUE, f"invalid 'expiry' in {name}: {expiry} but the option symbol says {symbol.expiry}"
        )
    kind = item.get("type")
    if isinstance(kind, str) and kind.strip():
        right = kind.strip().upper()[:1]
        if right != symbol.right:
            raise NormalizationError(
                RejectKind.INVALID_VALUE,
                f"invalid 'type' in {name}: {kind!r} but the option symbol says {symbol.right}",
            )


def _news(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    mapped = dict(item)
    # REST ``created_at`` is the socket's ``timestamp``: the same headline must get the same news_key either way.
    if mapped.get("timestamp") in (None, ""):
        mapped["timestamp"] = item.get("created_at")
    if mapped.get("timestamp") in (None, ""):
        raise NormalizationError(RejectKind.MISSING_FIELD, f"missing required field 'created_at' in {ctx.name}")
    record = normalize_frame(Channel(name=ctx.name, kind=ChannelKind.NEWS, ticker=None), mapped).record
    assert record is not None  # news frames always make a row
    return record


# --- the per-ticker and market-wide tables --------------------------------------------------------------------------


def _spot_exposure(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    name = ctx.name
    ticker = _stated_ticker(ctx, item)
    exposures = {column: read_decimal(item, feed_key, name, BIG) for column, feed_key in GEX_FIELDS.items()}
    return GexSnapshot(
        ticker=ticker,
        ts=read_required_time(item, "time", name),
        price=read_decimal(item, "price", name, PRICE),
        **exposures,
    )


GREEK_COLUMNS = tuple(f"{side}_{greek}" for greek in ("delta", "gamma", "charm", "vanna") for side in ("call", "put"))


def _greek_exposure(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    name = ctx.name
    day = read_date(item, "date", name, required=True)
    assert day is not None  # required=True raises instead
    return GreekExposure(
        ticker=_stated_ticker(ctx, item),
        date=day,
        **{column: read_decimal(item, column, name, BIG) for column in GREEK_COLUMNS},
    )


def _stock_state(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    name = ctx.name
    return StockState(
        ticker=_stated_ticker(ctx, item),
        tape_time=read_required_time(item, "tape_time", name),
        open=read_decimal(item, "open", name, PRICE),
        high=read_decimal(item, "high", name, PRICE),
        low=read_decimal(item, "low", name, PRICE),
        close=read_decimal(item, "close", name, PRICE),
        prev_close=read_decimal(item, "prev_close", name, PRICE),
        volume=read_int(item, "volume", name),
        total_volume=read_int(item, "total_volume", name),
        market_time=read_text(item, "market_time", name, max_length=8, clip=True),
    )


def _candle(interval: str) -> Callable[[_Context, Mapping[str, Any], NormalizedPage], models.Model]:
    def normalize(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
        name = ctx.name
        return Candle(
            ticker=_stated_ticker(ctx, item),
            interval=interval,
            start_time=read_required_time(item, "start_time", name),
            end_time=read_required_time(item, "end_time", name),
            open=read_decimal(item, "open", name, PRICE, required=True),
            high=read_decimal(item, "high", name, PRICE, required=True),
            low=read_decimal(item, "low", name, PRICE, required=True),
            close=read_decimal(item, "close", name, PRICE, required=True),
            volume=read_int(item, "volume", name),
            total_volume=read_int(item, "total_volume", name),
            market_time=read_text(item, "market_time", name, max_length=8, clip=True),
        )

    return normalize


def _market_tide(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    name = ctx.name
    return MarketTide(
        ts=read_required_time(item, "timestamp", name),
        net_call_premium=read_decimal(item, "net_call_premium", name, MONEY),
        net_put_premium=read_decimal(item, "net_put_premium", name, MONEY),
        net_volume=read_int(item, "net_volume", name),
    )


def _net_prem_tick(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    name = ctx.name
    return NetPremTick(
        ticker=_stated_ticker(ctx, item),
        tape_time=read_required_time(item, "tape_time", name),
        net_call_premium=read_decimal(item, "net_call_premium", name, MONEY),
        net_put_premium=read_decimal(item, "net_put_premium", name, MONEY),
        net_call_volume=read_int(item, "net_call_volume", name),
        net_put_volume=read_int(item, "net_put_volume", name),
        net_delta=read_decimal(item, "net_delta", name, BIG),
    )


def _option_contract(ctx: _Context, item: Mapping[str, Any], page: NormalizedPage) -> models.Model:
    name = ctx.name
    symbol = read_symbol(item, ("option_symbol", "option_chain", "option_chain_id"), name)
    return OptionContract(
        option_symbol=symbol.occ,
        # The polled underlying, not the symbol's root: SPX options trade under SPXW.
        ticker=ctx.ticker or symbol.root,
        expiry=symbol.expiry,
        right=symbol.right,
        strike=read_decimal({"strike": symbol.strike}, "strike", name, PRICE, required=True),
        volume=read_int(item, "volume", name),
        open_interest=read_int(item, "open_interest", name),
        implied_volatility=read_decimal(item, "implied_volatility", name, GREEK),
        nbbo_bid=read_decimal(item, "nbbo_bid", name, PRICE),
        nbbo_ask=read_decimal(item, "nbbo_ask", name, PRICE),
        last_price=read_decimal(item, "last_price", name, PRICE),
        as_of=ctx.fetched_at,
    )


NORMALIZERS: dict[str, Callable[[_Context, Mapping[str, Any], NormalizedPage], models.Model]] = {
    "flow_alerts": _flow_alert,
    "spot_exposures": _spot_exposure,
    "greek_exposure": _greek_exposure,
    "stock_state": _stock_state,
    "candles_1m": _candle("1m"),
    "news": _news,
    "market_tide": _market_tide,
    "net_prem_ticks": _net_prem_tick,
    "option_contracts": _option_contract,
}


def normalize_page(*, endpoint: str, items: list[Any], ticker: str | None, fetched_at: datetime) -> NormalizedPage:
    """Every item of one page as a row or a rejection; one bad item never stops the others."""
    normalize = NORMALIZERS[endpoint]
    ctx = _Context(endpoint=endpoint, ticker=ticker, fetched_at=fetched_at)
    page = NormalizedPage()
    for item in items:
        if not isinstance(item, dict):
            page.rejections.append(Rejection(item, RejectKind.BAD_FRAME, f"{ctx.name} item is not an object"))
            continue
        try:
            page.records.append(normalize(ctx, item, page))
        except NormalizationError as exc:
            page.rejections.append(Rejection(item, exc.kind, exc.reason))
    return page
