"""Money and prices are ``Decimal``: never float arithmetic, never text arithmetic."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0")
CONTRACT_MULTIPLIER = 100


class InvalidAmount(ValueError):
    """Not a finite number: money is never guessed."""


def to_decimal(value: object) -> Decimal:
    """A decimal from a decimal string, an int or a float (through its shortest repr, so 0.1 stays 0.1)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise InvalidAmount(f"a boolean is not an amount: {value!r}")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidAmount("empty string is not an amount")
        try:
            result = Decimal(text)
        except InvalidOperation as exc:
            raise InvalidAmount(f"not a number: {value!r}") from exc
    else:
        raise InvalidAmount(f"not a number: {value!r}")
    if not result.is_finite():
        raise InvalidAmount(f"not a finite number: {value!r}")
    return result


def to_decimal_or_none(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    return to_decimal(value)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def premium(price: Decimal, contracts: int, multiplier: int = CONTRACT_MULTIPLIER) -> Decimal:
    """Dollar premium of ``contracts`` options at ``price`` per share."""
    return price * contracts * multiplier
