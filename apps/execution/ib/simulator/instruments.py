"""What the simulator trades: options keyed by OCC symbol, stocks by ticker, each with a stable conId."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from apps.core import occ

OPTION_MULTIPLIER = 100


class UnknownInstrument(ValueError):
    """A contract the simulator cannot map to an OCC symbol or a ticker (TWS answers error 200)."""


@dataclass(frozen=True)
class Instrument:
    key: str  # OCC symbol for an option, ticker for a stock
    sec_type: str  # "OPT" / "STK"
    symbol: str
    expiry: str  # YYYYMMDD, "" for a stock
    strike: Decimal | None
    right: str  # "C" / "P" / ""
    multiplier: int

    @property
    def con_id(self) -> int:
        return con_id_for(self.key)

    @property
    def local_symbol(self) -> str:
        if self.sec_type != "OPT":
            return self.symbol
        # IB's local symbol of an option is the OCC symbol with the root padded to six characters.
        return f"{self.symbol:<6}{self.key[len(self.symbol) :]}"

    @property
    def trading_class(self) -> str:
        return self.symbol

    @property
    def multiplier_text(self) -> str:
        return str(self.multiplier) if self.sec_type == "OPT" else ""

    @property
    def strike_text(self) -> str:
        return format(self.strike.normalize(), "f") if self.strike is not None else "0"


def con_id_for(key: str) -> int:
    """A deterministic positive 31-bit conId per key (the same in every run and every message)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2_000_000_000 + 100_000


def instrument_for_key(key: str) -> Instrument:
    try:
        parsed = occ.parse(key)
    except occ.InvalidOptionSymbol:
        ticker = key.strip().upper()
        if not ticker or not ticker.replace(".", "").isalnum():
            raise UnknownInstrument(f"not an OCC symbol or a ticker: {key!r}") from None
        return Instrument(key=ticker, sec_type="STK", symbol=ticker, expiry="", strike=None, right="", multiplier=1)
    return Instrument(
        key=parsed.occ,
        sec_type="OPT",
        symbol=parsed.root,
        expiry=f"{parsed.expiry:%Y%m%d}",
        strike=parsed.strike,
        right=parsed.right,
        multiplier=OPTION_MULTIPLIER,
    )


def instrument_from_wire(
    *, con_id: str, symbol: str, sec_type: str, expiry: str, strike: str, right: str, known: dict[int, str]
) -> Instrument:
    """The instrument a client's contract fields name; a bare conId is looked up among ``known`` (conId -> key)."""
    sec_type = sec_type.upper()
    if not symbol and con_id not in ("", "0"):
        try:
            key = known.get(int(con_id))
        except ValueError:
            key = None
        if key is None:
            raise UnknownInstrument(f"unknown conId {con_id}")
        return instrument_for_key(key)
    if sec_type == "STK":
        return instrument_for_key(symbol)
    if sec_type != "OPT":
        raise UnknownInstrument(f"security type {sec_type!r} is not simulated")
    text = expiry.strip()[:8]
    if len(text) != 8 or not text.isdigit():
        raise UnknownInstrument(f"option expiry must be YYYYMMDD, got {expiry!r}")
    try:
        expiry_date = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        strike_value = Decimal(strike or "0").normalize()
        right_letter = {"CALL": "C", "PUT": "P"}.get(right.upper(), right.upper())
        key = occ.build(symbol, expiry_date, right_letter, strike_value)
    except (ValueError, InvalidOperation, occ.InvalidOptionSymbol) as exc:
        raise UnknownInstrument(f"cannot map option {symbol} {expiry} {strike} {right}: {exc}") from exc
    return instrument_for_key(key)
