"""Unusual Whales socket payloads -> unsaved model rows.

Each channel's normalizer reads the documented fields with typed readers that fail with the field's name, the channel
and the offending value, so a quarantined frame says exactly what was wrong.  Decimal strings and JSON numbers both
become ``Decimal`` (quantized to the column, range-checked so the database never rejects a row mid-batch); epoch
milliseconds, epoch seconds and ISO strings all become aware UTC datetimes.  Unknown extra fields are ignored here:
the raw frame is archived as received, so nothing is lost when the feed adds fields.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal, overload

from django.db import models

from apps.core import occ
from apps.core.money import InvalidAmount, to_decimal
from apps.ingestion.models import (
    BIG,
    GREEK,
    MONEY,
    PRICE,
    FlowAlert,
    GexSnapshot,
    GexStrike,
    NewsItem,
    OptionTrade,
    PriceTick,
)
from apps.ingestion.uw.channels import TICKER_RE, Channel, ChannelKind

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Market data outside these bounds is a unit error (seconds read as ms, a zero, a sentinel), not a real time.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_EARLIEST_MS = int((EARLIEST - EPOCH).total_seconds() * 1000)
_LATEST_MS = int((LATEST - EPOCH).total_seconds() * 1000)
# A bare number below this is epoch seconds (1e11 s is the year 5138; 1e11 ms is 1973, before any data we hold).
_SECONDS_BELOW = 100_000_000_000

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# Index options quoted with a multiplier other than the standard 100.
MULTIPLIERS = {"XSP": 10}
STANDARD_MULTIPLIER = 100


class RejectKind(StrEnum):
    """Why a line was quarantined, coarsely: the key of ``IngestResult.quarantine_reasons``."""

    NOT_TEXT = "not_text"
    BROKEN_JSON = "broken_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_RECEIVED_AT = "bad_received_at"
    BAD_FRAME = "bad_frame"
    UNKNOWN_CHANNEL = "unknown_channel"
    MISSING_FIELD = "missing_field"
    INVALID_VALUE = "invalid_value"
    UNSTORABLE = "unstorable"


class NormalizationError(ValueError):
    """A line or frame that cannot be accepted: ``kind`` classifies it, ``reason`` says precisely why."""

    def __init__(
        self, kind: RejectKind, reason: str, *, channel: str = "", received_at: datetime | None = None
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        # What the line did reveal before it failed, for the quarantine row.
        self.channel = channel
        self.received_at = received_at


@dataclass(frozen=True, slots=True)
class Normalized:
    """One frame's normalized row (``None`` for join acks and raw-only channels) and what it tells downstream."""

    kind: ChannelKind
    record: models.Model | None
    ticker: str | None  # the underlying whose market state this frame changes (drives analytics)
    data_time: datetime | None  # the market-data time of the row (what "latest" compares)
    ack_status: str | None = None  # set for join acks: "ok", or what the server refused with


# --- typed readers --------------------------------------------------------------------------------------------------


def _missing(key: str, channel: str) -> NormalizationError:
    return NormalizationError(RejectKind.MISSING_FIELD, f"missing required field {key!r} in {channel}")


