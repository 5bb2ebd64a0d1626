"""Assemble a synthetic trading day into session lines, add the noise real sessions carry, and write the file.

The day is planned whole (regimes, flow episodes, paths, alerts) and then rendered minute by minute with a random
stream per (ticker, minute), so a shorter window of the same (date, seed, tickers) is an exact slice of the day's
clean lines.
"""

from __future__ import annotations

import copy
import functools
import gzip
import io
import itertools
import math
import random
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TextIO

import orjson

from apps.core import calendar

from .chain import SIDES, Chain, Contract
from .exposure import STRIKES_EACH_SIDE, GammaProfile, snapshot_times
from .flow import FlowRenderer, Frame, TimedFrame, plan_episodes, plan_lone_alerts
from .market import (
    MINUTE_MS,
    MS,
    DayClock,
    Regime,
    market_shocks,
    plan_regimes,
    profile_for,
    regime_at,
    underlying_path,
)
from .news import plan_news

DEFAULT_TICKERS = ("SPY", "QQQ", "IWM")
DEFAULT_NOISE = 0.002
PRICE_EVERY_MS = 15 * MS
PRE_MARKET_MINUTES = 10  # price frames once a minute before the open; the default window starts here
WING_ROTATION_MINUTES = 25  # every other contract of the chain prints at least this often, staggered
WING_EXTRA_CHANCE = 0.01  # and now and then besides, more at the open and the close
GEX_STRIKE_EVERY_MINUTES = 5
NOISE_KINDS = ("broken", "duplicate", "unknown_channel", "missing_field")
UNKNOWN_CHANNELS = ("option_trades_v2:{t}", "interval_flow_beta", "price_ext:{t}", "uw_debug")
REQUIRED_FIELDS = {
    "option_trades": ("id", "option_symbol", "price", "size", "executed_at"),
    "price": ("close", "time"),
    "flow-alerts": ("id", "option_chain", "total_premium", "executed_at"),
    "gex": ("timestamp", "price"),
    "gex_strike": ("strike", "timestamp"),
    "gex_strike_expiry": ("strike", "expiry"),
    "news": ("headline", "timestamp"),
}
SIZES = (1, 2, 3, 4, 5, 10, 15, 20, 25, 50, 100, 200)
SIZE_CUM_WEIGHTS = tuple(itertools.accumulate((30, 16, 10, 6, 10, 9, 4, 5, 3, 4, 2, 1)))


Progress = Callable[[str, int, int], None]  # (stage, done, total)


class NotATradingDay(ValueError):
    """The date has no session (weekend or NYSE holiday) or lies outside the calendar."""


@dataclass
class SessionStats:
    """What a generated session holds: lines by channel and the noise lines by kind."""

    lines: int = 0
    acks: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)  # data lines (noise included), acks apart
    noise: Counter[str] = field(default_factory=Counter)
    bytes_written: int = 0
    first_received_at: int | None = None
    last_received_at: int | None = None

    @property
    def by_kind(self) -> Counter[str]:
        """Lines by channel family (``option_trades`` for every ``option_trades:T``), acks apart."""
        kinds: Counter[str] = Counter()
        for channel, count in self.by_channel.items():
            kinds[channel.split(":", 1)[0]] += count
        return kinds

    def summary(self) -> str:
        kinds = ", ".join(f"{name} {count}" for name, count in sorted(self.by_kind.items()))
        noise = ", ".join(f"{name} {self.noise[name]}" for name in NOISE_KINDS)
        return f"{self.lines} lines ({self.acks} acks, {kinds}); noise: {noise}"


@dataclass(frozen=True, slots=True)
class SessionLine:
    received_at: int
    text: str
    channel: str  # "" for a broken line
    noise: str  # "" for a clean line, else one of NOISE_KINDS
    ack: bool = False  # a join acknowledgement


@dataclass(frozen=True)
class Session:
    lines: list[SessionLine]
    stats: SessionStats


def _ms(instant: datetime) -> int:
    return int(instant.timestamp() * MS)


def _ny_ms(day: date, wall: time) -> int:
    return _ms(datetime.combine(day, wall, tzinfo=calendar.NEW_YORK))


def _poisson(rng: random.Random, rate: float) -> int:
    limit, product, count = math.exp(-rate), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def _render(received_at: int, frame: Frame) -> str:
    return orjson.dumps({"received_at": received_at, "frame": frame}).decode()


