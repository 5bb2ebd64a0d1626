"""Analytics snapshots: per ticker and strategy bucket, the features the signal engine reads.

``snapshot_compute`` reads a bounded window of flow alerts, option prints, price ticks and GEX ending at ``as_of``,
writes one ``AnalyticsSnapshot`` per bucket (natural key ``ticker, bucket, as_of``), mirrors it into the Redis hash
``analytics:{ticker}:{bucket}``, and after commit enqueues ``signals.evaluate`` per new snapshot and
``execution.manage_exits`` for the ticker.

Debounce: a ticker is recomputed at most once per ``ANALYTICS_MIN_INTERVAL_SECONDS`` of *market* time (``as_of``,
not the wall clock, so a replay behaves like a live day) unless a flow alert arrived since the last computation.  A
burst of prints therefore costs one computation per interval; the state lives in ``analytics:debounce:{ticker}``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from celery import current_app
from django.conf import settings
from django.db import transaction

from apps.analytics import features as ft
from apps.analytics import pricing, selectors
from apps.analytics.models import AnalyticsSnapshot
from apps.core import calendar, clock, correlation
from apps.core.events import Envelope, dumps
from apps.core.money import to_decimal, to_decimal_or_none
from apps.core.pipeline import enqueue_after_commit
from apps.core.store import get_redis
from apps.signals.models import Bucket

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EVENT_KIND = "analytics.snapshot"
DEFAULT_MIN_INTERVAL_SECONDS = 60
# Flow-alert windows per bucket (minutes): the closing view looks at the last minutes only, swings at a longer run.
ALERT_WINDOWS: dict[str, int] = {Bucket.ZERO_DTE: 30, Bucket.ONE_DTE: 45, Bucket.SWING_14D: 90, Bucket.MOC: 20}
# Prints are far more numerous than alerts: one shared, shorter window keeps each snapshot to a few milliseconds.
TRADE_WINDOW = timedelta(minutes=15)
GEX_LOOKBACK = timedelta(minutes=15)
OPENING_RANGE = timedelta(minutes=30)
RECENT_TICKS = timedelta(minutes=31)
SWING_MIN_DAYS = 14
MAX_CANDIDATES = 24
EVIDENCE_ALERTS = 8


@dataclass
class SnapshotResult:
    """What one ``snapshot_compute`` call did: ``computed`` is False when it was debounced or out of session."""

    computed: bool
    reason: str = ""
    snapshots: list[AnalyticsSnapshot] = field(default_factory=list)


def min_interval() -> timedelta:
    return timedelta(seconds=getattr(settings, "ANALYTICS_MIN_INTERVAL_SECONDS", DEFAULT_MIN_INTERVAL_SECONDS))


def bucket_expiries(*, bucket: str, day: date) -> tuple[date, date | None]:
    """The expiry range ``[first, last]`` (``None`` = open-ended) a bucket covers on trading day ``day``."""
    if bucket == Bucket.ZERO_DTE:
        return day, day
    if bucket == Bucket.ONE_DTE:
        following = calendar.next_trading_day(day)
        return following, following
    if bucket == Bucket.SWING_14D:
        return day + timedelta(days=SWING_MIN_DAYS), None
    # The closing window trades what is cheap to hold for minutes: today's and the next session's expiries.
    return day, calendar.next_trading_day(day)


def _in_bucket(expiry: date, span: tuple[date, date | None]) -> bool:
    first, last = span
    return expiry >= first and (last is None or expiry <= last)


def _debounce(*, ticker: str, as_of: datetime) -> tuple[bool, str]:
    """(compute?, newest alert id): skip when the last computation is younger than the interval and no alert is new."""
    newest_alert = selectors.latest_flow_alert_id(
        ticker=ticker, end=as_of, lookback=timedelta(minutes=max(ALERT_WINDOWS.values()))
    )
    state = cast(dict[str, str], get_redis().hgetall(f"analytics:debounce:{ticker}"))  # decode_responses
    if not state.get("as_of"):
        return True, newest_alert
    last = datetime.fromisoformat(state["as_of"])
    new_alert = bool(newest_alert) and newest_alert != state.get("alert", "")
    if new_alert and as_of != last:
        return True, newest_alert
    return as_of - last >= min_interval(), newest_alert


def _quote_for(trade: dict[str, Any], quote: dict[str, str] | None, as_of: datetime) -> dict[str, Any]:
    """The freshest quote not newer than ``as_of``: the Redis ``latest:uw:quote`` when it is, else the print's NBBO."""
    if quote and quote.get("ts") and quote.get("ask"):
        quoted_at = datetime.fromisoformat(quote["ts"])
        if trade["executed_at"] <= quoted_at <= as_of:
            return {
                "bid": to_decimal_or_none(quote.get("bid")),
                "ask": to_decimal_or_none(quote.get("ask")),
                "iv": to_decimal_or_none(quote.get("iv")),
                "delta": to_decimal_or_none(quote.get("delta")),
                "underlying": to_decimal_or_none(quote.get("underlying_price")),
                "ts": quoted_at,
                "source": "latest_quote",
            }
    return {
        "bid": trade["nbbo_bid"],
        "ask": trade["nbbo_ask"],
        "iv": trade["implied_volatility"],
        "delta": trade["delta"],
        "underlying": trade["underlying_price"],
        "ts": trade["executed_at"],
        "source": "option_trade",
    }


