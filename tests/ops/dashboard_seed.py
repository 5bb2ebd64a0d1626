"""What the dashboard tests put in front of the page: an operator, a UW listener report with frames, an open
position, an unacknowledged alert and chart samples, written exactly where the platform writes them."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import orjson
from django.contrib.auth.models import Permission, User

from apps.core import clock, occ, store
from apps.execution.models import Position, Trade
from apps.ingestion.uw.stream import CHANNELS_KEY, STATE_KEY
from apps.ops.controls import CONTROLS
from apps.ops.dashboard_selectors import SERIES_KEY
from apps.ops.models import Alert
from apps.signals.models import Signal
from tests.risk.factories import SignalFactory

# Tables that grow by the tick: neither the dashboard nor an admin list may count or scan them.
TICK_TABLES = (
    "uw_raw_frames",
    "uw_raw_batches",
    "uw_quarantine",
    "uw_flow_alerts",
    "uw_option_trades",
    "uw_price_ticks",
    "uw_gex_snapshots",
    "uw_gex_strikes",
    "uw_news",
    "uw_rest_payloads",
    "uw_greek_exposures",
    "uw_stock_states",
    "uw_candles",
    "uw_market_tide",
    "uw_net_prem_ticks",
    "uw_option_contracts",
    "ib_quotes",
    "analytics_snapshots",
)
# What an operator needs for the dashboard's controls: every control's permission.
OPERATOR_PERMISSIONS = sorted({control.permission for control in CONTROLS.values()})
# Each seeded position its own contract (the book holds one position per option symbol).
_strikes = itertools.count(600)


def staff_user(username: str, *, permissions: list[str] | tuple[str, ...] = (), password: str = "pw-dashboard") -> User:
    """A staff user (not a superuser) holding exactly ``permissions`` ("app_label.codename")."""
    user = User.objects.create_user(username=username, password=password, is_staff=True)
    for dotted in permissions:
        app_label, codename = dotted.split(".", 1)
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)  # a fresh instance: the permission cache is empty


def listener_report(
    *, frames: int = 1200, rate: float = 42.5, channels: tuple[str, ...] = ("flow-alerts", "price:SPY")
) -> None:
    """The UW listener's once-a-second report, as ``uw_stream`` writes it."""
    now = time.time()
    client = store.get_redis()
    client.hset(
        STATE_KEY,
        mapping={"status": "connected", "updated_at": f"{now:.3f}", "frames": str(frames), "reconnects": "1"},
    )
    client.hset(
        CHANNELS_KEY,
        mapping={
            name: orjson.dumps(
                {"frames": frames // len(channels), "rate_per_s": rate, "last_frame_age_s": 0.4}
            ).decode()
            for name in channels
        },
    )


def open_position(*, mark: str = "1.45", entry: str = "1.20", quantity: int = 2) -> Trade:
    """An open trade with its book position marked at ``mark``."""
    signal = SignalFactory(status=Signal.Status.ACTIVE, expiry=clock.now().date(), strike=Decimal(next(_strikes)))
    symbol = occ.build(signal.ticker, signal.expiry, signal.right, signal.strike)
    trade = Trade.objects.create(
        signal=signal,
        strategy=signal.strategy,
        ticker=signal.ticker,
        option_symbol=symbol,
        quantity=quantity,
        entry_price=Decimal(entry),
        entry_at=clock.now(),
        status=Trade.Status.OPEN,
    )
    unrealized = (Decimal(mark) - Decimal(entry)) * quantity * 100
    Position.objects.create(
        option_symbol=symbol,
        ticker=signal.ticker,
        quantity=quantity,
        avg_cost=Decimal(entry),
        mark=Decimal(mark),
        unrealized_pnl=unrealized,
        updated_at=clock.now(),
    )
    return trade


def unacknowledged_alert(
    *,
    rule: str = "FeedStale",
    key: str = "feed_stale:uw_stream",
    summary: str = "uw_stream: no frame for 95 s",
    severity: str = Alert.Severity.CRITICAL,
) -> Alert:
    now = clock.now()
    return Alert.objects.create(
        key=key,
        rule=rule,
        severity=severity,
        summary=summary,
        raised_at=now,
        last_seen_at=now,
    )


def chart_samples(*, count: int = 12, step: float = 10.0) -> list[dict[str, object]]:
    """``count`` samples ending now, in the list the beat task appends to."""
    now = clock.now().timestamp()
    samples = [
        {
            "t": round(now - (count - i) * step, 3),
            "pnl_total": 10.0 * i,
            "pnl_open": 6.0 * i,
            "pnl_realized": 4.0 * i,
            "ingest_rate": 30.0 + i,
            "channel_rates": {"flow-alerts": 30.0 + i},
            "queues": {"ingestion": i, "ops": 0},
        }
        for i in range(count)
    ]
    client = store.get_redis()
    client.rpush(SERIES_KEY, *[orjson.dumps(sample) for sample in samples])
    return samples