class _TickerDay:
    """One underlying's day: its chain, flow and exposure, rendered into timed frames."""

    def __init__(
        self,
        *,
        ticker: str,
        key: str,
        clock: DayClock,
        regimes: list[Regime],
        market: list[float],
        daily_vol: float,
    ) -> None:
        self.ticker = ticker
        self.key = key
        self.clock = clock
        self.regimes = regimes
        self.profile = profile_for(ticker)
        plan = random.Random(f"{key}|plan")
        start_price = self.profile.price * math.exp(plan.gauss(0.0, 0.02))
        iv_level = self.profile.atm_iv * math.exp(plan.gauss(0.0, 0.12)) * math.sqrt(daily_vol / 0.009)
        self.episodes, impulses = plan_episodes(rng=plan, clock=clock, regimes=regimes)
        self.lone_alerts = plan_lone_alerts(rng=plan, clock=clock)
        path = underlying_path(
            rng=random.Random(f"{key}|path"),
            clock=clock,
            start_price=start_price,
            profile=self.profile,
            market=market,
            daily_vol=daily_vol,
            impulses=impulses,
        )
        self.chain = Chain(ticker=ticker, profile=self.profile, clock=clock, path=path, iv_level=iv_level, seed_key=key)
        self.flow = FlowRenderer(chain=self.chain, profile=self.profile, rng=random.Random(f"{key}|flow"))
        planned: list[tuple[int, Callable[[], None]]] = [
            (e.start_ms, functools.partial(self.flow.render_episode, e)) for e in self.episodes
        ]
        planned += [(a.ms, functools.partial(self.flow.render_lone, a)) for a in self.lone_alerts]
        for _, render in sorted(planned, key=lambda item: item[0]):
            render()
        self.prints = self._plan_prints()
        self.flow.finalize()  # after the regular prints too: an alert's volume counts them
        self.gamma = GammaProfile(chain=self.chain, rng=random.Random(f"{key}|gamma"))

    def bullishness(self, ms: int) -> float:
        return float(regime_at(self.regimes, ms).direction)

    def hot_contracts(self, minute_ms: int) -> list[Contract]:
        end = minute_ms + MINUTE_MS
        return [
            contract
            for contract, spans in self.flow.hot.items()
            if any(first < end and minute_ms < last for first, last in spans)
        ]

    def price_frames(self, start_ms: int, end_ms: int) -> Iterator[TimedFrame]:
        clock = self.clock
        stamps = list(range(clock.open_ms - PRE_MARKET_MINUTES * MINUTE_MS, clock.open_ms, MINUTE_MS))
        stamps += list(range(clock.open_ms, clock.options_close_ms + 1, PRICE_EVERY_MS))
        channel = f"price:{self.ticker}"
        for ms in stamps:
            rng = random.Random(f"{self.key}|price|{ms}")
            received = ms + rng.randint(3, 40)
            if start_ms <= received < end_ms:
                # shares in the interval: scaled off the ticker's option activity, U-shaped like it
                volume = int(self.profile.strike_volume * 0.6 * clock.volatility_shape(ms) * rng.uniform(0.5, 1.5))
                payload = {"close": f"{self.chain.spot(ms):.2f}", "time": ms, "vol": volume, "ticker": self.ticker}
                yield received, [channel, payload]

    def exposure_frames(self, start_ms: int, end_ms: int) -> Iterator[TimedFrame]:
        clock, ticker = self.clock, self.ticker
        first, last = clock.open_ms, clock.options_close_ms + 1
        for ms in snapshot_times(start_ms=first, end_ms=last, every_minutes=1):
            rng = random.Random(f"{self.key}|gex|{ms}")
            received = ms + rng.randint(1500, 2500)
            if start_ms <= received < end_ms:
                yield received, [f"gex:{ticker}", self.gamma.ticker_payload(ms, rng, bullishness=self.bullishness(ms))]
        for ms in snapshot_times(start_ms=first, end_ms=last, every_minutes=GEX_STRIKE_EVERY_MINUTES):
            rng = random.Random(f"{self.key}|gex_strike|{ms}")
            atm = self.chain.atm_strike(ms)
            received = ms + rng.randint(2500, 3500)
            for offset in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1):
                received += rng.randint(0, 3)
                if start_ms <= received < end_ms:
                    payload = self.gamma.strike_payload(ms, atm + offset, rng, bullishness=self.bullishness(ms))
                    yield received, [f"gex_strike:{ticker}", payload]
        for ms in snapshot_times(start_ms=first + 29 * MINUTE_MS, end_ms=clock.close_ms, every_minutes=60):
            rng = random.Random(f"{self.key}|gex_strike_expiry|{ms}")
            atm = self.chain.atm_strike(ms)
            received = ms + rng.randint(4000, 5000)
            for bucket in ("0dte", "1dte"):
                for offset in range(-2, 3):
                    received += rng.randint(0, 3)
                    if start_ms <= received < end_ms:
                        payload = self.gamma.strike_payload(
                            ms,
                            atm + offset,
                            rng,
                            bullishness=self.bullishness(ms),
                            expiry=self.chain.expiries[bucket],
                        )
                        yield received, [f"gex_strike_expiry:{ticker}", payload]

    def flow_frames(self, start_ms: int, end_ms: int) -> Iterator[TimedFrame]:
        for received, frame in self.flow.frames:
            if start_ms <= received < end_ms:
                yield received, frame

    def _plan_prints(self) -> dict[int, list[tuple[Contract, int, int, str]]]:
        """(contract, ms, size, side) of every regular print, by minute.

        Planned for the whole day (cheap) before any is rendered, so each print's ``volume`` counts every print
        before it; rendering a window then only pays for the minutes it shows.
        """
        clock, chain = self.clock, self.chain
        planned: dict[int, list[tuple[Contract, int, int, str]]] = {}
        for minute_ms in range(clock.open_ms, clock.options_close_ms, MINUTE_MS):
            rng = random.Random(f"{self.key}|prints|{minute_ms}")
            since_open = (minute_ms - clock.open_ms) / MINUTE_MS
            to_close = max((clock.close_ms - minute_ms) / MINUTE_MS, 0.0)
            extra = 0.9 * math.exp(-since_open / 20.0) + 0.9 * math.exp(-to_close / 25.0) + 0.05
            lean = 0.08 * self.bullishness(minute_ms)
            hot = set(self.hot_contracts(minute_ms))
            core = chain.core(minute_ms)
            stamps: list[tuple[Contract, int]] = []
            for contract in core + sorted(hot.difference(core), key=lambda c: c.occ):
                count = 1 + _poisson(rng, extra)
                stamps.extend((contract, minute_ms + rng.randint(0, MINUTE_MS - 1)) for _ in range(count))
            minute_index = (minute_ms - clock.open_ms) // MINUTE_MS
            for contract in chain.wings(minute_ms):
                due = (minute_index + zlib.crc32(contract.occ.encode())) % WING_ROTATION_MINUTES == 0
                if contract not in hot and (due or rng.random() < WING_EXTRA_CHANCE * extra):
                    stamps.append((contract, minute_ms + rng.randint(0, MINUTE_MS - 1)))
            prints = []
            for contract, ms in stamps:
                tilt = lean if contract.is_call else -lean
                if contract in hot:  # the alerted side keeps buying
                    tilt += 0.12 if contract.is_call else -0.12
                side = rng.choices(SIDES, weights=(0.40 + tilt, 0.40 - tilt, 0.13, 0.07))[0]
                size = rng.choices(SIZES, cum_weights=SIZE_CUM_WEIGHTS)[0]
                chain.register_print(contract, ms, size)
                prints.append((contract, ms, size, side))
            planned[minute_ms] = prints
        return planned

    def trade_frames(self, start_ms: int, end_ms: int) -> Iterator[TimedFrame]:
        """Every contract of the every-minute set (near the money, plus alerted ones) prints each minute."""
        channel = f"option_trades:{self.ticker}"
        for minute_ms, prints in self.prints.items():
            if minute_ms + MINUTE_MS + 2 * MS <= start_ms or minute_ms >= end_ms:
                continue
            rng = random.Random(f"{self.key}|trades|{minute_ms}")
            for contract, ms, size, side in prints:
                delay = rng.randint(5, 250)
                payload = self.chain.trade_payload(
                    contract=contract, ms=ms, size=size, side=side, rng=rng, created_delay_ms=delay
                )
                received = ms + delay + rng.randint(2, 30)
                if start_ms <= received < end_ms:
                    yield received, [channel, payload]


