"""Headlines for the ``news`` channel: a few just before the open, the rest through the day, some echoing the regime."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from .market import MINUTE_MS, DayClock, Regime, regime_at

BULLISH = (
    "Stocks extend gains as Treasury yields slip",
    "Chipmakers rally after upbeat guidance from {name}",
    "Fed's {official} says rate cuts remain on the table",
    "Retail sales beat estimates, consumer spending holds up",
    "S&P 500 climbs to session high as tech leads",
    "Small caps jump as rate-cut bets build",
)
BEARISH = (
    "Stocks slide as Treasury yields climb to multi-week high",
    "Fed's {official} warns inflation fight is not over",
    "{name} shares drop after weak outlook, weighing on tech",
    "Jobless claims rise more than expected",
    "Nasdaq falls as megacaps retreat",
    "Oil jumps on supply worries, equities slip",
)
NEUTRAL = (
    "Treasury to auction $42 billion of 10-year notes",
    "{name} to report earnings after the bell",
    "Options expiration in focus as traders eye key strikes",
    "Fed's {official} to speak on the economic outlook at 2 pm ET",
    "Crude inventories in line with estimates",
    "Dollar steady ahead of next week's data",
)
TRUMP = (
    "TRUMP: THE STOCK MARKET IS AT RECORD HIGHS, BEST ECONOMY EVER!",
    "TRUMP: THE FED MUST LOWER RATES NOW!",
    "TRUMP: BIG TRADE ANNOUNCEMENT COMING SOON",
)
NAMES = {"Nvidia": "NVDA", "Apple": "AAPL", "Microsoft": "MSFT", "Broadcom": "AVGO", "Tesla": "TSLA", "Amazon": "AMZN"}
OFFICIALS = ("Waller", "Williams", "Logan", "Goolsbee", "Bowman", "Jefferson")
SOURCES = ("Reuters", "Bloomberg", "Dow Jones", "Benzinga", "MarketWatch", "CNBC")
TICKER_SETS: tuple[list[str], ...] = (["SPY"], ["QQQ"], ["IWM"], ["SPY", "QQQ"], ["SPY", "QQQ", "IWM"], [])


def plan_news(*, rng: random.Random, clock: DayClock, regimes: list[Regime]) -> list[tuple[int, dict[str, Any]]]:
    """(published ms, payload) pairs; a headline during a trend leans the trend's way two times in three."""
    items = []
    pre_open = clock.open_ms - 9 * MINUTE_MS  # inside the default window, which starts 10 minutes before the open
    for _ in range(rng.randint(10, 30)):
        ms = rng.randint(pre_open, clock.open_ms) if rng.random() < 0.25 else rng.randint(clock.open_ms, clock.close_ms)
        ms += rng.randint(0, 999)
        trump = rng.random() < 0.1
        if trump:
            headline, source, tickers = rng.choice(TRUMP), "Truth Social", []
        else:
            direction = regime_at(regimes, ms).direction
            if direction and rng.random() < 2 / 3:
                pool = BULLISH if direction > 0 else BEARISH
            else:
                pool = rng.choice((BULLISH, BEARISH, NEUTRAL, NEUTRAL))
            template, name = rng.choice(pool), rng.choice(sorted(NAMES))
            headline = template.format(name=name, official=rng.choice(OFFICIALS))
            # a company headline is tagged with the company (and the index it moves), a macro one with the ETFs
            tickers = [NAMES[name], "QQQ"] if "{name}" in template else list(rng.choice(TICKER_SETS))
            source = rng.choice(SOURCES)
        stamp = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        items.append(
            (ms, {"headline": headline, "timestamp": stamp, "source": source, "tickers": tickers, "is_trump_ts": trump})
        )
    return sorted(items, key=lambda item: item[0])
