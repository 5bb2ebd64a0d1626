"""Flow-alert episodes: repeated ask-side sweeps that fit the regime, and the big prints behind them.

An episode is planned before the underlying's path, because a *truthful* episode pushes the underlying its way
afterwards (an :class:`Impulse`) and a misleading one does not, or pushes it back.  That is what lets a
flow-following strategy win on some days and lose on others.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

from .chain import Chain, Contract, cents_text, new_id
from .market import MINUTE_MS, MS, DayClock, Impulse, Regime, TickerProfile, regime_at

Frame = list[Any]
TimedFrame = tuple[int, Frame]  # (received_at ms, frame)

CLOSING_WINDOW_START = 30  # minutes before the close: 15:30 NY on a regular day
CLOSING_WINDOW_END = 10  # 15:50 NY
HOT_AFTER_MS = 30 * MINUTE_MS  # an alerted contract keeps printing every minute this long after its last alert
RULES = {
    "sweep": ("RepeatedHits", "RepeatedHitsAscendingFill", "RepeatedHitsDescendingFill", "SweepsFollowedByFloor"),
    "floor": ("FloorTradeLargeCap", "FloorTradeMidCap"),
}
RULE_IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"uw-rule/{name}")) for names in RULES.values() for name in names}


@dataclass(frozen=True)
class Episode:
    start_ms: int
    direction: int  # +1 bullish (ask-side calls), -1 bearish (ask-side puts)
    bucket: str
    strike_offset: int  # strikes out of the money
    gaps_ms: tuple[int, ...]  # between successive alerts
    style: str  # sweep / floor
    truthful: bool


@dataclass(frozen=True)
class LoneAlert:
    """A one-off alert without follow-through: either side, smaller premium, any direction."""

    ms: int
    bucket: str
    is_call: bool
    strike_offset: int
    side: str  # ask / bid
    style: str


def _direction(rng: random.Random, regime: Regime, *, follow: float = 0.72) -> int:
    if regime.direction == 0:
        return rng.choice((1, -1))
    return regime.direction if rng.random() < follow else -regime.direction


def _bucket(rng: random.Random, weights: tuple[float, float, float]) -> str:
    return rng.choices(("0dte", "1dte", "14d"), weights=weights)[0]


def plan_episodes(*, rng: random.Random, clock: DayClock, regimes: list[Regime]) -> tuple[list[Episode], list[Impulse]]:
    """The day's episodes for one ticker (every expiry bucket, some in the closing window) and their impulses."""
    episodes: list[Episode] = []
    first, last_main = clock.open_ms + 2 * MINUTE_MS, clock.close_ms - 36 * MINUTE_MS
    count = rng.randint(12, 18)
    for index in range(count):
        roll = rng.random()
        if roll < 0.28:
            start = rng.randint(first, min(first + 60 * MINUTE_MS, last_main))
        elif roll < 0.5:
            start = rng.randint(max(first, last_main - 70 * MINUTE_MS), last_main)
        else:
            start = rng.randint(first, last_main)
        # the first three cover every bucket, so each strategy has flow to act on every day
        bucket = ("0dte", "1dte", "14d")[index] if index < 3 else _bucket(rng, (0.45, 0.30, 0.25))
        alerts = rng.randint(2, 6)
        episodes.append(
            Episode(
                start_ms=start,
                direction=_direction(rng, regime_at(regimes, start)),
                bucket=bucket,
                strike_offset=rng.choices((0, 1, 2, 3), weights=(0.3, 0.3, 0.25, 0.15))[0],
                gaps_ms=tuple(rng.randint(20, 150) * MS for _ in range(alerts - 1)),
                style="floor" if rng.random() < 0.18 else "sweep",
                truthful=rng.random() < 0.6,
            )
        )
    window_start = clock.close_ms - CLOSING_WINDOW_START * MINUTE_MS
    window_last_start = clock.close_ms - (CLOSING_WINDOW_END + 8) * MINUTE_MS
    for index in range(rng.randint(2, 3)):
        start = rng.randint(window_start + 30 * MS, window_last_start)
        alerts = rng.randint(2, 4)
        episodes.append(
            Episode(
                start_ms=start,
                direction=_direction(rng, regime_at(regimes, start), follow=0.7),
                bucket="0dte" if index == 0 else _bucket(rng, (0.6, 0.25, 0.15)),
                strike_offset=rng.choices((0, 1, 2), weights=(0.4, 0.4, 0.2))[0],
                gaps_ms=tuple(rng.randint(15, 100) * MS for _ in range(alerts - 1)),
                style="sweep",
                truthful=rng.random() < 0.6,
            )
        )
    episodes.sort(key=lambda e: e.start_ms)
    impulses = []
    for episode in episodes:
        begin = episode.start_ms + rng.randint(10, 60) * MS
        end = min(begin + rng.randint(8, 30) * MINUTE_MS, clock.close_ms)
        if episode.truthful:
            impulses.append(Impulse(begin, end, episode.direction * rng.uniform(0.0007, 0.0018)))
        elif rng.random() < 0.5:
            impulses.append(Impulse(begin, end, -episode.direction * rng.uniform(0.0004, 0.0012)))
    return episodes, impulses


