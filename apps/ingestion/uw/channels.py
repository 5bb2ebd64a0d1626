"""The Unusual Whales socket channels this platform knows, and what each one becomes.

A channel name is either bare (``flow-alerts``, ``news``) or a family with a ticker suffix (``price:SPY``).  Channels
with a table are normalized; documented channels without one yet are archived raw only; anything else is unknown and
quarantined, because a name we have never seen is drift worth a human look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class ChannelKind(StrEnum):
    FLOW_ALERT = "flow_alert"
    OPTION_TRADE = "option_trade"
    PRICE = "price"
    GEX = "gex"
    GEX_STRIKE = "gex_strike"
    GEX_STRIKE_EXPIRY = "gex_strike_expiry"
    NEWS = "news"
    RAW_ONLY = "raw_only"


# Bare channel names (no ticker suffix).
BARE_CHANNELS: dict[str, ChannelKind] = {
    "flow-alerts": ChannelKind.FLOW_ALERT,
    "option_trades": ChannelKind.OPTION_TRADE,
    "news": ChannelKind.NEWS,
    "lit_trades": ChannelKind.RAW_ONLY,
    "off_lit_trades": ChannelKind.RAW_ONLY,
    "market_tide": ChannelKind.RAW_ONLY,
    "interval_flow": ChannelKind.RAW_ONLY,
    "trading_halts": ChannelKind.RAW_ONLY,
}

# Families that take a ``:TICKER`` suffix.
TICKER_FAMILIES: dict[str, ChannelKind] = {
    "option_trades": ChannelKind.OPTION_TRADE,
    "price": ChannelKind.PRICE,
    "gex": ChannelKind.GEX,
    "gex_strike": ChannelKind.GEX_STRIKE,
    "gex_strike_expiry": ChannelKind.GEX_STRIKE_EXPIRY,
    "net_flow": ChannelKind.RAW_ONLY,
}

# Tickers are short upper-case symbols; the suffix also becomes a Redis key part and a 12-character column.
TICKER_RE = re.compile(r"^[A-Z0-9][A-Z0-9./^-]{0,11}$")


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    kind: ChannelKind
    ticker: str | None  # the suffix of a ticker channel


class UnknownChannel(ValueError):
    """A channel name the Unusual Whales documentation does not list; its frame is quarantined."""


def channel_resolve(name: str) -> Channel:
    """The documented channel ``name`` stands for; ``UnknownChannel`` when it is not one."""
    kind = BARE_CHANNELS.get(name)
    if kind is not None:
        return Channel(name=name, kind=kind, ticker=None)
    family, sep, ticker = name.partition(":")
    kind = TICKER_FAMILIES.get(family) if sep else None
    if kind is None:
        raise UnknownChannel(f"unknown channel {name[:80]!r}")
    if not TICKER_RE.match(ticker):
        raise UnknownChannel(f"unknown channel {name[:80]!r}: {ticker[:40]!r} is not a ticker")
    return Channel(name=name, kind=kind, ticker=ticker)
