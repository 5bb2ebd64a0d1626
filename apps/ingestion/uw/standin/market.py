"""What has "happened" in a replayed session, kept in the shapes the Unusual Whales REST endpoints answer with.

``MarketState.ingest`` takes each frame as the session clock passes it; the ``*_rows`` methods answer the REST
endpoints from what was ingested so far, so a REST read never sees a frame the socket has not reached yet.  The
aggregates are updated per frame (not recomputed per request) because a full day holds hundreds of thousands of
option trades.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
MINUTE_MS = 60_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OCC_RE = re.compile(r"^([A-Z.]+?)(\d{6})([CP])(\d{8})$")
ETFS = frozenset({"SPY", "QQQ", "IWM", "DIA", "XLF", "XLE", "XLK", "TLT", "GLD", "SLV", "HYG", "EEM", "SMH"})
INDICES = frozenset({"SPX", "SPXW", "NDX", "RUT", "VIX", "XSP"})
GEX_GREEKS = ("gamma", "charm", "vanna")
GEX_SOURCES = ("oi", "vol", "dir")
CANDLE_MS = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "10m": 10 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
}
POSITIVE_WORDS = ("rally", "rallies", "upbeat", "beat", "surge", "jump", "record high", "gain")
NEGATIVE_WORDS = ("drop", "fall", "weak", "warn", "slump", "plunge", "miss", "cut guidance")
CENT = Decimal("0.01")


def iso_from_ms(ms: int) -> str:
    """UTC ISO 8601 with microseconds and ``Z``, the precision of UW's flow alert ``created_at``."""
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_seconds(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_york(ms: int) -> datetime:
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(NEW_YORK)


def trading_day(ms: int) -> date:
    return new_york(ms).date()


def market_time(ms: int) -> str:
    """``pr`` before 09:30 New York, ``r`` until 16:00, ``po`` after: UW's ``market_time`` codes."""
    wall = new_york(ms)
    minutes = wall.hour * 60 + wall.minute
    if minutes < 9 * 60 + 30:
        return "pr"
    return "r" if minutes < 16 * 60 else "po"


def decimal_of(value: object) -> Decimal:
    """A decimal from a socket field (string or number); ``ValueError`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a number: {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def plain(value: Decimal) -> str:
    """Decimal text without exponent or trailing zeros (``600``, ``602.5``)."""
    text = format(value.normalize(), "f")
    return text


def trade_sign(payload: dict[str, Any]) -> int:
    """+1 for a trade at the ask side, -1 at the bid side, 0 in between.

    The side volumes decide when they differ; otherwise the price against the NBBO does.
    """
    ask_vol, bid_vol = payload.get("ask_vol"), payload.get("bid_vol")
    if isinstance(ask_vol, int) and isinstance(bid_vol, int) and ask_vol != bid_vol:
        return 1 if ask_vol > bid_vol else -1
    try:
        price = decimal_of(payload.get("price"))
        if price >= decimal_of(payload.get("nbbo_ask")):
            return 1
        if price <= decimal_of(payload.get("nbbo_bid")):
            return -1
    except ValueError:
        return 0
    return 0


@dataclass(frozen=True, slots=True)
class Contract:
    ticker: str
    expiry: date
    option_type: str  # "call" or "put"
    strike: Decimal


def contract_of(symbol: object) -> Contract:
    """The contract an OCC symbol (without padding) names; ``ValueError`` when it is not one."""
    match = OCC_RE.match(symbol) if isinstance(symbol, str) else None
    if match is None:
        raise ValueError(f"not an OCC symbol: {symbol!r}")
    root, ymd, kind, digits = match.groups()
    expiry = date(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:]))
    return Contract(root, expiry, "call" if kind == "C" else "put", Decimal(digits) / 1000)


def issue_type(ticker: str) -> str:
    if ticker in ETFS:
        return "ETF"
    return "Index" if ticker in INDICES else "Common Stock"


@dataclass(slots=True)
class Alert:
    created_ms: int
    ticker: str
    premium: Decimal
    is_call: bool
    row: dict[str, Any]


@dataclass(slots=True)
class PriceTick:
    ms: int
    close: Decimal
    volume: int


@dataclass(slots=True)
class MinuteFlow:
    """Signed premium and volume of one minute's option trades (ask side positive, bid side negative)."""

    call_premium: Decimal = Decimal(0)
    put_premium: Decimal = Decimal(0)
    call_volume: int = 0
    put_volume: int = 0
    delta: Decimal = Decimal(0)


@dataclass
class MarketState:
    """The session so far, per endpoint; frames that do not parse are counted in ``skipped`` and ignored."""

    alerts: list[Alert] = field(default_factory=list)
    gex: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=lambda: defaultdict(list))
    prices: dict[str, list[PriceTick]] = field(default_factory=lambda: defaultdict(list))
    news: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    tide: dict[int, MinuteFlow] = field(default_factory=lambda: defaultdict(MinuteFlow))
    ticks: dict[str, dict[int, MinuteFlow]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(MinuteFlow))
    )
    contracts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    skipped: int = 0

    def ingest(self, channel: str, payload: Any, received_at: int) -> None:
        """Fold one data frame into the endpoints' state."""
        if not isinstance(payload, dict):
            self.skipped += 1
            return
        family, _, ticker = channel.partition(":")
        try:
            if family == "flow-alerts":
                self._alert(payload)
            elif family == "option_trades":
                self._trade(ticker or str(payload.get("underlying_symbol", "")), payload)
            elif family == "price" and ticker:
                self.prices[ticker].append(
                    PriceTick(int(payload["time"]), decimal_of(payload["close"]), int(payload.get("vol") or 0))
                )
            elif family == "gex" and ticker:
                self.gex[ticker].append((int(payload["timestamp"]), payload))
            elif family == "news":
                self._news(payload, received_at)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            self.skipped += 1

    def _alert(self, p: dict[str, Any]) -> None:
        contract = contract_of(p["option_chain"])
        created = int(p["executed_at"])
        volume = int(p.get("volume") or 0)
        open_interest = int(p.get("open_interest") or 0)
        # the socket's volume_oi_ratio is sometimes 0 when it should not be; UW's REST answer computes it
        ratio = plain((Decimal(volume) / open_interest).quantize(Decimal("0.0001"))) if open_interest else "0"
        premium = decimal_of(p["total_premium"])
        row = {
            "id": p["id"],
            "alert_rule": p.get("rule_name"),
            "created_at": iso_from_ms(created),
            "ticker": p.get("ticker") or contract.ticker,
            "option_chain": p["option_chain"],
            "type": contract.option_type,
            "strike": plain(contract.strike),
            "expiry": contract.expiry.isoformat(),
            "price": plain(decimal_of(p["price"])),
            "underlying_price": plain(decimal_of(p["underlying_price"])),
            "total_premium": money(premium),
            "total_ask_side_prem": money(decimal_of(p.get("total_ask_side_prem", 0))),
            "total_bid_side_prem": money(decimal_of(p.get("total_bid_side_prem", 0))),
            "total_size": int(p.get("total_size") or 0),
            "trade_count": int(p.get("trade_count") or 0),
            "volume": volume,
            "open_interest": open_interest,
            "volume_oi_ratio": ratio,
            "has_sweep": bool(p.get("has_sweep")),
            "has_floor": bool(p.get("has_floor")),
            "has_multileg": bool(p.get("has_multileg")),
            "has_singleleg": bool(p.get("has_singleleg")),
            "all_opening_trades": bool(p.get("all_opening_trades")),
            "expiry_count": int(p.get("expiry_count") or 1),
            "issue_type": issue_type(contract.ticker),
        }
        self.alerts.append(Alert(created, str(row["ticker"]), premium, contract.option_type == "call", row))

    def _trade(self, ticker: str, p: dict[str, Any]) -> None:
        symbol = p["option_symbol"]
        contract = contract_of(symbol)
        executed = int(p["executed_at"])
        size = int(p["size"])
        sign = trade_sign(p)
        premium = decimal_of(p["premium"]) * sign
        delta = decimal_of(p.get("delta") or 0) * size * 100 * sign
        minute = executed - executed % MINUTE_MS
        for flow in (self.tide[minute], self.ticks[ticker][minute]):
            if contract.option_type == "call":
                flow.call_premium += premium
                flow.call_volume += size * sign
            else:
                flow.put_premium += premium
                flow.put_volume += size * sign
            flow.delta += delta
        known = self.contracts[ticker].get(symbol)
        if known is None or int(known["executed_at"]) <= executed:
            self.contracts[ticker][symbol] = p

    def _news(self, p: dict[str, Any], received_at: int) -> None:
        headline = str(p["headline"])
        lowered = headline.lower()
        if any(word in lowered for word in NEGATIVE_WORDS):
            sentiment = "negative"
        elif any(word in lowered for word in POSITIVE_WORDS):
            sentiment = "positive"
        else:
            sentiment = "neutral"
        stamp = p.get("timestamp")
        created = stamp if isinstance(stamp, str) and stamp else iso_seconds(received_at)
        tickers = p.get("tickers")
        row: dict[str, Any] = {
            "created_at": created,
            "headline": headline,
            "is_major": bool(p.get("is_trump_ts")),
            "meta": {},
            "sentiment": sentiment,
            "source": p.get("source") or "",
            "tags": [],
            "tickers": list(tickers) if isinstance(tickers, list) else [],
        }
        self.news.append((received_at, row))

    # --- REST answers -------------------------------------------------------------------------------------------

    def flow_alert_rows(
        self,
        *,
        tickers: set[str] | None,
        newer_than: int | None,
        older_than: int | None,
        min_premium: Decimal | None,
        is_call: bool | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Matching alerts, newest first, at most ``limit``; the time bounds are exclusive, like UW's cursors."""
        rows = []
        for alert in sorted(self.alerts, key=lambda a: a.created_ms, reverse=True):
            if newer_than is not None and alert.created_ms <= newer_than:
                continue
            if older_than is not None and alert.created_ms >= older_than:
                continue
            if tickers is not None and alert.ticker not in tickers:
                continue
            if min_premium is not None and alert.premium < min_premium:
                continue
            if is_call is not None and alert.is_call != is_call:
                continue
            rows.append(alert.row)
            if len(rows) >= limit:
                break
        return rows

    def _latest_day(self, stamps: list[int]) -> date | None:
        return trading_day(max(stamps)) if stamps else None

    def spot_exposure_rows(self, ticker: str, day: date | None) -> list[dict[str, Any]]:
        """Per-minute GEX of ``day`` (default: the newest day with data), oldest first."""
        snapshots = self.gex.get(ticker, [])
        day = day or self._latest_day([ms for ms, _ in snapshots])
        rows = []
        for ms, p in sorted(snapshots, key=lambda item: item[0]):
            if trading_day(ms) != day:
                continue
            row: dict[str, Any] = {"time": iso_seconds(ms), "price": str(p.get("price", ""))}
            for greek in GEX_GREEKS:
                for source in GEX_SOURCES:
                    key = f"{greek}_per_one_percent_move_{source}"
                    row[key] = str(p.get(key) or "0")
            rows.append(row)
        return rows

    def greek_exposure_rows(self, ticker: str) -> list[dict[str, Any]]:
        """One row per day from the day's last GEX snapshot, oldest first.

        The socket gives net exposure only; the split into calls (positive) and puts (negative) takes
        ``|by OI| + |by volume|`` as the gross, so both sides are non-zero and ``call + put`` is the net by OI.
        """
        last: dict[date, dict[str, Any]] = {}
        for ms, p in sorted(self.gex.get(ticker, []), key=lambda item: item[0]):
            last[trading_day(ms)] = p
        rows = []
        for day, p in sorted(last.items()):
            row: dict[str, Any] = {"date": day.isoformat()}
            for greek in ("delta", "gamma", "charm", "vanna"):
                net = _decimal_or_zero(p.get(f"{greek}_per_one_percent_move_oi"))
                gross = abs(net) + abs(_decimal_or_zero(p.get(f"{greek}_per_one_percent_move_vol")))
                row[f"call_{greek}"] = plain((gross + net) / 2)
                row[f"put_{greek}"] = plain((net - gross) / 2)
            rows.append(row)
        return rows

    def stock_state(self, ticker: str) -> dict[str, Any] | None:
        """The newest day's state of ``ticker`` from its price frames; ``None`` before the first one."""
        ticks = self.prices.get(ticker)
        if not ticks:
            return None
        latest = max(ticks, key=lambda t: t.ms)
        day = trading_day(latest.ms)
        today = sorted((t for t in ticks if trading_day(t.ms) == day), key=lambda t: t.ms)
        earlier = [t for t in ticks if trading_day(t.ms) < day]
        regular = [t for t in today if market_time(t.ms) == "r"] or today
        # the socket has no previous close: the last close of an earlier day, else the first print of this one
        previous = max(earlier, key=lambda t: t.ms).close if earlier else today[0].close
        return {
            "open": str(regular[0].close),
            "high": str(max(t.close for t in regular)),
            "low": str(min(t.close for t in regular)),
            "close": str(latest.close),
            "prev_close": str(previous),
            "volume": sum(t.volume for t in regular if market_time(t.ms) == "r"),
            "total_volume": sum(t.volume for t in today),
            "market_time": market_time(latest.ms),
            "tape_time": iso_seconds(latest.ms),
        }

    def candle_rows(self, ticker: str, size: str, day: date | None, limit: int) -> list[dict[str, Any]]:
        """Candles of ``size`` from the price frames, newest first; ``total_volume`` is the day's volume so far."""
        ticks = sorted(self.prices.get(ticker, []), key=lambda t: t.ms)
        if day is not None:
            ticks = [t for t in ticks if trading_day(t.ms) == day]
        candles: dict[tuple[date, int], list[PriceTick]] = {}
        for tick in ticks:
            if size == "1d":
                start = int(datetime.combine(trading_day(tick.ms), datetime.min.time(), NEW_YORK).timestamp() * 1000)
            else:
                start = tick.ms - tick.ms % CANDLE_MS[size]
            candles.setdefault((trading_day(tick.ms), start), []).append(tick)
        rows = []
        day_volume: dict[date, int] = defaultdict(int)
        width = 24 * 60 * MINUTE_MS if size == "1d" else CANDLE_MS[size]
        for (candle_day, start), members in sorted(candles.items(), key=lambda item: item[0][1]):
            volume = sum(t.volume for t in members)
            day_volume[candle_day] += volume
            closes = [t.close for t in members]
            rows.append(
                {
                    "open": str(closes[0]),
                    "high": str(max(closes)),
                    "low": str(min(closes)),
                    "close": str(closes[-1]),
                    "start_time": iso_seconds(start),
                    "end_time": iso_seconds(start + width),
                    "volume": volume,
                    "total_volume": day_volume[candle_day],
                    "market_time": market_time(start),
                }
            )
        rows.reverse()
        return rows[:limit]

    def news_rows(self, *, ticker: str | None, major_only: bool, limit: int) -> list[dict[str, Any]]:
        rows = []
        for _, row in sorted(self.news, key=lambda item: item[0], reverse=True):
            if ticker is not None and ticker not in row["tickers"]:
                continue
            if major_only and not row["is_major"]:
                continue
            rows.append(row)
            if len(rows) >= limit:
                break
        return rows

    def _minutes_of(self, flows: dict[int, MinuteFlow], day: date | None) -> tuple[date | None, list[int]]:
        day = day or self._latest_day(list(flows))
        return day, sorted(minute for minute in flows if trading_day(minute) == day)

    def market_tide_rows(self, day: date | None) -> list[dict[str, Any]]:
        """Per minute of ``day`` (default: the newest), the day's net call and put premium so far, oldest first."""
        day, minutes = self._minutes_of(self.tide, day)
        rows = []
        calls, puts, volume = Decimal(0), Decimal(0), 0
        for minute in minutes:
            flow = self.tide[minute]
            calls += flow.call_premium
            puts += flow.put_premium
            volume += flow.call_volume - flow.put_volume
            rows.append(
                {
                    "date": str(day),
                    "timestamp": new_york(minute).isoformat(),
                    "net_call_premium": money(calls),
                    "net_put_premium": money(puts),
                    "net_volume": volume,
                }
            )
        return rows

    def net_prem_tick_rows(self, ticker: str, day: date | None) -> list[dict[str, Any]]:
        """Per minute of ``day`` (default: the newest), that minute's net premium of ``ticker``, oldest first."""
        flows = self.ticks.get(ticker, {})
        day, minutes = self._minutes_of(flows, day)
        return [
            {
                "date": str(day),
                "tape_time": iso_seconds(minute),
                "net_call_premium": money(flows[minute].call_premium),
                "net_put_premium": money(flows[minute].put_premium),
                "net_call_volume": flows[minute].call_volume,
                "net_put_volume": flows[minute].put_volume,
                "net_delta": money(flows[minute].delta),
            }
            for minute in minutes
        ]

    def option_contract_rows(self, ticker: str, limit: int) -> list[dict[str, Any]]:
        """One row per contract traded so far, from its newest trade, by volume (largest first)."""
        rows: list[dict[str, Any]] = [
            {
                "option_symbol": symbol,
                "volume": int(p.get("volume") or 0),
                "open_interest": int(p.get("open_interest") or 0),
                "implied_volatility": str(p.get("implied_volatility") or ""),
                "nbbo_bid": str(p.get("nbbo_bid") or ""),
                "nbbo_ask": str(p.get("nbbo_ask") or ""),
                "last_price": str(p.get("price") or ""),
            }
            for symbol, p in self.contracts.get(ticker, {}).items()
        ]
        rows.sort(key=lambda row: (-row["volume"], row["option_symbol"]))
        return rows[:limit]


def _decimal_or_zero(value: object) -> Decimal:
    try:
        return decimal_of(value)
    except ValueError:
        return Decimal(0)
