"""What a Claude call costs: the one place model prices live.

Prices in US dollars per million tokens (Anthropic's published list prices for Claude Haiku 4.5: $1 input,
$5 output).  A model missing here is priced as unknown (``None``) rather than guessed.
"""

from __future__ import annotations

from decimal import Decimal

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.000001")

# model id (or alias) -> (input $/MTok, output $/MTok)
PRICES_PER_MILLION_TOKENS: dict[str, tuple[Decimal, Decimal]] = {
    "claude-haiku-4-5": (Decimal("1"), Decimal("5")),
    "claude-haiku-4-5-20251001": (Decimal("1"), Decimal("5")),
}


def call_cost(*, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    """Dollar cost of one call, or None when the model's price is not known here."""
    prices = PRICES_PER_MILLION_TOKENS.get(model)
    if prices is None:
        return None
    input_price, output_price = prices
    cost = (Decimal(input_tokens) * input_price + Decimal(output_tokens) * output_price) / MILLION
    return cost.quantize(COST_QUANTUM)
