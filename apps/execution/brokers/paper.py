"""The paper broker: fills marketable limit orders against the recorded quotes, never sends anything anywhere.

Prices come from the hash ``latest:uw:quote:{OCC}`` that ingestion keeps, or, when that is missing, the newest
``uw_option_trades`` row of the contract.  A buy fills at ``mid + share x half spread`` and a sell at
``mid - share x half spread``, with ``share = PAPER_FILL_SPREAD_SHARE`` (1: the far side, the price a real trader
pays; 0: the mid).  An order is rejected, with the reason, when there is no quote, the quote is older than
``PAPER_QUOTE_MAX_AGE_SECONDS`` of platform time, or the limit does not reach the fill price (paper orders never rest).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import cast

from django.conf import settings

from apps.core import clock, store
from apps.core.events import deterministic_id
from apps.core.money import CENT, InvalidAmount, to_decimal_or_none
from apps.execution.brokers.base import Broker, BrokerFill, BrokerQuote, OrderRequest, SubmitResult, quote_max_age

DEFAULT_COMMISSION_PER_CONTRACT = Decimal("0.65")
QUOTE_KEY = "latest:uw:quote:{}"


def commission_per_contract() -> Decimal:
    """``PAPER_COMMISSION_PER_CONTRACT`` (dollars per contract per side), 0.65 unless set."""
    return Decimal(str(getattr(settings, "PAPER_COMMISSION_PER_CONTRACT", DEFAULT_COMMISSION_PER_CONTRACT)))


def _parse_ts(raw: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


def _price(raw: object) -> Decimal | None:
    try:
        value = to_decimal_or_none(raw)
    except InvalidAmount:
        return None
    return value if value is not None and value >= 0 else None


class PaperBroker(Broker):
    name = "paper"

    def __init__(self, *, spread_share: Decimal | None = None, max_age: timedelta | None = None) -> None:
        self.spread_share = settings.PAPER_FILL_SPREAD_SHARE if spread_share is None else spread_share
        self.max_age = quote_max_age() if max_age is None else max_age

    # --- quotes -----------------------------------------------------------------------------------------------------
    def quote(self, option_symbol: str) -> BrokerQuote | None:
        return self._quote_from_redis(option_symbol) or self._quote_from_trades(option_symbol)

    def _quote_from_redis(self, option_symbol: str) -> BrokerQuote | None:
        data = cast(dict[str, str], store.get_redis().hgetall(QUOTE_KEY.format(option_symbol)))  # decode_responses
        ts = _parse_ts(data.get("ts", "")) if data else None
        if ts is None:
            return None
        bid, ask, last = _price(data.get("bid")), _price(data.get("ask")), _price(data.get("last"))
        if bid is None and ask is None and last is None:
            return None
        return BrokerQuote(option_symbol=option_symbol, bid=bid, ask=ask, last=last, ts=ts, source="redis")

    def _quote_from_trades(self, option_symbol: str) -> BrokerQuote | None:
        from apps.ingestion.models import OptionTrade

        row = (
            OptionTrade.objects.filter(option_symbol=option_symbol, executed_at__lte=clock.now())
            .order_by("-executed_at", "-id")
            .only("nbbo_bid", "nbbo_ask", "price", "executed_at")
            .first()
        )
        if row is None:
            return None
        return BrokerQuote(
            option_symbol=option_symbol,
            bid=row.nbbo_bid,
            ask=row.nbbo_ask,
            last=row.price,
            ts=row.executed_at,
            source="uw_option_trades",
        )

    def fill_price(self, quote: BrokerQuote, side: str) -> Decimal | None:
        """Where a marketable order of ``side`` fills: a share of the half spread away from the mid, in cents
        rounded against the trader (a buy rounds up, a sell down)."""
        if quote.bid is not None and quote.ask is not None and quote.ask >= quote.bid:
            mid = (quote.bid + quote.ask) / 2
            half = (quote.ask - quote.bid) / 2
            if side == "buy":
                return (mid + self.spread_share * half).quantize(CENT, rounding=ROUND_CEILING)
            return (mid - self.spread_share * half).quantize(CENT, rounding=ROUND_FLOOR)
        if side == "buy" and quote.ask is not None:
            return quote.ask
        if side == "sell" and quote.bid is not None:
            return quote.bid
        return quote.last

    # --- orders -----------------------------------------------------------------------------------------------------
    def submit(self, order: OrderRequest) -> SubmitResult:
        broker_order_id = f"paper-{order.client_order_id[:24]}"
        quote = self.quote(order.option_symbol)
        if quote is None:
            return SubmitResult(accepted=False, reject_reason=f"no quote for {order.option_symbol}")
        if self.is_stale(quote):
            age = int((clock.now() - quote.ts).total_seconds())
            return SubmitResult(
                accepted=False,
                reject_reason=(
                    f"stale quote for {order.option_symbol}: {age}s old"
                    f" (from {quote.source} at {quote.ts.isoformat()}), limit is {int(self.max_age.total_seconds())}s"
                ),
                quote=quote,
            )
        price = self.fill_price(quote, order.side)
        if price is None:
            return SubmitResult(accepted=False, reject_reason=f"no price on the {order.side} side", quote=quote)
        marketable = order.limit_price >= price if order.side == "buy" else order.limit_price <= price
        if not marketable:
            far = "ask" if order.side == "buy" else "bid"
            return SubmitResult(
                accepted=False,
                reject_reason=(
                    f"limit {order.limit_price} is not marketable: {order.side} fills at {price}"
                    f" (bid {quote.bid}, {far} side share {self.spread_share})"
                ),
                quote=quote,
            )
        fill = BrokerFill(
            # The same client order id always yields the same execution id: a resubmission records no second fill.
            exec_id=f"paper-{deterministic_id('paper-fill', order.client_order_id, length=40)}",
            price=price,
            quantity=order.quantity,
            commission=commission_per_contract() * order.quantity,
            at=clock.now(),
        )
        return SubmitResult(accepted=True, broker_order_id=broker_order_id, fills=(fill,), quote=quote)

    def cancel(self, *, broker_order_id: str) -> bool:
        # Paper orders fill or are rejected at submission; nothing is ever left working.
        return True
