"""Black-Scholes price and greeks in floats, for the session generator only.

The platform's own pricing lives in ``apps.analytics``; the generator keeps its own small copy so that recorded
sessions do not change when the platform's model is tuned.  Near expiry the time is floored at one minute so the
greeks stay finite while the price converges to intrinsic value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_YEARS = 60.0 / (365.0 * 86400.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class Greeks:
    price: float
    delta: float
    gamma: float
    theta: float  # per calendar day
    vega: float  # per 1 vol point (0.01)
    rho: float  # per 1 rate point (0.01)


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / _SQRT_2PI


def black_scholes(*, spot: float, strike: float, years: float, vol: float, rate: float, is_call: bool) -> Greeks:
    """Price and greeks of a European option on a non-dividend-paying underlying."""
    t = max(years, MIN_YEARS)
    sqrt_t = math.sqrt(t)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * t) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = math.exp(-rate * t)
    pdf_d1 = norm_pdf(d1)
    gamma = pdf_d1 / (spot * vol * sqrt_t)
    vega = spot * pdf_d1 * sqrt_t / 100.0
    decay = -spot * pdf_d1 * vol / (2.0 * sqrt_t)
    if is_call:
        price = spot * norm_cdf(d1) - strike * discount * norm_cdf(d2)
        delta = norm_cdf(d1)
        theta = (decay - rate * strike * discount * norm_cdf(d2)) / 365.0
        rho = strike * t * discount * norm_cdf(d2) / 100.0
    else:
        price = strike * discount * norm_cdf(-d2) - spot * norm_cdf(-d1)
        delta = norm_cdf(d1) - 1.0
        theta = (decay + rate * strike * discount * norm_cdf(-d2)) / 365.0
        rho = -strike * t * discount * norm_cdf(-d2) / 100.0
    intrinsic = max(0.0, spot - strike) if is_call else max(0.0, strike - spot)
    return Greeks(price=max(price, intrinsic), delta=delta, gamma=gamma, theta=theta, vega=vega, rho=rho)