def _ack(channel: str) -> Frame:
    return [channel, {"response": {}, "status": "ok"}]


def _window(day: date, session: calendar.MarketSession, start: time | None, end: time | None) -> tuple[int, int]:
    open_ms = _ms(session.open)
    start_ms = _ny_ms(day, start) if start else open_ms - PRE_MARKET_MINUTES * MINUTE_MS
    end_ms = _ny_ms(day, end) if end else _ms(session.options_close) + 10 * MS
    if end_ms <= start_ms:
        raise ValueError(f"the window must end after it starts ({start} to {end})")
    return start_ms, end_ms


def _noise_lines(*, clean: list[tuple[int, Frame]], fraction: float, rng: random.Random) -> list[SessionLine]:
    """Extra lines of the kinds real sessions contain; the clean lines stay, so the day's data is intact."""
    data = [item for item in clean if "status" not in item[1][1]]
    wanted = round(fraction * len(clean))
    if not data or wanted <= 0:
        return []
    kinds = list(NOISE_KINDS)
    rng.shuffle(kinds)  # which kinds get the odd one out varies with the seed; the counts differ by at most one
    lines = []
    for index in range(wanted):
        kind = kinds[index % len(kinds)]
        received, frame = data[rng.randrange(len(data))]
        channel, payload = frame
        family = channel.split(":", 1)[0]
        if kind == "duplicate":
            late = received + rng.randint(200, 5000)
            lines.append(SessionLine(late, _render(late, frame), channel, kind))
        elif kind == "broken":
            late = received + rng.randint(1, 500)
            text = _render(late, frame)
            lines.append(SessionLine(late, text[: rng.randint(10, len(text) - 2)], "", kind))
        elif kind == "unknown_channel":
            late = received + rng.randint(1, 500)
            ticker = channel.split(":", 1)[1] if ":" in channel else "SPY"
            odd = rng.choice(UNKNOWN_CHANNELS).format(t=ticker)
            lines.append(SessionLine(late, _render(late, [odd, payload]), odd, kind))
        else:
            late = received + rng.randint(1, 500)
            damaged = copy.deepcopy(payload)
            damaged.pop(rng.choice(REQUIRED_FIELDS[family]), None)
            lines.append(SessionLine(late, _render(late, [channel, damaged]), channel, kind))
    return lines