def _candidates(
    *, trades: list[dict[str, Any]], quotes: dict[str, dict[str, str]], as_of: datetime, spot: Decimal | None
) -> list[dict[str, Any]]:
    """Contracts printed in the window with their freshest quote and a delta (the feed's, else Black-Scholes)."""
    newest: dict[str, dict[str, Any]] = {}
    volume: dict[str, int] = defaultdict(int)
    lean: dict[str, int] = defaultdict(int)
    for trade in trades:
        symbol = trade["option_symbol"]
        newest[symbol] = trade
        volume[symbol] += trade["size"]
        lean[symbol] += ft.trade_lean(trade)
    ranked = sorted(newest, key=lambda s: (-volume[s], s))[:MAX_CANDIDATES]
    result = []
    for symbol in ranked:
        trade = newest[symbol]
        quote = _quote_for(trade, quotes.get(symbol), as_of)
        bid, ask = quote["bid"], quote["ask"]
        if bid is None or ask is None or ask <= 0:
            continue
        underlying = spot or quote["underlying"]
        delta, iv, source = quote["delta"], quote["iv"], "feed"
        if delta is None and underlying:
            t_years = pricing.years_to_expiry(as_of=as_of, expiry=trade["expiry"])
            mid = (bid + ask) / 2
            if iv is None:
                iv = pricing.implied_volatility(
                    option_price=mid, spot=underlying, strike=trade["strike"], t_years=t_years, right=trade["right"]
                )
            if iv is not None:
                delta = pricing.greeks(
                    spot=underlying, strike=trade["strike"], t_years=t_years, sigma=iv, right=trade["right"]
                ).delta
                source = "black_scholes"
        if delta is None:
            continue
        result.append(
            {
                "option_symbol": symbol,
                "right": trade["right"],
                "strike": ft.dec_str(trade["strike"]),
                "expiry": trade["expiry"].isoformat(),
                "bid": ft.dec_str(bid),
                "ask": ft.dec_str(ask),
                "delta": round(float(delta), 4),
                "iv": round(float(iv), 4) if iv is not None else None,
                "greeks_source": source,
                "open_interest": trade["open_interest"],
                "window_volume": volume[symbol],
                "lean": lean[symbol],
                "quote_ts": quote["ts"].isoformat(),
                "quote_source": quote["source"],
                "trade_uw_id": trade["uw_id"],
            }
        )
    return result