def _invalid(key: str, channel: str, detail: str) -> NormalizationError:
    return NormalizationError(RejectKind.INVALID_VALUE, f"invalid {key!r} in {channel}: {detail}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@overload
def read_decimal(
    payload: Mapping[str, Any], key: str, channel: str, spec: Mapping[str, int], *, required: Literal[True]
) -> Decimal: ...


@overload
def read_decimal(
    payload: Mapping[str, Any], key: str, channel: str, spec: Mapping[str, int], *, required: bool = False
) -> Decimal | None: ...


def read_decimal(
    payload: Mapping[str, Any], key: str, channel: str, spec: Mapping[str, int], *, required: bool = False
) -> Decimal | None:
    """A decimal that fits the column ``spec`` (max_digits/decimal_places); ``""`` and ``null`` count as absent."""
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise _missing(key, channel)
        return None
    return fit_decimal(value, key, channel, spec)


@functools.cache
def _column(max_digits: int, places: int) -> tuple[Decimal, Context, int]:
    """Quantum, context and the exclusive exponent bound of a decimal column (built once per column shape)."""
    return Decimal(1).scaleb(-places), Context(prec=max_digits + 2, rounding=ROUND_HALF_UP), max_digits - places


def fit_decimal(value: object, key: str, channel: str, spec: Mapping[str, int]) -> Decimal:
    try:
        amount = to_decimal(value)
    except InvalidAmount as exc:
        raise _invalid(key, channel, str(exc)) from exc
    quantum, context, bound = _column(spec["max_digits"], spec["decimal_places"])
    if amount and amount.adjusted() >= bound:
        raise _invalid(key, channel, f"{_show(value)} is out of range")
    try:
        return amount.quantize(quantum, context=context)
    except InvalidOperation as exc:
        raise _invalid(key, channel, f"{_show(value)} cannot be stored") from exc


def read_int(
    payload: Mapping[str, Any],
    key: str,
    channel: str,
    *,
    required: bool = False,
    default: int = 0,
    bounds: tuple[int, int] = INT64,
) -> int:
    """An integer from an int, an integral float or an integral numeric string."""
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise _missing(key, channel)
        return default
    if isinstance(value, bool):
        raise _invalid(key, channel, f"{_show(value)} is not an integer")
    if isinstance(value, int):
        number = value
    else:
        try:
            amount = to_decimal(value)
        except InvalidAmount as exc:
            raise _invalid(key, channel, str(exc)) from exc
        if amount != amount.to_integral_value():
            raise _invalid(key, channel, f"{_show(value)} is not an integer")
        if abs(amount) > 2**64:
            raise _invalid(key, channel, f"{_show(value)} is out of range")
        number = int(amount)
    if not bounds[0] <= number <= bounds[1]:
        raise _invalid(key, channel, f"{_show(value)} is out of range")
    return number


_TRUE = frozenset({"true", "t", "1", "yes"})
_FALSE = frozenset({"false", "f", "0", "no"})


def read_bool(payload: Mapping[str, Any], key: str, channel: str, *, default: bool = False) -> bool:
    value = payload.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _invalid(key, channel, f"{_show(value)} is not a boolean")


def read_text(
    payload: Mapping[str, Any], key: str, channel: str, *, max_length: int, required: bool = False, clip: bool = False
) -> str:
    """A string (ids may arrive as numbers); too long is an error unless ``clip`` says a prefix is enough."""
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise _missing(key, channel)
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(key, channel, f"{_show(value)} is not a string")
    text = str(value)
    if len(text) > max_length:
        if not clip:
            raise _invalid(key, channel, f"{_show(value)} is longer than {max_length} characters")
        text = text[:max_length]
    return text


def read_ticker(payload: Mapping[str, Any], key: str, channel: str, *, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise _missing(key, channel)
        return None
    if not isinstance(value, str) or not TICKER_RE.match(value):
        raise _invalid(key, channel, f"{_show(value)} is not a ticker")
    return value


def read_time(payload: Mapping[str, Any], key: str, channel: str, *, required: bool = True) -> datetime | None:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise _missing(key, channel)
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise _invalid(key, channel, str(exc)) from exc


def read_required_time(payload: Mapping[str, Any], key: str, channel: str) -> datetime:
    moment = read_time(payload, key, channel, required=True)
    assert moment is not None  # required=True raises instead of returning None
    return moment


def parse_time(value: object) -> datetime:
    """Epoch milliseconds (or seconds), as a number or digits, or an ISO string -> aware UTC datetime."""
    if isinstance(value, bool):
        raise ValueError(f"{_show(value)} is not a time")
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = Decimal(text)
        except InvalidOperation:
            return _parse_iso(text)
        if not parsed.is_finite():
            raise ValueError(f"{_show(value)} is not a time")
        number: int | float | Decimal = parsed
    elif isinstance(value, int | float):
        number = value
    else:
        raise ValueError(f"{_show(value)} is not a time")
    millis = Decimal(number) if isinstance(number, int) else to_decimal(number)
    if abs(millis) < _SECONDS_BELOW:
        millis *= 1000
    if not _EARLIEST_MS <= millis < _LATEST_MS:
        raise ValueError(f"{_show(value)} is outside {EARLIEST.year}-{LATEST.year}")
    return EPOCH + timedelta(microseconds=int(millis * 1000))


def _parse_iso(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{_show(text)} is neither epoch milliseconds nor an ISO time") from exc
    # UW's times are UTC; an ISO string without an offset is UTC written without one.
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"{_show(text)} is outside {EARLIEST.year}-{LATEST.year}")
    return moment


def read_date(payload: Mapping[str, Any], key: str, channel: str, *, required: bool = False) -> date | None:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise _missing(key, channel)
        return None
    if not isinstance(value, str):
        raise _invalid(key, channel, f"{_show(value)} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError as exc:
        raise _invalid(key, channel, f"{_show(value)} is not a YYYY-MM-DD date") from exc


def read_strings(payload: Mapping[str, Any], key: str, channel: str) -> list[str]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(key, channel, f"{_show(value)} is not a list of strings")
    return value


# A session trades a few thousand contracts many times each; parsing each symbol once saves real time.
_parse_symbol = functools.lru_cache(maxsize=16_384)(occ.parse)


def read_symbol(payload: Mapping[str, Any], keys: tuple[str, ...], channel: str) -> occ.OptionSymbol:
    """The OCC symbol from the first of ``keys`` present (the feed names it differently per endpoint)."""
    for key in keys:
        value = payload.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise _invalid(key, channel, f"{_show(value)} is not an OCC option symbol")
        try:
            return _parse_symbol(value)
        except occ.InvalidOptionSymbol as exc:
            raise _invalid(key, channel, str(exc)) from exc
    raise _missing(keys[0], channel)


def _check_ticker(channel: Channel, ticker: str) -> None:
    if channel.ticker is not None and channel.ticker != ticker:
        raise NormalizationError(
            RejectKind.INVALID_VALUE, f"ticker {ticker!r} in a {channel.name} frame (channel is for {channel.ticker})"
        )


# --- one normalizer per channel kind --------------------------------------------------------------------------------


def _flow_alert(channel: Channel, p: Mapping[str, Any]) -> Normalized:
    name = channel.name
    symbol = read_symbol(p, ("option_chain", "option_symbol"), name)
    ticker = read_ticker(p, "ticker", name, required=True)
    assert ticker is not None  # required=True
    volume = read_int(p, "volume", name)
    open_interest = read_int(p, "open_interest", name)
    ratio = read_decimal(p, "volume_oi_ratio", name, PRICE)
    # The feed sends 0 even when volume and open interest say otherwise; the ratio is cheap to get right.
    if not ratio and open_interest > 0:
        ratio = fit_decimal(Decimal(volume) / Decimal(open_interest), "volume_oi_ratio", name, PRICE)
    executed_at = read_required_time(p, "executed_at", name)
    alert = FlowAlert(
        uw_id=read_text(p, "id", name, max_length=64, required=True),
        rule_name=read_text(p, "rule_name", name, max_length=100, clip=True)
        or read_text(p, "alert_rule", name, max_length=100, clip=True),
        ticker=ticker,
        option_symbol=symbol.occ,
        expiry=symbol.expiry,
        right=symbol.right,
        strike=fit_decimal(symbol.strike, "option_chain", name, PRICE),
        underlying_price=read_decimal(p, "underlying_price", name, PRICE),
        price=read_decimal(p, "price", name, PRICE),
        bid=read_decimal(p, "bid", name, PRICE),
        ask=read_decimal(p, "ask", name, PRICE),
        volume=volume,
        total_size=read_int(p, "total_size", name),
        total_premium=read_decimal(p, "total_premium", name, MONEY, required=True),
        total_ask_side_prem=read_decimal(p, "total_ask_side_prem", name, MONEY) or Decimal(0),
        total_bid_side_prem=read_decimal(p, "total_bid_side_prem", name, MONEY) or Decimal(0),
        has_sweep=read_bool(p, "has_sweep", name),
        has_floor=read_bool(p, "has_floor", name),
        has_multileg=read_bool(p, "has_multileg", name),
        all_opening_trades=read_bool(p, "all_opening_trades", name),
        open_interest=open_interest,
        volume_oi_ratio=ratio,
        trade_count=read_int(p, "trade_count", name, bounds=INT32),
        executed_at=executed_at,
    )
    return Normalized(kind=channel.kind, record=alert, ticker=ticker, data_time=executed_at)


def _trade_side(p: Mapping[str, Any], name: str, price: Decimal, bid: Decimal | None, ask: Decimal | None) -> str:
    """Which side the trade took: the volume split when one side leads, else the price against the NBBO."""
    split = {side: read_int(p, f"{side}_vol", name) for side in ("ask", "bid", "mid", "no_side")}
    top = max(split.values())
    leaders = [side for side, volume in split.items() if volume == top]
    if top > 0 and len(leaders) == 1:
        return leaders[0]
    if bid is not None and ask is not None and bid <= ask:
        if price >= ask:
            return "ask"
        if price <= bid:
            return "bid"
        return "mid"
    return "no_side"


def _option_trade(channel: Channel, p: Mapping[str, Any]) -> Normalized:
    name = channel.name
    symbol = read_symbol(p, ("option_symbol", "option_chain_id", "option_chain"), name)
    ticker = read_ticker(p, "underlying_symbol", name) or channel.ticker or symbol.root
    _check_ticker(channel, ticker)
    _check_contract(p, name, symbol)
    price = read_decimal(p, "price", name, PRICE, required=True)
    assert price is not None  # required=True
    size = read_int(p, "size", name, required=True, bounds=(0, INT32[1]))
    premium = read_decimal(p, "premium", name, MONEY)
    if premium is None:
        multiplier = MULTIPLIERS.get(symbol.root, STANDARD_MULTIPLIER)
        premium = fit_decimal(price * size * multiplier, "premium", name, MONEY)
    nbbo_bid = read_decimal(p, "nbbo_bid", name, PRICE)
    nbbo_ask = read_decimal(p, "nbbo_ask", name, PRICE)
    executed_at = read_required_time(p, "executed_at", name)
    trade = OptionTrade(
        uw_id=read_text(p, "id", name, max_length=64, required=True),
        ticker=ticker,
        option_symbol=symbol.occ,
        expiry=symbol.expiry,
        right=symbol.right,
        strike=fit_decimal(symbol.strike, "option_symbol", name, PRICE),
        price=price,
        size=size,
        premium=premium,
        nbbo_bid=nbbo_bid,
        nbbo_ask=nbbo_ask,
        underlying_price=read_decimal(p, "underlying_price", name, PRICE),
        volume=read_int(p, "volume", name),
        open_interest=read_int(p, "open_interest", name),
        implied_volatility=read_decimal(p, "implied_volatility", name, GREEK),
        delta=read_decimal(p, "delta", name, GREEK),
        gamma=read_decimal(p, "gamma", name, GREEK),
        theta=read_decimal(p, "theta", name, GREEK),
        vega=read_decimal(p, "vega", name, GREEK),
        side=_trade_side(p, name, price, nbbo_bid, nbbo_ask),
        tags=read_strings(p, "tags", name),
        exchange=read_text(p, "exchange", name, max_length=16, clip=True),
        executed_at=executed_at,
    )
    return Normalized(kind=channel.kind, record=trade, ticker=ticker, data_time=executed_at)


def _check_contract(p: Mapping[str, Any], name: str, symbol: occ.OptionSymbol) -> None:
    """The OCC symbol is the contract's identity; explicit strike/expiry/type fields must agree with it."""
    strike = read_decimal(p, "strike", name, PRICE)
    if strike is not None and strike != symbol.strike:
        raise _invalid("strike", name, f"{strike.normalize()} but the option symbol says {symbol.strike}")
    expiry = read_date(p, "expiry", name)
    if expiry is not None and expiry != symbol.expiry:
        raise _invalid("expiry", name, f"{expiry} but the option symbol says {symbol.expiry}")
    kind = p.get("option_type")
    if kind is not None and kind != "":
        right = kind.strip().upper()[:1] if isinstance(kind, str) else ""
        if right not in ("C", "P"):
            raise _invalid("option_type", name, f"{_show(kind)} is neither call nor put")
        if right != symbol.right:
            raise _invalid("option_type", name, f"{kind} but the option symbol says {symbol.right}")


def _channel_ticker(channel: Channel, p: Mapping[str, Any]) -> str:
    assert channel.ticker is not None  # ticker families always carry one (channel_resolve)
    stated = read_ticker(p, "ticker", channel.name)
    if stated is not None:
        _check_ticker(channel, stated)
    return channel.ticker


def _price(channel: Channel, p: Mapping[str, Any]) -> Normalized:
    name = channel.name
    ticker = _channel_ticker(channel, p)
    ts = read_required_time(p, "time", name)
    close = read_decimal(p, "close", name, PRICE, required=True)
    tick = PriceTick(ticker=ticker, ts=ts, close=close, volume=read_int(p, "vol", name) or read_int(p, "volume", name))
    return Normalized(kind=channel.kind, record=tick, ticker=ticker, data_time=ts)


GEX_FIELDS = {
    f"{greek}_{basis}": f"{greek}_per_one_percent_move_{basis}"
    for greek in ("gamma", "delta", "charm", "vanna")
    for basis in ("oi", "vol", "dir")
}


def _gex(channel: Channel, p: Mapping[str, Any]) -> Normalized:
    name = channel.name
    ticker = _channel_ticker(channel, p)
    ts = read_required_time(p, "timestamp", name)
    exposures = {column: read_decimal(p, feed_key, name, BIG) for column, feed_key in GEX_FIELDS.items()}
    price = read_decimal(p, "price", name, PRICE, required=True)
    snapshot = GexSnapshot(ticker=ticker, ts=ts, price=price, **exposures)
    return Normalized(kind=channel.kind, record=snapshot, ticker=ticker, data_time=ts)


GEX_STRIKE_FIELDS = (
    "call_gamma_oi",
    "put_gamma_oi",
    "call_gamma_vol",
    "put_gamma_vol",
    "call_charm_oi",
    "put_charm_oi",
    "call_vanna_oi",
    "put_vanna_oi",
)


def _gex_strike(channel: Channel, p: Mapping[str, Any]) -> Normalized:
    name = channel.name
    ticker = _channel_ticker(channel, p)
    ts = read_required_time(p, "timestamp", name)
    strike = read_decimal(p, "strike", name, PRICE, required=True)
    assert strike is not None  # required=True
    expiry = read_date(p, "expiry", name, required=channel.kind is ChannelKind.GEX_STRIKE_EXPIRY)
    millis = int((ts - EPOCH) / timedelta(milliseconds=1))
    row = GexStrike(
        ticker=ticker,
        ts=ts,
        strike=strike,
        expiry=expiry,
        price=read_decimal(p, "price", name, PRICE),
        natural_key=f"{ticker}|{millis}|{strike.normalize():f}|{expiry.isoformat() if expiry else ''}",
        **{column: read_decimal(p, column, name, BIG) for column in GEX_STRIKE_FIELDS},
    )
    return Normalized(kind=channel.kind, record=row, ticker=ticker, data_time=ts)


def _news(channel: Channel, p: Mapping[str, Any]) -> Normalized:
    name = channel.name
    headline = read_text(p, "headline", name, max_length=10_000, required=True)
    published_at = read_required_time(p, "timestamp", name)
    source = read_text(p, "source", name, max_length=100, clip=True)
    key = hashlib.sha256(f"{headline}|{published_at.isoformat()}|{source}".encode()).hexdigest()
    item = NewsItem(
        news_key=key,
        headline=headline,
        source=source,
        tickers=read_strings(p, "tickers", name),
        is_major=read_bool(p, "is_major", name),
        published_at=published_at,
    )
    # News names many tickers in passing; it does not change a ticker's market state, so it drives no analytics.
    return Normalized(kind=channel.kind, record=item, ticker=None, data_time=published_at)


NORMALIZERS: dict[ChannelKind, Callable[[Channel, Mapping[str, Any]], Normalized]] = {
    ChannelKind.FLOW_ALERT: _flow_alert,
    ChannelKind.OPTION_TRADE: _option_trade,
    ChannelKind.PRICE: _price,
    ChannelKind.GEX: _gex,
    ChannelKind.GEX_STRIKE: _gex_strike,
    ChannelKind.GEX_STRIKE_EXPIRY: _gex_strike,
    ChannelKind.NEWS: _news,
}


# Keys a join acknowledgement may carry; a payload with any other key is data, even if it also has a "status".
ACK_KEYS = frozenset({"status", "response", "channel", "msg_type", "message", "error", "errors"})


def is_join_ack(payload: object) -> bool:
    """``["option_trades", {"response": {}, "status": "ok"}]``: the server confirming a join, not market data."""
    return isinstance(payload, dict) and ("status" in payload or "response" in payload) and payload.keys() <= ACK_KEYS


def normalize_frame(channel: Channel, payload: object) -> Normalized:
    """The row ``payload`` on ``channel`` becomes; ``NormalizationError`` says why it cannot become one."""
    if is_join_ack(payload):
        assert isinstance(payload, dict)  # is_join_ack checked it
        status = payload.get("status")
        return Normalized(kind=channel.kind, record=None, ticker=None, data_time=None, ack_status=str(status or "ok"))
    if channel.kind is ChannelKind.RAW_ONLY:
        if not isinstance(payload, dict | list):
            raise NormalizationError(RejectKind.BAD_FRAME, f"{channel.name} payload is not an object or a list")
        return Normalized(kind=channel.kind, record=None, ticker=None, data_time=None)
    if not isinstance(payload, dict):
        raise NormalizationError(RejectKind.BAD_FRAME, f"{channel.name} payload is not an object")
    return NORMALIZERS[channel.kind](channel, payload)
