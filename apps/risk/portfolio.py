"""Portfolio greeks for the risk checks: delta and gamma of every held and pending contract, and of the new one.

Per contract, Black-Scholes from :mod:`apps.analytics.pricing` (the platform's one implementation) with
- the spot: the close in ``latest:uw:price:{T}``, else the underlying price in ``latest:uw:quote:{OCC}`` (both kept by
  ingestion);
- the implied volatility: the newest print of the contract in ``uw_option_trades`` that carries one, not after now;
  else ``DEFAULT_IMPLIED_VOLATILITY`` (0.20), named as such in the check's detail;
- the time to the options close of the expiry, from the platform clock (simulated in a replay).

Exposures are share equivalents: per-share greek x contracts x 100, signed by the quantity (a long call adds
positive delta, a long put negative).  When a contract has no spot, its delta is not guessed but bounded: [0, 1] per
share for a call, [-1, 0] for a put (either sign for a symbol that cannot be parsed), and the delta check judges the
worse end of the total.  Its gamma is then computed at the money (spot = strike), about the most gamma the contract
can carry; a contract without a readable strike has no gamma at all, and the gamma check refuses to guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from apps.analytics import pricing
from apps.core import calendar, occ
from apps.core.money import CONTRACT_MULTIPLIER, ZERO
from apps.execution.selectors import open_positions
from apps.ingestion.models import OptionTrade
from apps.ingestion.selectors import latest_price, latest_quote
from apps.risk.models import RiskDecision
from apps.signals.models import Signal

DEFAULT_IMPLIED_VOLATILITY = Decimal("0.20")
SHARES = Decimal("0.01")


@dataclass(frozen=True)
class Exposure:
    """One contract's contribution.  ``delta_low == delta_high`` when its delta was computed."""

    role: str  # "held", "pending" (approved, not filled yet) or "new"
    option_symbol: str
    contracts: int
    delta_low: Decimal
    delta_high: Decimal
    gamma: Decimal | None
    detail: str


@dataclass(frozen=True)
class PortfolioGreeks:
    exposures: list[Exposure]

    @property
    def delta_range(self) -> tuple[Decimal, Decimal]:
        return (
            sum((e.delta_low for e in self.exposures), ZERO),
            sum((e.delta_high for e in self.exposures), ZERO),
        )

    @property
    def delta_worst(self) -> Decimal:
        """The largest |portfolio delta| the figures allow (the delta itself when every contract was priced)."""
        low, high = self.delta_range
        return max(abs(low), abs(high))

    @property
    def gamma_total(self) -> Decimal:
        return sum((e.gamma for e in self.exposures if e.gamma is not None), ZERO)

    @property
    def gamma_unknown(self) -> list[Exposure]:
        return [e for e in self.exposures if e.gamma is None]

    def describe(self) -> str:
        return "; ".join(e.detail for e in self.exposures) or "no contracts"


class _Inputs:
    """Spots per ticker for one review (each read once), and the platform instant the greeks are taken at."""

    def __init__(self, *, now: datetime) -> None:
        self.now = now
        self._spots: dict[str, tuple[Decimal, str] | None] = {}

    def spot(self, *, ticker: str, option_symbol: str) -> tuple[Decimal, str] | None:
        if ticker not in self._spots:
            latest = latest_price(ticker=ticker)
            self._spots[ticker] = (
                (latest[0], f"latest:uw:price:{ticker} at {_ny(latest[1])}") if latest and latest[0] > 0 else None
            )
        found = self._spots[ticker]
        if found is not None:
            return found
        quote = latest_quote(option_symbol=option_symbol)
        if quote is not None and quote.underlying_price is not None and quote.underlying_price > 0:
            return quote.underlying_price, f"latest:uw:quote:{option_symbol} at {_ny(quote.ts)}"
        return None

    def implied_volatility(self, *, option_symbol: str) -> tuple[Decimal, str]:
        newest = (
            OptionTrade.objects.filter(option_symbol=option_symbol, executed_at__lte=self.now, implied_volatility__gt=0)
            .order_by("-executed_at")
            .values_list("implied_volatility", "executed_at")
            .first()
        )
        if newest is None or newest[0] is None:
            return DEFAULT_IMPLIED_VOLATILITY, "default: no print of the contract with an IV"
        return newest[0], f"print at {_ny(newest[1])}"