def plan_lone_alerts(*, rng: random.Random, clock: DayClock) -> list[LoneAlert]:
    lone = []
    for _ in range(rng.randint(15, 25)):
        lone.append(
            LoneAlert(
                ms=rng.randint(clock.open_ms + MINUTE_MS, clock.close_ms - 5 * MINUTE_MS),
                bucket=_bucket(rng, (0.5, 0.3, 0.2)),
                is_call=rng.random() < 0.5,
                strike_offset=rng.randint(-2, 4),
                side="ask" if rng.random() < 0.6 else "bid",
                style="floor" if rng.random() < 0.3 else "sweep",
            )
        )
    return sorted(lone, key=lambda a: a.ms)


class FlowRenderer:
    """Turns planned episodes into ``flow-alerts`` frames and the ``option_trades`` prints they are made of."""

    def __init__(self, *, chain: Chain, profile: TickerProfile, rng: random.Random) -> None:
        self.chain = chain
        self.profile = profile
        self.rng = rng
        self.frames: list[TimedFrame] = []
        self.hot: dict[Contract, list[tuple[int, int]]] = {}
        self._volume_fields: list[tuple[dict[str, Any], Contract, int]] = []

    def _premium(self, *, scale: float) -> float:
        low, high = self.profile.premium_range
        if self.rng.random() < 0.2:  # now and then a smaller alert, under the usual range
            low, high = low * 0.4, low
        return math.exp(self.rng.uniform(math.log(low), math.log(high))) * scale

    def _mark_hot(self, contract: Contract, first_ms: int, last_ms: int, *, after_ms: int = HOT_AFTER_MS) -> None:
        self.hot.setdefault(contract, []).append((first_ms - MINUTE_MS, last_ms + after_ms))

    def render_episode(self, episode: Episode) -> None:
        chain, rng = self.chain, self.rng
        is_call = episode.direction > 0
        atm = chain.atm_strike(episode.start_ms)
        strike = atm + episode.strike_offset if is_call else atm - episode.strike_offset
        contract = chain.contract(episode.bucket, is_call, strike)
        times = [episode.start_ms]
        for gap in episode.gaps_ms:
            times.append(times[-1] + gap)
        rule = rng.choice(RULES[episode.style])
        touched: dict[Contract, list[int]] = {}
        for ms in times:
            target = contract
            if rng.random() < 0.15:  # a hit one strike further out, same direction
                target = chain.contract(episode.bucket, is_call, strike + (1 if is_call else -1))
            self.render_alert(
                contract=target,
                ms=ms,
                side="ask",
                style=episode.style,
                rule=rule,
                premium=self._premium(scale=1.0),
                opening=rng.random() < 0.8,
            )
            touched.setdefault(target, []).append(ms)
        for target, stamps in touched.items():
            self._mark_hot(target, stamps[0], stamps[-1])

    def render_lone(self, alert: LoneAlert) -> None:
        chain = self.chain
        atm = chain.atm_strike(alert.ms)
        strike = atm + alert.strike_offset if alert.is_call else atm - alert.strike_offset
        contract = chain.contract(alert.bucket, alert.is_call, strike)
        self.render_alert(
            contract=contract,
            ms=alert.ms,
            side=alert.side,
            style=alert.style,
            rule=self.rng.choice(RULES[alert.style]),
            premium=self._premium(scale=0.5),
            opening=self.rng.random() < 0.4,
        )
        self._mark_hot(contract, alert.ms, alert.ms, after_ms=20 * MINUTE_MS)

    def render_alert(
        self, *, contract: Contract, ms: int, side: str, style: str, rule: str, premium: float, opening: bool
    ) -> None:
        chain, rng = self.chain, self.rng
        quote = chain.quote(contract, ms)
        other = "bid" if side == "ask" else "ask"
        main_price = quote.ask_cents if side == "ask" else quote.bid_cents
        if main_price < 1:  # nothing to sell into at a zero bid: it is a buyer after all
            side, other, main_price = "ask", "bid", quote.ask_cents
        other_price = quote.bid_cents if other == "bid" else quote.ask_cents
        total = max(1, round(premium / main_price))
        main_size = max(1, round(total * rng.uniform(0.8, 0.97)))
        other_size = total - main_size if other_price >= 1 else 0
        pieces = 1 if style == "floor" else rng.randint(1, 3)
        sizes = _split(rng, main_size, pieces)
        fills = [(side, size) for size in sizes if size > 0]
        if other_size > 0:
            fills.insert(rng.randint(0, len(fills)), (other, other_size))
        start = ms - rng.randint(200, 20_000) if len(fills) > 1 else ms
        stamps = sorted(rng.randint(start, ms) for _ in fills[:-1]) + [ms]
        trade_ids, exchanges = [], []
        sides = {"ask": 0, "bid": 0}
        premiums = {"ask": 0, "bid": 0}
        for (fill_side, size), stamp in zip(fills, stamps, strict=True):
            chain.register_print(contract, stamp, size)
            delay = rng.randint(5, 200)
            trade = chain.trade_payload(
                contract=contract,
                ms=stamp,
                size=size,
                side=fill_side,
                rng=rng,
                sweep=style == "sweep",
                created_delay_ms=delay,
                quote=quote,
            )
            self.frames.append((stamp + delay + rng.randint(2, 30), [f"option_trades:{chain.ticker}", trade]))
            self._volume_fields.append((trade, contract, stamp))
            trade_ids.append(trade["id"])
            if trade["exchange"] not in exchanges:
                exchanges.append(trade["exchange"])
            printed_side = "ask" if trade["ask_vol"] else "bid"
            sides[printed_side] += size
            premiums[printed_side] += round(float(trade["premium"]))
        total_size = sides["ask"] + sides["bid"]
        total_premium = premiums["ask"] + premiums["bid"]
        volume = chain.volume(contract, ms)
        open_interest = chain.open_interest(contract)
        ratio = round(volume / open_interest, 4)
        payload = {
            "id": new_id(rng),
            "rule_id": RULE_IDS[rule],
            "rule_name": None if rng.random() < 0.04 else rule,
            "ticker": chain.ticker,
            "option_chain": contract.occ,
            "underlying_price": round(quote.spot, 3),
            "volume": volume,
            "total_size": total_size,
            "total_premium": float(total_premium),
            "total_ask_side_prem": float(premiums["ask"]),
            "total_bid_side_prem": float(premiums["bid"]),
            "start_time": stamps[0],
            "end_time": ms,
            "executed_at": ms,
            "url": "",
            "price": round(total_premium / (total_size * 100), 2),
            "bid": cents_text(quote.bid_cents),
            "ask": cents_text(quote.ask_cents),
            "has_multileg": False,
            "has_sweep": style == "sweep",
            "has_floor": style == "floor",
            "has_singleleg": True,
            "all_opening_trades": opening,
            "open_interest": open_interest,
            # the live feed often sends 0 here; consumers are told to compute it, so the sessions do the same
            "volume_oi_ratio": 0.0 if rng.random() < 0.3 else ratio,
            "trade_ids": trade_ids,
            "trade_count": len(trade_ids),
            "expiry_count": 1,
            "ask_vol": sides["ask"],
            "bid_vol": sides["bid"],
            "mid_vol": 0,
            "no_side_vol": 0,
            "multi_vol": 0,
            "stock_multi_vol": 0,
            "upstream_condition_details": ["isoi"] if style == "sweep" else ["auto"],
            "exchanges": exchanges,
        }
        self.frames.append((ms + rng.randint(60, 400), ["flow-alerts", payload]))
        self._volume_fields.append((payload, contract, ms))

    def finalize(self) -> None:
        """Restate volumes once every print of the day is known (an alert rendered later may print earlier)."""
        for payload, contract, ms in self._volume_fields:
            size = payload.get("size") or payload["total_size"]
            payload["volume"] = max(self.chain.volume(contract, ms), size)
            if payload.get("volume_oi_ratio"):
                payload["volume_oi_ratio"] = round(payload["volume"] / payload["open_interest"], 4)


def _split(rng: random.Random, total: int, pieces: int) -> list[int]:
    if pieces <= 1 or total < pieces:
        return [total]
    cuts = sorted(rng.sample(range(1, total), pieces - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