def _market_features(
    *, ticker: str, as_of: datetime, session: calendar.MarketSession, trades: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[int]]:
    """Ticker-wide features (price, VWAP, volatility, GEX, walls, clock) shared by every bucket, and GEX row ids."""
    # Recent ticks for volatility and momentum; the session-long VWAP and the opening range are summed in SQL, so
    # the cost does not grow through the day.
    ticks = selectors.price_ticks_between(ticker=ticker, start=max(session.open, as_of - RECENT_TICKS), end=as_of)
    range_end = session.open + OPENING_RANGE
    market = ft.price_features(
        ticks=ticks,
        as_of=as_of,
        vwap=selectors.session_vwap(ticker=ticker, start=session.open, end=as_of),
        opening_range=(
            selectors.price_range(ticker=ticker, start=session.open, end=range_end) if as_of >= range_end else None
        ),
        tick_count=len(ticks),
    )
    spot = to_decimal(market["spot"]) if "spot" in market else None
    if spot is None:
        latest = selectors.latest_price(ticker=ticker)
        spot = to_decimal_or_none(latest.get("close"))
        if spot is not None:
            market["spot"] = ft.dec_str(spot)
    gex_ids: list[int] = []
    gex = selectors.latest_gex(ticker=ticker, end=as_of, lookback=GEX_LOOKBACK)
    if gex is not None and gex.gamma_oi is not None:
        gex_ids.append(gex.pk)
        market["net_gex"] = float(gex.gamma_oi)
        market["gex_regime"] = "long_gamma" if gex.gamma_oi >= 0 else "short_gamma"
        if gex.gamma_dir is not None:
            market["net_gex_dir"] = float(gex.gamma_dir)
    strike_rows = selectors.latest_gex_strikes(ticker=ticker, end=as_of)
    if strike_rows:
        gex_ids.append(strike_rows[0]["id"])
        strikes = [
            (row["strike"], float(row["call_gamma_oi"] or 0), -abs(float(row["put_gamma_oi"] or 0)))
            for row in strike_rows
        ]
        market["gamma_profile_source"] = "gex_strike"
    else:
        strikes = ft.strikes_from_trades(trades=trades, spot=spot)
        market["gamma_profile_source"] = "option_trades" if strikes else "none"
    market.update(ft.gamma_profile(strikes=strikes, spot=spot))
    market.update(
        {
            "minutes_since_open": round(session.minutes_since_open(as_of), 2),
            "minutes_left": round(session.minutes_to_close(as_of), 2),
            "minutes_to_options_close": round((session.options_close - as_of).total_seconds() / 60, 2),
            "market_time": as_of.astimezone(calendar.NEW_YORK).strftime("%H:%M:%S"),
        }
    )
    return market, gex_ids


def _bucket_features(
    *,
    bucket: str,
    as_of: datetime,
    day: date,
    alerts: list[dict[str, Any]],
    trades: list[dict[str, Any]],
    market: dict[str, Any],
    quotes: dict[str, dict[str, str]],
    gex_ids: list[int],
) -> tuple[dict[str, Any], Decimal]:
    span = bucket_expiries(bucket=bucket, day=day)
    window = timedelta(minutes=ALERT_WINDOWS[bucket])
    start = as_of - window
    bucket_alerts = [a for a in alerts if a["executed_at"] >= start and _in_bucket(a["expiry"], span)]
    trade_start = as_of - min(window, TRADE_WINDOW)
    bucket_trades = [t for t in trades if _in_bucket(t["expiry"], span)]
    tape_trades = [t for t in bucket_trades if t["executed_at"] >= trade_start]
    spot = to_decimal(market["spot"]) if market.get("spot") else None
    features: dict[str, Any] = {
        "bucket": bucket,
        "window_minutes": ALERT_WINDOWS[bucket],
        "expiry_from": span[0].isoformat(),
        "expiry_to": span[1].isoformat() if span[1] else None,
        **market,
        **ft.flow_features(alerts=bucket_alerts, as_of=as_of, window=window),
        **ft.tape_features(trades=tape_trades),
        "contracts": _candidates(trades=bucket_trades, quotes=quotes, as_of=as_of, spot=spot),
    }
    strongest = sorted(bucket_alerts, key=lambda a: (-abs(ft.alert_lean(a)), a["uw_id"]))[:EVIDENCE_ALERTS]
    features["evidence"] = {
        "flow_alerts": sorted(a["uw_id"] for a in strongest),
        "gex": gex_ids,
    }
    confidence = ft.data_confidence(
        alert_count=len(bucket_alerts),
        trade_count=len(tape_trades),
        tick_count=market.get("tick_count", 0),
        has_gex="net_gex" in market,
    )
    return features, confidence


