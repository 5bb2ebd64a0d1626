from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from apps.analytics.features import gamma_profile
from apps.analytics.models import AnalyticsSnapshot
from apps.analytics.services import snapshot_compute
from apps.signals.models import Signal
from tests.analytics.factories import (
    FlowAlertFactory,
    GexStrikeFactory,
    OptionTradeFactory,
    flow_scenario,
)

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)  # a Friday; New York is UTC-5
NEXT_DAY = date(2026, 11, 23)
AT_11 = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)  # 11:00 New York


def features(bucket: str, as_of: datetime = AT_11) -> dict:
    return AnalyticsSnapshot.objects.get(ticker="SPY", bucket=bucket, as_of=as_of).features


def test_writes_one_snapshot_per_bucket_and_mirrors_it_into_redis(redis_store):
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    result = snapshot_compute(ticker="SPY", as_of=AT_11.isoformat())
    assert result.computed
    assert sorted(s.bucket for s in result.snapshots) == ["0dte", "14d", "1dte", "moc"]
    stored = redis_store.hgetall("analytics:SPY:0dte")
    assert stored["snapshot_id"] == str(AnalyticsSnapshot.objects.get(ticker="SPY", bucket="0dte").pk)
    assert stored["schema_version"] == "1"
    assert orjson.loads(stored["features"])["alert_count"] == 4
    assert len(stored["event_id"]) == 32


def test_bullish_flow_leans_every_flow_feature_bullish():
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    snapshot_compute(ticker="SPY", as_of=AT_11)
    f = features("0dte")
    assert f["premium_imbalance"] > 0.5
    assert f["sweep_direction"] == 1.0
    assert f["volume_imbalance"] == 1.0
    assert f["cluster_count"] == 1 and f["top_cluster"]["direction"] == "bullish"
    assert f["spot_vs_vwap_pct"] > 0
    assert f["return_15m_pct"] > 0
    assert f["opening_range"] == "above"
    assert f["gex_regime"] == "short_gamma"
    assert Decimal(f["bullish_premium"]) == Decimal("400000")
    assert Decimal(f["bearish_premium"]) == Decimal("80000")


def test_bearish_flow_leans_bearish():
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bearish")
    snapshot_compute(ticker="SPY", as_of=AT_11)
    f = features("0dte")
    assert f["premium_imbalance"] < -0.5
    assert f["volume_imbalance"] == -1.0
    assert f["return_15m_pct"] < 0


def test_each_bucket_sees_only_its_expiries():
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=NEXT_DAY, direction="bullish")
    snapshot_compute(ticker="SPY", as_of=AT_11)
    assert features("0dte")["alert_count"] == 0
    assert features("1dte")["alert_count"] == 4
    assert features("14d")["alert_count"] == 0
    assert {c["expiry"] for c in features("1dte")["contracts"]} == {NEXT_DAY.isoformat()}


def test_nothing_newer_than_as_of_is_read():
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    FlowAlertFactory(ticker="SPY", expiry=DAY, executed_at=AT_11 + timedelta(seconds=5))
    snapshot_compute(ticker="SPY", as_of=AT_11)
    assert features("0dte")["alert_count"] == 4


def test_contracts_without_feed_greeks_get_black_scholes_delta():
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    OptionTradeFactory(
        ticker="SPY",
        expiry=DAY,
        right="C",
        strike=Decimal("605"),
        price=Decimal("0.60"),
        nbbo_bid=Decimal("0.58"),
        nbbo_ask=Decimal("0.62"),
        delta=None,
        implied_volatility=None,
        size=500,
        executed_at=AT_11 - timedelta(seconds=10),
    )
    snapshot_compute(ticker="SPY", as_of=AT_11)
    contract = next(c for c in features("0dte")["contracts"] if c["strike"] == "605")
    assert contract["greeks_source"] == "black_scholes"
    assert 0.0 < contract["delta"] < 0.5
    assert contract["iv"] > 0


