"""Factories for the normalized feed rows the analytics read, and a builder for whole constructed scenarios."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from decimal import Decimal

import factory

from apps.core import occ
from apps.ingestion.models import FlowAlert, GexSnapshot, GexStrike, OptionTrade, PriceTick

_ids = itertools.count(1)


class FlowAlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FlowAlert

    uw_id = factory.LazyFunction(lambda: f"alert-{next(_ids):06d}")
    rule_name = "RepeatedHits"
    ticker = "SPY"
    expiry = date(2026, 11, 20)
    right = "C"
    strike = Decimal("600")
    option_symbol = factory.LazyAttribute(lambda o: occ.build(o.ticker, o.expiry, o.right, o.strike))
    underlying_price = Decimal("600")
    price = Decimal("1.50")
    bid = Decimal("1.48")
    ask = Decimal("1.52")
    volume = 5000
    total_size = 300
    total_premium = Decimal("120000")
    total_ask_side_prem = Decimal("100000")
    total_bid_side_prem = Decimal("20000")
    has_sweep = True
    all_opening_trades = True
    open_interest = 10000
    trade_count = 5
    executed_at = datetime(2026, 11, 20, 16, 0)


class OptionTradeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OptionTrade

    uw_id = factory.LazyFunction(lambda: f"trade-{next(_ids):06d}")
    ticker = "SPY"
    expiry = date(2026, 11, 20)
    right = "C"
    strike = Decimal("602")
    option_symbol = factory.LazyAttribute(lambda o: occ.build(o.ticker, o.expiry, o.right, o.strike))
    price = Decimal("1.52")
    size = 20
    premium = factory.LazyAttribute(lambda o: o.price * o.size * 100)
    nbbo_bid = Decimal("1.48")
    nbbo_ask = Decimal("1.52")
    underlying_price = Decimal("600")
    volume = 3000
    open_interest = 8000
    implied_volatility = Decimal("0.18")
    delta = Decimal("0.40")
    gamma = Decimal("0.05")
    side = "ask"
    executed_at = datetime(2026, 11, 20, 16, 0)


class PriceTickFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PriceTick

    ticker = "SPY"
    ts = datetime(2026, 11, 20, 14, 30)
    close = Decimal("600")
    volume = 100000


class GexSnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GexSnapshot

    ticker = "SPY"
    ts = datetime(2026, 11, 20, 16, 0)
    price = Decimal("600")
    gamma_oi = Decimal("-500000000")
    gamma_dir = Decimal("-100000000")


class GexStrikeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GexStrike

    ticker = "SPY"
    ts = datetime(2026, 11, 20, 16, 0)
    strike = Decimal("600")
    call_gamma_oi = Decimal("0")
    put_gamma_oi = Decimal("0")
    natural_key = factory.LazyAttribute(lambda o: f"{o.ticker}|{o.ts.isoformat()}|{o.strike}|")


def price_path(*, ticker: str, start: datetime, end: datetime, first: Decimal, step: Decimal) -> list[PriceTick]:
    """One tick a minute from ``start`` to ``end`` inclusive, drifting by ``step`` each minute."""
    ticks = []
    moment, price = start, first
    while moment <= end:
        ticks.append(PriceTick(ticker=ticker, ts=moment, close=price, volume=100000))
        moment += timedelta(minutes=1)
        price += step
    return PriceTick.objects.bulk_create(ticks)


def flow_scenario(
    *,
    ticker: str,
    as_of: datetime,
    expiry: date,
    direction: str,
    spot: Decimal = Decimal("600"),
    alerts: int = 4,
    session_open: datetime | None = None,
) -> None:
    """A decisive flow episode ending at ``as_of``: ask-side sweeps on calls (bullish) or puts (bearish) in the last
    15 minutes, matching ask-side prints on a ~0.40-delta contract and its mirror, a rising (falling) price since the
    open and negative dealer gamma."""
    bullish = direction == "bullish"
    right = "C" if bullish else "P"
    strike = spot + 2 if bullish else spot - 2
    opened = session_open or as_of.replace(hour=14, minute=30, second=0, microsecond=0)
    step = Decimal("0.02") if bullish else Decimal("-0.02")
    minutes = int((as_of - opened).total_seconds() // 60)
    price_path(ticker=ticker, start=opened, end=as_of, first=spot - step * minutes, step=step)
    for i in range(alerts):
        FlowAlertFactory(
            ticker=ticker,
            expiry=expiry,
            right=right,
            strike=strike,
            underlying_price=spot,
            executed_at=as_of - timedelta(minutes=2 + 3 * i),
        )
    for i in range(12):
        OptionTradeFactory(
            ticker=ticker,
            expiry=expiry,
            right=right,
            strike=strike,
            delta=Decimal("0.41") if bullish else Decimal("-0.41"),
            underlying_price=spot,
            executed_at=as_of - timedelta(seconds=30 + 60 * i),
        )
    # The other side prints too, but at mid, so it carries no lean.
    OptionTradeFactory(
        ticker=ticker,
        expiry=expiry,
        right="P" if bullish else "C",
        strike=spot - 2 if bullish else spot + 2,
        delta=Decimal("-0.39") if bullish else Decimal("0.39"),
        side="mid",
        underlying_price=spot,
        executed_at=as_of - timedelta(seconds=45),
    )
    GexSnapshotFactory(ticker=ticker, ts=as_of - timedelta(minutes=1), price=spot)
