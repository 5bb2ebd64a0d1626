"""Black-Scholes prices and greeks for the listed ETF options the platform trades, and an implied-volatility solver.

Decimal at the edges, floats inside: the normal distribution and logarithms are float math, and the results are
quantized back to ``Decimal`` before anything that touches money sees them.  For calls on SPY/QQQ/IWM without a
dividend before expiry the American price equals the European one; for puts Black-Scholes is a close approximation,
good enough to rank contracts by delta when the feed has no greeks.

Time to expiry counts to the *options* close of the expiry day (16:15 New York, or 15 minutes after an early close),
so a 0DTE contract still has minutes of time value after the equity close.  Near expiry (or with a vanishing
volatility) the price collapses to intrinsic value and the greeks are guarded instead of dividing by zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.conf import settings

from apps.core import calendar
from apps.core.money import to_decimal

SECONDS_PER_YEAR = 365.0 * 24 * 3600
# Below a minute of time value (or a volatility of 0.01 %) the closed form loses precision; intrinsic value rules.
MIN_T_YEARS = 60.0 / SECONDS_PER_YEAR
MIN_SIGMA = 1e-4
PRICE_PLACES = Decimal("0.0001")
GREEK_PLACES = Decimal("0.000001")
DEFAULT_RISK_FREE_RATE = "0.04"


def risk_free_rate() -> Decimal:
    """The annual risk-free rate used for pricing (setting ``PRICING_RISK_FREE_RATE``, default 4 %)."""
    return to_decimal(getattr(settings, "PRICING_RISK_FREE_RATE", DEFAULT_RISK_FREE_RATE))


@dataclass(frozen=True)
class Greeks:
    """Price and sensitivities of one option (per share): theta per calendar day, vega per volatility point."""

    price: Decimal
    delta: Decimal
    gamma: Decimal
    theta: Decimal
    vega: Decimal


def options_close(expiry: date) -> datetime:
    """When an option expiring on ``expiry`` stops trading (aware UTC)."""
    session = calendar.session_for(expiry)
    if session is not None:
        return session.options_close
    # An expiry on a closed day (never listed, but a malformed symbol could claim one): use the regular 16:15.
    return datetime.combine(expiry, time(16, 15), tzinfo=calendar.NEW_YORK).astimezone(UTC)


def years_to_expiry(*, as_of: datetime, expiry: date) -> float:
    """Years from ``as_of`` to the options close of ``expiry``; never negative."""
    seconds = (options_close(expiry) - as_of).total_seconds()
    return max(seconds, 0.0) / SECONDS_PER_YEAR


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _is_call(right: str) -> bool:
    flag = right.upper()[:1]
    if flag not in ("C", "P"):
        raise ValueError(f"right must be C or P, got {right!r}")
    return flag == "C"


def _float_price(spot: float, strike: float, t: float, r: float, sigma: float, call: bool) -> float:
    if t < MIN_T_YEARS or sigma < MIN_SIGMA:
        return max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
    sqrt_t = math.sqrt(t)
    d1 = (math.log(spot / strike) + (r + 0.5 * sigma * sigma) * t) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    discount = math.exp(-r * t)
    if call:
        return spot * _norm_cdf(d1) - strike * discount * _norm_cdf(d2)
    return strike * discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


def _q(value: float, places: Decimal) -> Decimal:
    return Decimal(repr(value)).quantize(places)


def greeks(
    *, spot: Decimal, strike: Decimal, t_years: float, sigma: Decimal | float, right: str, rate: Decimal | None = None
) -> Greeks:
    """Black-Scholes price and greeks; intrinsic value with step-function delta and zero gamma/vega at expiry."""
    call = _is_call(right)
    s, k, vol = float(spot), float(strike), float(sigma)
    r = float(risk_free_rate() if rate is None else rate)
    if s <= 0 or k <= 0:
        raise ValueError("spot and strike must be positive")
    if t_years < MIN_T_YEARS or vol < MIN_SIGMA:
        intrinsic = _float_price(s, k, 0.0, r, 0.0, call)
        in_the_money = s > k if call else s < k
        delta = (1.0 if call else -1.0) if in_the_money else 0.0
        return Greeks(_q(intrinsic, PRICE_PLACES), _q(delta, GREEK_PLACES), Decimal(0), Decimal(0), Decimal(0))
    sqrt_t = math.sqrt(t_years)
    d1 = (math.log(s / k) + (r + 0.5 * vol * vol) * t_years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = math.exp(-r * t_years)
    pdf = _norm_pdf(d1)
    price = _float_price(s, k, t_years, r, vol, call)
    gamma = pdf / (s * vol * sqrt_t)
    vega = s * pdf * sqrt_t / 100.0
    decay = -s * pdf * vol / (2.0 * sqrt_t)
    if call:
        delta = _norm_cdf(d1)
        theta_year = decay - r * k * discount * _norm_cdf(d2)
    else:
        delta = _norm_cdf(d1) - 1.0
        theta_year = decay + r * k * discount * _norm_cdf(-d2)
    return Greeks(
        price=_q(price, PRICE_PLACES),
        delta=_q(delta, GREEK_PLACES),
        gamma=_q(gamma, GREEK_PLACES),
        theta=_q(theta_year / 365.0, GREEK_PLACES),
        vega=_q(vega, GREEK_PLACES),
    )


def price(
    *, spot: Decimal, strike: Decimal, t_years: float, sigma: Decimal | float, right: str, rate: Decimal | None = None
) -> Decimal:
    """The Black-Scholes price per share."""
    return greeks(spot=spot, strike=strike, t_years=t_years, sigma=sigma, right=right, rate=rate).price


def implied_volatility(
    *,
    option_price: Decimal,
    spot: Decimal,
    strike: Decimal,
    t_years: float,
    right: str,
    rate: Decimal | None = None,
    low: float = 1e-3,
    high: float = 5.0,
    tolerance: float = 1e-6,
) -> Decimal | None:
    """The volatility that reproduces ``option_price``, or ``None`` when no volatility in [low, high] can.

    Bisection: the price is monotonic in volatility, so it always converges (Newton can overshoot on deep wings).
    A price at or below intrinsic value, or with no time left, has no implied volatility.
    """
    call = _is_call(right)
    s, k, target = float(spot), float(strike), float(option_price)
    r = float(risk_free_rate() if rate is None else rate)
    if t_years < MIN_T_YEARS or s <= 0 or k <= 0 or target <= 0:
        return None
    lo_price = _float_price(s, k, t_years, r, low, call)
    hi_price = _float_price(s, k, t_years, r, high, call)
    if not lo_price <= target <= hi_price:
        return None
    lo, hi = low, high
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _float_price(s, k, t_years, r, mid, call) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < tolerance:
            break
    return _q(0.5 * (lo + hi), GREEK_PLACES)
