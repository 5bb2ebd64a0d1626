"""WebSocket frames written straight to the transport, and the pre-serialised option-trade frames of the firehose.

Server-to-client frames are unmasked, so a text frame is ``0x81``, the length and the payload: building them here and
writing many per ``transport.write`` avoids websockets' per-message work, which is what limits a Python sender.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

_ID = "@@firehose-id@@"
_TS = "@@firehose-created-at@@"

# A trade shaped like the documented option_trades payload, for a firehose on a stand-in without a session.
DEFAULT_TRADE: dict[str, Any] = {
    "id": "",
    "underlying_symbol": "SPY",
    "option_symbol": "SPY261120C00600000",
    "option_type": "call",
    "strike": "600",
    "expiry": "2026-11-20",
    "executed_at": 0,
    "created_at": 0,
    "price": "3.91",
    "size": 5,
    "premium": "1955.00",
    "nbbo_bid": "3.89",
    "nbbo_ask": "3.93",
    "ewma_nbbo_bid": "3.89",
    "ewma_nbbo_ask": "3.93",
    "underlying_price": "599.86",
    "volume": 6191,
    "open_interest": 39840,
    "implied_volatility": "0.144949",
    "delta": "0.51",
    "gamma": "0.0123",
    "theta": "-0.41",
    "vega": "0.08",
    "rho": "0.01",
    "theo": "3.9069",
    "tags": ["ask_side", "bullish"],
    "report_flags": [],
    "trade_code": "auto",
    "exchange": "XPHO",
    "ask_vol": 5,
    "bid_vol": 0,
    "no_side_vol": 0,
    "mid_vol": 0,
    "multi_vol": 0,
    "stock_multi_vol": 0,
}


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        return b"\x81" + bytes((size,)) + payload
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


@dataclass(frozen=True, slots=True)
class TradeTemplate:
    """A trade frame split around its ``id`` and ``created_at`` so each copy costs two joins, not a dumps."""

    channel: str
    head: bytes
    middle: bytes
    tail: bytes
    id_first: bool

    def frame(self, trade_id: bytes, created_at: bytes) -> bytes:
        first, second = (trade_id, created_at) if self.id_first else (created_at, trade_id)
        return text_frame(b"".join((self.head, first, self.middle, second, self.tail)))


def trade_template(payload: Mapping[str, Any] | bytes) -> TradeTemplate:
    """The template of one option-trade payload (a mapping or its JSON); ``ValueError`` when it is not a trade."""
    trade = orjson.loads(payload) if isinstance(payload, bytes | bytearray) else dict(payload)
    if not isinstance(trade, dict) or not isinstance(trade.get("underlying_symbol"), str):
        raise ValueError("a firehose payload must be an option_trades payload with an underlying_symbol")
    trade["id"] = _ID
    trade["created_at"] = _TS
    text = orjson.dumps([f"option_trades:{trade['underlying_symbol']}", trade])
    id_mark, ts_mark = orjson.dumps(_ID), orjson.dumps(_TS)
    id_at, ts_at = text.index(id_mark), text.index(ts_mark)
    first, second = (id_mark, ts_mark) if id_at < ts_at else (ts_mark, id_mark)
    head, rest = text.split(first, 1)
    middle, tail = rest.split(second, 1)
    return TradeTemplate(f"option_trades:{trade['underlying_symbol']}", head, middle, tail, id_at < ts_at)


def trade_templates(payloads: Sequence[Mapping[str, Any] | bytes]) -> list[TradeTemplate]:
    return [trade_template(payload) for payload in payloads]


def firehose_id(run: int, index: int) -> bytes:
    """A UUID-shaped id unique per (run, index), quoted for JSON."""
    return b'"%08x-0000-4000-8000-%012x"' % (run, index)