def test_newer_redis_quote_replaces_the_print_nbbo(redis_store):
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    symbol = "SPY261120C00602000"
    redis_store.hset(
        f"latest:uw:quote:{symbol}",
        mapping={
            "bid": "1.60",
            "ask": "1.64",
            "delta": "0.43",
            "iv": "0.2",
            "ts": (AT_11 - timedelta(seconds=5)).isoformat(),
        },
    )
    snapshot_compute(ticker="SPY", as_of=AT_11)
    contract = next(c for c in features("0dte")["contracts"] if c["option_symbol"] == symbol)
    assert (contract["ask"], contract["quote_source"]) == ("1.64", "latest_quote")


def test_gamma_flip_and_walls_come_from_the_strike_profile():
    for strike, calls, puts in ((590, 0, 900), (595, 100, 400), (600, 300, 100), (605, 800, 0), (610, 200, 0)):
        GexStrikeFactory(
            ticker="SPY",
            ts=AT_11 - timedelta(minutes=2),
            strike=Decimal(strike),
            call_gamma_oi=Decimal(calls),
            put_gamma_oi=Decimal(-puts),
        )
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    snapshot_compute(ticker="SPY", as_of=AT_11)
    f = features("0dte")
    assert f["gamma_profile_source"] == "gex_strike"
    assert (f["call_wall"], f["put_wall"]) == ("605", "590")
    # Cumulative net gamma: -900, -1200, -1000, -200, 0 ... it reaches zero at 610.
    assert Decimal(f["gamma_flip"]) == Decimal("610.00")


def test_gamma_flip_is_interpolated_between_strikes():
    profile = gamma_profile(
        strikes=[(Decimal(95), 0.0, -300.0), (Decimal(100), 100.0, 0.0), (Decimal(105), 500.0, 0.0)],
        spot=Decimal(100),
    )
    # -300, -200, +300: the sign changes between 100 and 105, 200/(200+300) of the way.
    assert Decimal(profile["gamma_flip"]) == Decimal("102.00")
    assert profile["dist_call_wall_pct"] == 5.0


def test_debounce_computes_a_burst_once_per_interval(settings):
    settings.ANALYTICS_MIN_INTERVAL_SECONDS = 60
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    computed = [snapshot_compute(ticker="SPY", as_of=AT_11 + timedelta(seconds=s)).computed for s in range(0, 120, 2)]
    assert computed.count(True) == 2
    assert AnalyticsSnapshot.objects.filter(ticker="SPY").count() == 8


def test_a_new_flow_alert_cuts_through_the_debounce():
    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    assert snapshot_compute(ticker="SPY", as_of=AT_11).computed
    assert not snapshot_compute(ticker="SPY", as_of=AT_11 + timedelta(seconds=10)).computed
    FlowAlertFactory(ticker="SPY", expiry=DAY, executed_at=AT_11 + timedelta(seconds=15))
    assert snapshot_compute(ticker="SPY", as_of=AT_11 + timedelta(seconds=20)).computed


def test_nothing_is_computed_outside_the_session():
    assert (
        snapshot_compute(ticker="SPY", as_of=datetime(2026, 11, 20, 13, 0, tzinfo=UTC)).reason == "outside the session"
    )
    assert not snapshot_compute(ticker="SPY", as_of=datetime(2026, 11, 21, 16, 0, tzinfo=UTC)).computed
    assert AnalyticsSnapshot.objects.count() == 0


def test_the_task_chain_runs_the_signal_engine_after_commit(django_capture_on_commit_callbacks):
    from apps.analytics.tasks import update_ticker

    flow_scenario(ticker="SPY", as_of=AT_11, expiry=DAY, direction="bullish")
    with django_capture_on_commit_callbacks(execute=True):
        assert update_ticker.delay("SPY", AT_11.isoformat()).get() == 4
    assert Signal.objects.filter(strategy="zero_dte", ticker="SPY").count() == 1