@functools.lru_cache(maxsize=4)
def _market_day(day: date, seed: int) -> tuple[DayClock, list[Regime], list[float], float]:
    """The clock, regimes and market factor of (day, seed): shared by every ticker, cached for repeated builds."""
    session = calendar.session_for(day)
    if session is None:
        raise NotATradingDay(f"{day} is not a trading day (weekend or NYSE holiday)")
    clock = DayClock(day, _ms(session.open), _ms(session.close), _ms(session.options_close))
    rng = random.Random(f"{day}|{seed}|market")
    daily_vol = rng.uniform(0.006, 0.013)
    regimes = plan_regimes(rng=rng, clock=clock)
    return clock, regimes, market_shocks(rng=rng, clock=clock, regimes=regimes, daily_vol=daily_vol), daily_vol


@functools.lru_cache(maxsize=12)
def _ticker_day(day: date, seed: int, ticker: str) -> _TickerDay:
    """One ticker's planned day.  Rendering it is pure (a random stream per minute), so a cached plan serves every
    window of the same day: tests and benchmarks that cut several windows pay for the plan once."""
    clock, regimes, market, daily_vol = _market_day(day, seed)
    return _TickerDay(
        ticker=ticker, key=f"{day}|{seed}|{ticker}", clock=clock, regimes=regimes, market=market, daily_vol=daily_vol
    )


