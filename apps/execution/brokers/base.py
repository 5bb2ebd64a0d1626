"""The broker interface the execution engine talks to: submit, cancel, quote.

Adapters must treat ``client_order_id`` as the identity of an order: submitting the same id twice must not create a
second order (the paper broker answers with the same fills; the IB adapter will look the order up by ``orderRef``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings

from apps.core import clock

DEFAULT_QUOTE_MAX_AGE_SECONDS = 300


def quote_max_age() -> timedelta:
    """How old a quote may be (platform time) and still price an order: ``PAPER_QUOTE_MAX_AGE_SECONDS``, 300 s."""
    return timedelta(seconds=int(getattr(settings, "PAPER_QUOTE_MAX_AGE_SECONDS", DEFAULT_QUOTE_MAX_AGE_SECONDS)))


@dataclass(frozen=True)
class BrokerQuote:
    option_symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    ts: datetime
    source: str  # where the quote came from (redis hash, option trade row, broker feed)

    @property
    def mid(self) -> Decimal | None:
        if self.bid is not None and self.ask is not None and self.ask >= self.bid and self.ask > 0:
            return (self.bid + self.ask) / 2
        return self.last

    @property
    def mark(self) -> Decimal | None:
        """The price a position is valued at: the mid when there is a two-sided market, else the last trade."""
        return self.mid


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    option_symbol: str
    side: str  # "buy" / "sell"
    quantity: int
    limit_price: Decimal


@dataclass(frozen=True)
class BrokerFill:
    exec_id: str
    price: Decimal
    quantity: int
    commission: Decimal
    at: datetime


@dataclass(frozen=True)
class SubmitResult:
    accepted: bool
    broker_order_id: str = ""
    reject_reason: str = ""
    fills: tuple[BrokerFill, ...] = field(default_factory=tuple)
    quote: BrokerQuote | None = None


class Broker(ABC):
    name: str
    max_age: timedelta

    def is_stale(self, quote: BrokerQuote) -> bool:
        """True when ``quote`` is older than the broker accepts for pricing (a quote from the future is fresh)."""
        return clock.now() - quote.ts > self.max_age

    def submit_prepare(self, *, order_id: int) -> None:
        """Called inside the transaction that marks the order submitted, before ``submit``: an adapter that hands
        orders to another process records the hand-over here, so no moment exists in which the order is submitted
        and nothing is on its way (the paper broker needs nothing)."""
        return None

    @abstractmethod
    def submit(self, order: OrderRequest) -> SubmitResult:
        """Send ``order``; accepted orders may come back with fills at once (the paper broker always does)."""

    @abstractmethod
    def cancel(self, *, broker_order_id: str) -> bool:
        """Ask the broker to cancel; True when the broker no longer works the order."""

    @abstractmethod
    def quote(self, option_symbol: str) -> BrokerQuote | None:
        """The newest quote the broker knows for ``option_symbol`` (possibly stale), or None."""