def _ny(instant: datetime) -> str:
    return f"{instant.astimezone(calendar.NEW_YORK):%Y-%m-%d %H:%M:%S} New York"


def _signed(value: Decimal) -> str:
    return f"{value:+.2f}"


def contract_exposure(*, role: str, option_symbol: str, ticker: str, contracts: int, inputs: _Inputs) -> Exposure:
    """The delta and gamma ``contracts`` of ``option_symbol`` add to the portfolio, and how they were obtained."""
    shares = Decimal(contracts * CONTRACT_MULTIPLIER)
    head = f"{role} {option_symbol} x{contracts}"
    try:
        contract = occ.parse(option_symbol)
        if contract.strike <= 0:
            raise occ.InvalidOptionSymbol(f"strike {contract.strike} is not positive")
    except occ.InvalidOptionSymbol as exc:
        bound = abs(shares)
        return Exposure(
            role, option_symbol, contracts, -bound, bound, None, f"{head}: {exc}; delta counted in [-1, 1] per share"
        )
    t_years = pricing.years_to_expiry(as_of=inputs.now, expiry=contract.expiry)
    sigma, sigma_source = inputs.implied_volatility(option_symbol=option_symbol)
    rate = pricing.risk_free_rate()
    spot = inputs.spot(ticker=ticker, option_symbol=option_symbol)
    basis = f"iv {sigma:.4f} ({sigma_source}), {t_years:.6f} y to the options close, rate {rate}"
    if spot is None:
        # No price: delta is bounded, not guessed; gamma at the money is about the most the contract can carry.
        at_the_money = pricing.greeks(
            spot=contract.strike, strike=contract.strike, t_years=t_years, sigma=sigma, right=contract.right, rate=rate
        )
        per_share = (ZERO, Decimal(1)) if contract.is_call else (Decimal(-1), ZERO)
        ends = sorted((per_share[0] * shares, per_share[1] * shares))
        gamma = (at_the_money.gamma * shares).quantize(SHARES)
        return Exposure(
            role,
            option_symbol,
            contracts,
            ends[0],
            ends[1],
            gamma,
            f"{head}: no price for {ticker}, delta counted in [{_signed(ends[0])}, {_signed(ends[1])}]"
            f" (|delta| up to 1 per share); gamma at the money (spot = strike {contract.strike:f})"
            f" {at_the_money.gamma} -> {_signed(gamma)}; {basis}",
        )
    price, source = spot
    greeks = pricing.greeks(
        spot=price, strike=contract.strike, t_years=t_years, sigma=sigma, right=contract.right, rate=rate
    )
    delta = (greeks.delta * shares).quantize(SHARES)
    gamma = (greeks.gamma * shares).quantize(SHARES)
    return Exposure(
        role,
        option_symbol,
        contracts,
        delta,
        delta,
        gamma,
        f"{head}: spot {price} ({source}), {basis} -> delta {greeks.delta} ({_signed(delta)}),"
        f" gamma {greeks.gamma} ({_signed(gamma)})",
    )


def portfolio_greeks(*, signal: Signal, contracts: int, now: datetime) -> PortfolioGreeks:
    """Held positions, approved entries still waiting for their fill, and ``contracts`` of the new signal."""
    inputs = _Inputs(now=now)
    exposures = [
        contract_exposure(role="held", option_symbol=symbol, ticker=ticker, contracts=quantity, inputs=inputs)
        for symbol, ticker, quantity in open_positions().values_list("option_symbol", "ticker", "quantity")
    ]
    pending = (
        RiskDecision.objects.filter(approved=True, signal__status=Signal.Status.APPROVED)
        .exclude(signal=signal)
        .order_by("decided_at", "id")
        .values_list("signal__option_symbol", "signal__ticker", "quantity")
    )
    exposures += [
        contract_exposure(role="pending", option_symbol=symbol, ticker=ticker, contracts=quantity, inputs=inputs)
        for symbol, ticker, quantity in pending
    ]
    if contracts > 0:
        exposures.append(
            contract_exposure(
                role="new", option_symbol=signal.option_symbol, ticker=signal.ticker, contracts=contracts, inputs=inputs
            )
        )
    return PortfolioGreeks(exposures=exposures)