def _publish(snapshot: AnalyticsSnapshot) -> None:
    get_redis().hset(
        f"analytics:{snapshot.ticker}:{snapshot.bucket}",
        mapping={
            "snapshot_id": str(snapshot.pk),
            "as_of": snapshot.as_of.isoformat(),
            "schema_version": str(snapshot.schema_version),
            "event_id": snapshot.event_id,
            "confidence": str(snapshot.confidence),
            "features": dumps(snapshot.features).decode(),
        },
    )


def _send_manage_exits(ticker: str, as_of: str) -> None:
    # The execution stage is built separately; send by name only once its task is registered in this process.
    task = current_app.tasks.get("execution.manage_exits")
    if task is not None:
        task.apply_async(args=(ticker, as_of))


def snapshot_compute(*, ticker: str, as_of: datetime | str) -> SnapshotResult:
    """Compute and store one snapshot per bucket for ``ticker`` at ``as_of`` (market-data time).

    Guarantees: reads nothing newer than ``as_of``; one row per ``(ticker, bucket, as_of)`` however often it runs;
    next stages are enqueued only after the rows commit, and only for snapshots this call created.  Returns without
    work when debounced or when ``as_of`` is outside the day's regular session and options close.
    """
    instant = datetime.fromisoformat(as_of) if isinstance(as_of, str) else as_of
    if instant.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    ticker = ticker.upper()
    day = calendar.market_day(instant)
    session = calendar.session_for(day)
    if session is None or not session.open <= instant <= session.options_close:
        return SnapshotResult(computed=False, reason="outside the session")
    go, newest_alert = _debounce(ticker=ticker, as_of=instant)
    if not go:
        return SnapshotResult(computed=False, reason="debounced")

    alerts = selectors.flow_alerts_between(
        ticker=ticker, start=instant - timedelta(minutes=max(ALERT_WINDOWS.values())), end=instant
    )
    trades = selectors.option_trades_between(ticker=ticker, start=instant - TRADE_WINDOW, end=instant)
    market, gex_ids = _market_features(ticker=ticker, as_of=instant, session=session, trades=trades)
    quotes = selectors.latest_quotes(symbols=sorted({t["option_symbol"] for t in trades}))

    result = SnapshotResult(computed=True)
    with transaction.atomic():
        for bucket in Bucket.values:
            features, confidence = _bucket_features(
                bucket=bucket,
                as_of=instant,
                day=day,
                alerts=alerts,
                trades=trades,
                market=market,
                quotes=quotes,
                gex_ids=gex_ids,
            )
            payload = {"ticker": ticker, "bucket": bucket, "as_of": instant.isoformat(), "features": features}
            event = Envelope(
                kind=EVENT_KIND, schema_version=SCHEMA_VERSION, payload=payload, correlation_id=correlation.current()
            )
            snapshot, created = AnalyticsSnapshot.objects.get_or_create(
                ticker=ticker,
                bucket=bucket,
                as_of=instant,
                defaults={
                    "schema_version": SCHEMA_VERSION,
                    "event_id": event.id,
                    "features": features,
                    "confidence": confidence,
                    "created_at": clock.now(),
                },
            )
            result.snapshots.append(snapshot)
            _publish(snapshot)
            if created:
                from apps.signals.tasks import evaluate

                enqueue_after_commit(evaluate, snapshot.pk)
        iso = instant.isoformat()
        transaction.on_commit(lambda: _send_manage_exits(ticker, iso))
    # Recorded only once the snapshots are committed: a failed computation is retried, not debounced away.
    get_redis().hset(f"analytics:debounce:{ticker}", mapping={"as_of": iso, "alert": newest_alert})
    return result
