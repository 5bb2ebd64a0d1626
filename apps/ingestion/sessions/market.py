"""The day's market: regimes, the correlated underlying paths and the intraday volatility shape.

Everything is planned for the whole day before any frame is written, so a shorter window of the same (date, seed)
sees exactly the prices the full day sees.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date

MS = 1000
MINUTE_MS = 60 * MS
PRE_MARKET_MINUTES = 15  # the path starts this long before the open, for the few pre-market price frames


@dataclass(frozen=True)
class TickerProfile:
    """What sets one underlying apart: its level, its beta to the market factor and its own noise."""

    price: float
    beta: float
    idio: float  # idiosyncratic volatility as a share of the market's
    atm_iv: float
    premium_range: tuple[float, float]  # flow-alert premium per alert, dollars
    gamma_scale: float  # dollars of gamma per 1% move at a typical strike
    strike_volume: float  # contracts a day at the money, 0DTE


PROFILES: dict[str, TickerProfile] = {
    "SPY": TickerProfile(660.0, 1.00, 0.25, 0.135, (150_000.0, 2_000_000.0), 6.0e7, 180_000.0),
    "QQQ": TickerProfile(600.0, 1.22, 0.45, 0.175, (150_000.0, 2_000_000.0), 3.0e7, 90_000.0),
    "IWM": TickerProfile(238.0, 1.12, 0.70, 0.205, (50_000.0, 500_000.0), 1.2e7, 45_000.0),
}


def profile_for(ticker: str) -> TickerProfile:
    """Known ETFs have their own profile; any other symbol trades like a mid-priced, mid-volatility stock."""
    known = PROFILES.get(ticker)
    if known is not None:
        return known
    level = 50.0 + (sum(ord(c) for c in ticker) * 37) % 400
    return TickerProfile(level, 1.0, 0.8, 0.25, (50_000.0, 500_000.0), 5.0e6, 20_000.0)


@dataclass(frozen=True)
class Regime:
    kind: str  # trend_up, trend_down, chop, late_move
    start_ms: int
    end_ms: int
    drift_per_sec: float  # log drift of the market factor
    direction: int  # +1 bullish, -1 bearish, 0 neither


@dataclass(frozen=True)
class Impulse:
    """A push on one underlying after a flow episode: what makes flow worth following, sometimes."""

    start_ms: int
    end_ms: int
    log_move: float


@dataclass
class DayClock:
    """The session's instants in epoch ms."""

    day: date
    open_ms: int
    close_ms: int
    options_close_ms: int
    grid_start_ms: int = field(init=False)
    _activity_total: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.grid_start_ms = self.open_ms - PRE_MARKET_MINUTES * MINUTE_MS
        self._activity_total = self._activity_integral(self.session_minutes)

    @property
    def session_minutes(self) -> float:
        return (self.close_ms - self.open_ms) / MINUTE_MS

    def volatility_shape(self, ms: int) -> float:
        """Intraday U: busiest after the open, quieter at lunch, busy again into the close; thin outside hours."""
        if ms < self.open_ms:
            return 0.35
        if ms >= self.close_ms:
            return 0.3
        since_open = (ms - self.open_ms) / MINUTE_MS
        to_close = (self.close_ms - ms) / MINUTE_MS
        return 0.75 + 1.3 * math.exp(-since_open / 18.0) + 0.7 * math.exp(-to_close / 30.0)

    def _activity_integral(self, minutes: float) -> float:
        total = self.session_minutes
        return (
            minutes
            + 2.5 * 25.0 * (1.0 - math.exp(-minutes / 25.0))
            + 2.0 * 30.0 * (math.exp(-(total - minutes) / 30.0) - math.exp(-total / 30.0))
        )

    def activity_share(self, ms: int) -> float:
        """Share of the day's option volume done by ``ms``: the integral of a U-shaped intensity, 0..1."""
        minutes = min(max((ms - self.open_ms) / MINUTE_MS, 0.0), self.session_minutes)
        return self._activity_integral(minutes) / self._activity_total