def build_session(
    day: date,
    seed: int,
    *,
    tickers: tuple[str, ...] | list[str] = DEFAULT_TICKERS,
    noise: float = DEFAULT_NOISE,
    start: time | None = None,
    end: time | None = None,
    progress: Progress | None = None,
) -> Session:
    """Generate the session of ``day`` (optionally only ``start``-``end`` New York time) in received order.

    ``progress`` hears ``("generate", tickers done, tickers)`` as each underlying is rendered.
    """
    tickers = tuple(t.strip().upper() for t in tickers if t.strip())
    if not tickers:
        raise ValueError("at least one ticker is needed")
    if not 0.0 <= noise < 0.5:
        raise ValueError(f"noise must be a fraction between 0 and 0.5, got {noise}")
    try:
        session = calendar.session_for(day)
    except ValueError as exc:
        raise NotATradingDay(str(exc)) from exc
    if session is None:
        raise NotATradingDay(f"{day} is not a trading day (weekend or NYSE holiday)")
    start_ms, end_ms = _window(day, session, start, end)
    clock, regimes, _, _ = _market_day(day, seed)

    acks = ["flow-alerts", "news"]
    timed: list[TimedFrame] = []
    for done, ticker in enumerate(tickers, start=1):
        acks += [f"{name}:{ticker}" for name in ("option_trades", "price", "gex", "gex_strike", "gex_strike_expiry")]
        ticker_day = _ticker_day(day, seed, ticker)
        timed.extend(ticker_day.price_frames(start_ms, end_ms))
        timed.extend(ticker_day.exposure_frames(start_ms, end_ms))
        timed.extend(ticker_day.trade_frames(start_ms, end_ms))
        timed.extend(ticker_day.flow_frames(start_ms, end_ms))
        if progress:
            progress("generate", done, len(tickers))
    for published, payload in plan_news(rng=random.Random(f"{day}|{seed}|news"), clock=clock, regimes=regimes):
        received = published + 50 + published % 1450
        if start_ms <= received < end_ms:
            timed.append((received, ["news", payload]))
    # the socket acknowledges each join as the connection opens, just before the window's first frame
    clean = [(start_ms - 2 * MS + 3 * index, _ack(channel)) for index, channel in enumerate(acks)]
    clean += sorted(timed, key=lambda item: item[0])

    lines = [
        SessionLine(received, _render(received, frame), frame[0], "", ack="status" in frame[1])
        for received, frame in clean
    ]
    noise_rng = random.Random(f"{day}|{seed}|{','.join(tickers)}|noise|{noise}")
    lines += _noise_lines(clean=clean, fraction=noise, rng=noise_rng)
    lines.sort(key=lambda line: line.received_at)  # stable: clean lines keep their order on equal times

    stats = SessionStats(lines=len(lines))
    for line in lines:
        if line.ack:
            stats.acks += 1
        elif line.channel:
            stats.by_channel[line.channel] += 1
        if line.noise:
            stats.noise[line.noise] += 1
    if lines:
        stats.first_received_at, stats.last_received_at = lines[0].received_at, lines[-1].received_at
    return Session(lines=lines, stats=stats)


def session_lines(day: date, seed: int, **options: Any) -> Iterator[str]:
    """The session's lines exactly as written to a file (no newline), noise included."""
    for line in build_session(day, seed, **options).lines:
        yield line.text


def generate_session(day: date, seed: int, **options: Any) -> Iterator[dict[str, Any]]:
    """The session's records ``{"received_at", "frame"}`` in received order.

    A broken line (noise) has no record and is skipped; use :func:`session_lines` for the exact text.
    """
    for line in build_session(day, seed, **options).lines:
        if line.noise != "broken":
            yield orjson.loads(line.text)


@contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    if path.suffix != ".gz":
        with path.open("w", encoding="utf-8") as handle:
            yield handle
        return
    # mtime=0 and no file name in the header, so the same session gives the same bytes
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        with io.TextIOWrapper(packed, encoding="utf-8") as handle:
            yield handle


def write_session(
    path: Path | str,
    day: date,
    seed: int,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> SessionStats:
    """Write the session as NDJSON (gzip when ``path`` ends in ``.gz``), creating the parent directory.

    ``progress`` hears ``("generate", tickers done, tickers)`` and then ``("write", lines written, lines)``.
    """
    target = Path(path)
    session = build_session(day, seed, progress=progress, **options)
    target.parent.mkdir(parents=True, exist_ok=True)
    batch = 2000
    with _open_text(target) as handle:
        for first in range(0, len(session.lines), batch):
            chunk = session.lines[first : first + batch]
            handle.write("".join(f"{line.text}\n" for line in chunk))
            if progress:
                progress("write", first + len(chunk), len(session.lines))
    session.stats.bytes_written = target.stat().st_size
    return session.stats
