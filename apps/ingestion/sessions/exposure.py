"""Dealer gamma exposure: a per-strike profile with a flip near spot, a call wall above and a put wall below.

Calls carry positive dealer gamma and puts negative; the profile is built so net gamma is negative below the flip
and positive above it, peaking at the walls.  The ticker-level ``gex`` is the profile summed around spot, so its
sign follows the side of the flip the underlying is on.
"""

from __future__ import annotations

import math
import random
from datetime import date
from typing import Any

from .chain import Chain
from .market import MINUTE_MS

STRIKES_EACH_SIDE = 7  # 15 strikes per gex_strike snapshot


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def _num(value: float) -> str:
    return f"{value:.4f}"


class GammaProfile:
    def __init__(self, *, chain: Chain, rng: random.Random) -> None:
        self.chain = chain
        opening = chain.open_price
        self.flip_offset = rng.uniform(-0.003, 0.003)
        self.call_wall_offset = rng.uniform(0.004, 0.009)
        self.put_wall_offset = rng.uniform(0.004, 0.009)
        self.scale = chain.profile.gamma_scale * rng.uniform(0.7, 1.3)
        self.wall_width = max(1.0, opening * 0.0025)
        self.slope = opening * 0.003
        self._levels_at: tuple[int, tuple[float, int, int]] = (-1, (0.0, 0, 0))

    def _anchor(self, ms: int) -> float:
        """Where the profile is centred: positioning follows the underlying, twenty minutes behind it."""
        return self.chain.spot(max(ms - 20 * MINUTE_MS, self.chain.clock.open_ms))

    def levels(self, ms: int) -> tuple[float, int, int]:
        """The flip, the call wall and the put wall at ``ms``."""
        if self._levels_at[0] != ms:  # a snapshot asks for the same instant once per strike
            anchor = self._anchor(ms)
            levels = (
                anchor * (1.0 + self.flip_offset),
                round(anchor * (1.0 + self.call_wall_offset)),
                round(anchor * (1.0 - self.put_wall_offset)),
            )
            self._levels_at = (ms, levels)
        return self._levels_at[1]

    def _growth(self, ms: int) -> float:
        """Same-day gamma grows into the close as the 0DTE options near expiry."""
        clock = self.chain.clock
        elapsed = min(max((ms - clock.open_ms) / (clock.close_ms - clock.open_ms), 0.0), 1.0)
        return 1.0 + 0.6 * elapsed

    def call_gamma(self, strike: float, ms: int) -> float:
        flip, call_wall, _ = self.levels(ms)
        wall = math.exp(-(((strike - call_wall) / self.wall_width) ** 2))
        return self.scale * self._growth(ms) * (0.2 + wall + 0.4 * _sigmoid((strike - flip) / self.slope))

    def put_gamma(self, strike: float, ms: int) -> float:
        flip, _, put_wall = self.levels(ms)
        wall = math.exp(-(((strike - put_wall) / self.wall_width) ** 2))
        return -self.scale * self._growth(ms) * (0.2 + 0.9 * wall + 0.4 * _sigmoid((flip - strike) / self.slope))

    def ticker_payload(self, ms: int, rng: random.Random, *, bullishness: float) -> dict[str, Any]:
        spot = self.chain.spot(ms)
        atm = round(spot)
        width = spot * 0.01
        gamma_oi = 0.0
        for strike in range(atm - 20, atm + 21):
            weight = math.exp(-(((strike - spot) / width) ** 2))
            gamma_oi += (self.call_gamma(strike, ms) + self.put_gamma(strike, ms)) * weight
        gamma_oi *= 40.0  # every expiry of the chain, not only the strikes near spot
        share = max(self.chain.clock.activity_share(ms), 0.02)
        gamma_vol = gamma_oi * (0.6 + share) * rng.uniform(0.9, 1.2)
        gamma_dir = -abs(gamma_vol) * (0.3 * bullishness + rng.uniform(-0.25, 0.25))
        charm_oi = -gamma_oi * 0.004 * self._growth(ms)
        vanna_oi = gamma_oi * 0.002 * (spot - self.levels(ms)[0])
        delta_blank = rng.choice(("0", "0", ""))
        return {
            "ticker": self.chain.ticker,
            "timestamp": ms,
            "price": f"{spot:.2f}",
            "gamma_per_one_percent_move_oi": _num(gamma_oi),
            "gamma_per_one_percent_move_vol": _num(gamma_vol),
            "gamma_per_one_percent_move_dir": _num(gamma_dir),
            "delta_per_one_percent_move_oi": delta_blank,
            "delta_per_one_percent_move_vol": "0",
            "delta_per_one_percent_move_dir": "0",
            "charm_per_one_percent_move_oi": _num(charm_oi),
            "charm_per_one_percent_move_vol": _num(charm_oi * (0.6 + share)),
            "charm_per_one_percent_move_dir": _num(charm_oi * 0.3 * bullishness),
            "vanna_per_one_percent_move_oi": _num(vanna_oi),
            "vanna_per_one_percent_move_vol": _num(vanna_oi * (0.6 + share)),
            "vanna_per_one_percent_move_dir": _num(vanna_oi * 0.3 * bullishness),
        }

    def strike_payload(
        self, ms: int, strike: int, rng: random.Random, *, bullishness: float, expiry: date | None = None
    ) -> dict[str, Any]:
        spot = self.chain.spot(ms)
        share = max(self.chain.clock.activity_share(ms), 0.02)
        # one expiry carries a share of the strike's exposure; the nearer the expiry the bigger the share
        part = 0.55 if expiry == self.chain.clock.day else (0.25 if expiry is not None else 1.0)
        payload: dict[str, Any] = {"ticker": self.chain.ticker, "timestamp": ms, "strike": str(strike)}
        if expiry is not None:
            payload["expiry"] = expiry.isoformat()
        payload["price"] = f"{spot:.2f}"
        moneyness = (strike - spot) / spot
        for right, gamma, lean in (
            ("call", self.call_gamma(strike, ms) * part, 0.5 + 0.15 * bullishness),
            ("put", self.put_gamma(strike, ms) * part, 0.5 - 0.15 * bullishness),
        ):
            gamma_vol = gamma * (0.5 + share) * rng.uniform(0.8, 1.25)
            charm = -gamma * 0.004 * self._growth(ms)
            vanna = gamma * 0.2 * moneyness * 100.0
            ask_share = min(max(lean + rng.uniform(-0.1, 0.1), 0.05), 0.95)
            for name, value in (("gamma", gamma), ("charm", charm), ("vanna", vanna)):
                volume_value = value * gamma_vol / gamma if gamma else 0.0
                payload[f"{right}_{name}_oi"] = _num(value)
                payload[f"{right}_{name}_vol"] = _num(volume_value)
                payload[f"{right}_{name}_ask_vol"] = _num(volume_value * ask_share)
                payload[f"{right}_{name}_bid_vol"] = _num(volume_value * (1.0 - ask_share))
        return payload


def snapshot_times(*, start_ms: int, end_ms: int, every_minutes: int) -> list[int]:
    step = every_minutes * MINUTE_MS
    first = -(-start_ms // step) * step
    return list(range(first, end_ms, step))
