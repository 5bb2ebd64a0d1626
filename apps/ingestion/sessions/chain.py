"""One underlying's option chain for the day: which contracts trade, their implied volatility, quotes and prints.

Prices are kept in integer cents from the quote onwards, so ``premium == price * size * 100`` holds exactly in the
decimal strings the feed carries.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from apps.core import calendar, occ

from .blackscholes import Greeks, black_scholes
from .market import MS, DayClock, TickerProfile

BUCKETS = ("0dte", "1dte", "14d")
RATE = 0.04
YEAR_MS = 365.0 * 86_400.0 * MS
WING_STRIKES = 6  # the chain spans the at-the-money strike +- this many $1 strikes
# The strikes that print every minute, as offsets from the at-the-money strike (calls, puts). Kept narrow on purpose:
# a print for every contract of a +-6 strike chain every minute would be ~95,000 lines a day, too many to replay;
# the rest of the chain prints now and then, and an alerted contract joins the every-minute set for a while.
CORE_OFFSETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "0dte": ((0, 1, 2), (-2, -1, 0)),
    "1dte": ((0, 1), (-1, 0)),
    "14d": ((0, 1), (-1, 0)),
}
BUCKET_IV = {"0dte": 1.12, "1dte": 1.05, "14d": 1.0}
BUCKET_VOLUME = {"0dte": 1.0, "1dte": 0.35, "14d": 0.12}
EXCHANGES = ("XCBO", "XPHO", "GMNI", "XISX", "ARCX", "AMXO", "BATO", "EDGO", "MIAX", "XBOX", "C2OX", "MPRL", "EMLD")
SIDES = ("ask", "bid", "mid", "no_side")


def expiries_for(day: date) -> dict[str, date]:
    """Today (0DTE), the next trading day (1DTE) and a Friday 14-30 calendar days out that trades (14D+)."""
    swing = None
    for days_out in range(14, 31):
        candidate = day + timedelta(days=days_out)
        if candidate.weekday() == 4 and calendar.is_trading_day(candidate):
            swing = candidate
            break
    if swing is None:  # two Friday holidays in a row do not happen, but a trading day 14+ days out always exists
        swing = calendar.next_trading_day(day + timedelta(days=13))
    return {"0dte": day, "1dte": calendar.next_trading_day(day), "14d": swing}


@dataclass(frozen=True, slots=True)
class Contract:
    ticker: str
    bucket: str
    expiry: date
    is_call: bool
    strike: int

    @property
    def occ(self) -> str:
        return _occ_symbol(self.ticker, self.expiry, self.is_call, self.strike)


@functools.cache
def _occ_symbol(ticker: str, expiry: date, is_call: bool, strike: int) -> str:
    # a day asks for the same few hundred symbols tens of thousands of times
    return occ.build(ticker, expiry, "C" if is_call else "P", strike)


@dataclass(frozen=True, slots=True)
class Quote:
    spot: float
    iv: float
    greeks: Greeks
    bid_cents: int
    ask_cents: int


def cents_text(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


class Chain:
    """The day's option chain of one underlying, priced off its planned path."""

    def __init__(
        self,
        *,
        ticker: str,
        profile: TickerProfile,
        clock: DayClock,
        path: list[float],
        iv_level: float,
        seed_key: str,
    ) -> None:
        self.ticker = ticker
        self.profile = profile
        self.clock = clock
        self.path = path
        self.iv_level = iv_level
        self.seed_key = seed_key
        self.expiries = expiries_for(clock.day)
        self.open_price = self.spot(clock.open_ms)
        self._expiry_close_ms = {}
        for bucket, expiry in self.expiries.items():
            session = calendar.session_for(expiry)
            assert session is not None  # expiries_for only returns trading days
            self._expiry_close_ms[bucket] = int(session.options_close.timestamp() * MS)
        self._open_interest: dict[str, int] = {}
        self._daily_volume: dict[str, float] = {}
        self._prints: dict[str, tuple[list[int], list[int]]] = {}  # occ -> (times, sizes) of every print
        self._sets: dict[int, tuple[list[Contract], list[Contract]]] = {}

    # --- the underlying -------------------------------------------------------------------------------------------
    def spot(self, ms: int) -> float:
        index = (ms - self.clock.grid_start_ms) // MS
        return self.path[min(max(index, 0), len(self.path) - 1)]

    def atm_strike(self, ms: int) -> int:
        return round(self.spot(ms))

    # --- which contracts trade ------------------------------------------------------------------------------------
    def contract(self, bucket: str, is_call: bool, strike: int) -> Contract:
        return Contract(self.ticker, bucket, self.expiries[bucket], is_call, strike)

    def core(self, ms: int) -> list[Contract]:
        return self._strike_sets(self.atm_strike(ms))[0]

    def wings(self, ms: int) -> list[Contract]:
        return self._strike_sets(self.atm_strike(ms))[1]

    def _strike_sets(self, atm: int) -> tuple[list[Contract], list[Contract]]:
        """The every-minute set and the rest of the +-6 strike chain around ``atm`` (cached: asked every minute)."""
        cached = self._sets.get(atm)
        if cached is None:
            core: list[Contract] = []
            for bucket, (call_offsets, put_offsets) in CORE_OFFSETS.items():
                core.extend(self.contract(bucket, True, atm + k) for k in call_offsets)
                core.extend(self.contract(bucket, False, atm + k) for k in put_offsets)
            members = set(core)
            wings = [
                c
                for bucket in BUCKETS
                for k in range(-WING_STRIKES, WING_STRIKES + 1)
                for is_call in (True, False)
                if (c := self.contract(bucket, is_call, atm + k)) not in members
            ]
            cached = self._sets[atm] = (core, wings)
        return cached

    # --- pricing --------------------------------------------------------------------------------------------------
    def years_to_expiry(self, bucket: str, ms: int) -> float:
        return max(self._expiry_close_ms[bucket] - ms, 0) / YEAR_MS

    def implied_vol(self, contract: Contract, ms: int, spot: float) -> float:
        """ATM level by bucket, higher as the market falls (spot-vol correlation), with a put skew and a smile."""
        move = math.log(spot / self.open_price)
        atm = self.iv_level * BUCKET_IV[contract.bucket] * min(max(math.exp(-4.0 * move), 0.75), 1.6)
        years = max(self.years_to_expiry(contract.bucket, ms), 1.0 / (365.0 * 24.0))
        x = math.log(contract.strike / spot) / (atm * math.sqrt(years))
        x = min(max(x, -3.0), 3.0)
        return min(max(atm * (1.0 - 0.09 * x + 0.025 * x * x), 0.04), 1.5)

    def quote(self, contract: Contract, ms: int, *, iv_jitter: float = 0.0) -> Quote:
        spot = self.spot(ms)
        iv = self.implied_vol(contract, ms, spot) * (1.0 + iv_jitter)
        greeks = black_scholes(
            spot=spot,
            strike=float(contract.strike),
            years=self.years_to_expiry(contract.bucket, ms),
            vol=iv,
            rate=RATE,
            is_call=contract.is_call,
        )
        # the spread widens with the price and with the distance from the money, in whole cents
        strikes_away = abs(contract.strike - spot)
        spread = max(1, round(1.0 + 0.6 * greeks.price + 0.3 * strikes_away))
        theo_cents = greeks.price * 100.0
        bid = max(0, math.floor(theo_cents - spread / 2.0))
        ask = max(bid + spread, 1, math.ceil(theo_cents))
        return Quote(spot=spot, iv=iv, greeks=greeks, bid_cents=bid, ask_cents=ask)

    # --- volume and open interest ---------------------------------------------------------------------------------
    def _contract_rng(self, contract: Contract, purpose: str) -> random.Random:
        return random.Random(f"{self.seed_key}|{purpose}|{contract.occ}")

    def daily_volume(self, contract: Contract) -> float:
        key = contract.occ
        if key not in self._daily_volume:
            distance = abs(contract.strike - self.open_price) / (self.open_price * 0.006)
            scale = self.profile.strike_volume * BUCKET_VOLUME[contract.bucket] * math.exp(-distance)
            self._daily_volume[key] = 40.0 + scale * self._contract_rng(contract, "volume").uniform(0.6, 1.4)
        return self._daily_volume[key]

    def open_interest(self, contract: Contract) -> int:
        key = contract.occ
        if key not in self._open_interest:
            factor = self._contract_rng(contract, "oi").uniform(0.3, 1.6)
            expiry_age = 0.4 if contract.bucket == "0dte" else 1.0  # today's expiry was listed recently
            self._open_interest[key] = int(200 + self.daily_volume(contract) * factor * expiry_age)
        return self._open_interest[key]

    def register_print(self, contract: Contract, ms: int, size: int) -> None:
        times, sizes = self._prints.setdefault(contract.occ, ([], []))
        index = bisect.bisect_right(times, ms)
        times.insert(index, ms)
        sizes.insert(index, size)

    def volume(self, contract: Contract, ms: int) -> int:
        """The contract's volume so far today (prints at ``ms`` included): every print of the session plus a U-shaped
        share of the volume done in prints the feed does not carry, so it never goes down."""
        base = int(self.daily_volume(contract) * self.clock.activity_share(ms))
        times, sizes = self._prints.get(contract.occ, ([], []))
        return base + sum(sizes[: bisect.bisect_right(times, ms)])

    # --- prints ---------------------------------------------------------------------------------------------------
    def print_price(self, quote: Quote, side: str, rng: random.Random) -> tuple[str, int]:
        """The side actually printed (a zero bid cannot print) and its price in cents, inside the NBBO."""
        bid, ask = quote.bid_cents, quote.ask_cents
        if bid < 1 and side != "ask":
            side = "ask" if rng.random() < 0.7 else "no_side"
        if side == "ask":
            return side, ask
        if side == "bid":
            return side, bid
        if side == "mid":
            return side, (bid + ask + 1) // 2
        return side, rng.randint(max(bid, 1), ask)

    def trade_payload(
        self,
        *,
        contract: Contract,
        ms: int,
        size: int,
        side: str,
        rng: random.Random,
        sweep: bool = False,
        created_delay_ms: int = 0,
        quote: Quote | None = None,
    ) -> dict[str, Any]:
        quote = quote or self.quote(contract, ms, iv_jitter=rng.uniform(-0.004, 0.004))
        side, price = self.print_price(quote, side, rng)
        greeks = quote.greeks
        call = contract.is_call
        tags = {
            "ask": ["ask_side", "bullish" if call else "bearish"],
            "bid": ["bid_side", "bearish" if call else "bullish"],
            "mid": ["mid_side"],
            "no_side": ["no_side"],
        }[side]
        if sweep:
            tags = [*tags, "sweep"]
        volume = max(self.volume(contract, ms), size)
        return {
            "id": new_id(rng),
            "underlying_symbol": self.ticker,
            "option_symbol": contract.occ,
            "option_type": "call" if call else "put",
            "strike": str(contract.strike),
            "expiry": contract.expiry.isoformat(),
            "executed_at": ms,
            "created_at": ms + created_delay_ms,
            "price": cents_text(price),
            "size": size,
            "premium": f"{price * size}.00",  # cents * size * 100 / 100 dollars
            "nbbo_bid": cents_text(quote.bid_cents),
            "nbbo_ask": cents_text(quote.ask_cents),
            "ewma_nbbo_bid": cents_text(quote.bid_cents),
            "ewma_nbbo_ask": cents_text(quote.ask_cents),
            "underlying_price": f"{quote.spot:.2f}",
            "volume": volume,
            "open_interest": self.open_interest(contract),
            "implied_volatility": f"{quote.iv:.6f}",
            "delta": f"{greeks.delta:.5f}",
            "gamma": f"{greeks.gamma:.5f}",
            "theta": f"{greeks.theta:.5f}",
            "vega": f"{greeks.vega:.5f}",
            "rho": f"{greeks.rho:.5f}",
            "theo": f"{greeks.price:.4f}",
            "tags": tags,
            "report_flags": [],
            "trade_code": "isoi" if sweep else "auto",
            "exchange": rng.choice(EXCHANGES),
            "ask_vol": size if side == "ask" else 0,
            "bid_vol": size if side == "bid" else 0,
            "no_side_vol": size if side == "no_side" else 0,
            "mid_vol": size if side == "mid" else 0,
            "multi_vol": 0,
            "stock_multi_vol": 0,
        }