def plan_regimes(*, rng: random.Random, clock: DayClock) -> list[Regime]:
    """Seeded segments of trend up, trend down and chop, then a late-day move into the close."""
    regimes: list[Regime] = []
    late_start = clock.close_ms - rng.randint(28, 40) * MINUTE_MS
    cursor = clock.open_ms
    previous = ""
    while cursor < late_start:
        length = rng.randint(40, 110) * MINUTE_MS
        end = min(cursor + length, late_start)
        if late_start - end < 20 * MINUTE_MS:
            end = late_start
        kind = rng.choice([k for k in ("trend_up", "trend_down", "chop") if k != previous])
        hourly = rng.uniform(0.0010, 0.0025)
        drift, direction = {
            "trend_up": (hourly / 3600.0, 1),
            "trend_down": (-hourly / 3600.0, -1),
            "chop": (0.0, 0),
        }[kind]
        regimes.append(Regime(kind, cursor, end, drift, direction))
        previous = kind
        cursor = end
    late_direction = rng.choice((1, -1))
    late_end = clock.close_ms - rng.randint(3, 8) * MINUTE_MS
    late_move = rng.uniform(0.0022, 0.0050) * late_direction
    regimes.append(
        Regime("late_move", late_start, late_end, late_move / ((late_end - late_start) / MS), late_direction)
    )
    regimes.append(Regime("chop", late_end, clock.options_close_ms, 0.0, 0))
    return regimes


def regime_at(regimes: list[Regime], ms: int) -> Regime:
    for regime in regimes:
        if regime.start_ms <= ms < regime.end_ms:
            return regime
    return regimes[0] if ms < regimes[0].start_ms else regimes[-1]


def market_shocks(*, rng: random.Random, clock: DayClock, regimes: list[Regime], daily_vol: float) -> list[float]:
    """Per-second log returns of the common market factor, drift included."""
    seconds = (clock.options_close_ms - clock.grid_start_ms) // MS
    sigma = daily_vol / math.sqrt(23_400.0) / 0.87  # 0.87: the mean of the U, so the day's realised vol ~ daily_vol
    shocks = [0.0] * seconds
    regime_index = 0
    level = 0.0
    anchor = 0.0
    for s in range(seconds):
        ms = clock.grid_start_ms + s * MS
        while regime_index < len(regimes) - 1 and ms >= regimes[regime_index].end_ms:
            regime_index += 1
            anchor = level
        regime = regimes[regime_index] if ms >= regimes[0].start_ms else None
        drift = regime.drift_per_sec if regime else 0.0
        if regime is not None and regime.kind == "chop":
            # chop reverts to where it started, so it goes nowhere however long it lasts
            drift -= (level - anchor) / 1800.0
        shock = drift + sigma * clock.volatility_shape(ms) * rng.gauss(0.0, 1.0)
        shocks[s] = shock
        level += shock
    return shocks


def underlying_path(
    *,
    rng: random.Random,
    clock: DayClock,
    start_price: float,
    profile: TickerProfile,
    market: list[float],
    daily_vol: float,
    impulses: list[Impulse],
) -> list[float]:
    """Per-second prices: beta times the market factor, plus the ticker's own noise and its flow impulses."""
    sigma = daily_vol / math.sqrt(23_400.0) / 0.87 * profile.idio
    push = [0.0] * len(market)
    for impulse in impulses:
        first = max(0, (impulse.start_ms - clock.grid_start_ms) // MS)
        last = min(len(market), (impulse.end_ms - clock.grid_start_ms) // MS)
        if last > first:
            step = impulse.log_move / (last - first)
            for s in range(first, last):
                push[s] += step
    path = [0.0] * len(market)
    log_price = math.log(start_price)
    for s, shock in enumerate(market):
        ms = clock.grid_start_ms + s * MS
        log_price += profile.beta * shock + push[s] + sigma * clock.volatility_shape(ms) * rng.gauss(0.0, 1.0)
        path[s] = math.exp(log_price)
    return path
