"""OCC option symbols without padding: ``ROOT YYMMDD C|P STRIKE*1000`` (``SPY261127C00600000``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

OCC_RE = re.compile(r"^([A-Z.]+?)(\d{6})([CP])(\d{8})$")


class InvalidOptionSymbol(ValueError):
    """Not an OCC option symbol (ROOT YYMMDD C|P STRIKE*1000)."""


@dataclass(frozen=True, order=True)
class OptionSymbol:
    root: str
    expiry: date
    right: str  # "C" or "P"
    strike: Decimal

    @property
    def is_call(self) -> bool:
        return self.right == "C"

    @property
    def occ(self) -> str:
        return build(self.root, self.expiry, self.right, self.strike)

    def __str__(self) -> str:
        return self.occ


def parse(symbol: str) -> OptionSymbol:
    match = OCC_RE.match(symbol.strip().upper() if isinstance(symbol, str) else "")
    if not match:
        raise InvalidOptionSymbol(f"not an OCC option symbol: {symbol!r}")
    root, ymd, right, strike = match.groups()
    try:
        expiry = date(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:6]))
    except ValueError as exc:
        raise InvalidOptionSymbol(f"bad expiry in option symbol {symbol!r}") from exc
    return OptionSymbol(root=root, expiry=expiry, right=right, strike=(Decimal(strike) / 1000).normalize())


def build(root: str, expiry: date, right: str, strike: Decimal | int | str) -> str:
    right = right.upper()[:1]
    if right not in ("C", "P"):
        raise InvalidOptionSymbol(f"right must be C or P, got {right!r}")
    millis = Decimal(str(strike)) * 1000
    if millis != millis.to_integral_value() or millis < 0 or millis >= Decimal(10) ** 8:
        raise InvalidOptionSymbol(f"strike {strike} cannot be written in an OCC symbol")
    return f"{root.upper()}{expiry:%y%m%d}{right}{int(millis):08d}"
