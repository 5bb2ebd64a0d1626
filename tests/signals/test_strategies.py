from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from apps.analytics.services import snapshot_compute
from apps.core import calendar
from apps.signals.models import Signal, StrategyConfig
from apps.signals.services import UnknownParameter, signal_evaluate, strategy_config_current, strategy_config_revise
from apps.signals.strategies import REGISTRY
from apps.signals.strategies.base import session_time
from tests.analytics.factories import FlowAlertFactory, OptionTradeFactory, flow_scenario

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)  # Friday; New York = UTC-5
NEXT_DAY = date(2026, 11, 23)
SWING_EXPIRY = date(2026, 12, 18)


def ny(hour: int, minute: int, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=calendar.NEW_YORK).astimezone(UTC)


def evaluate(bucket: str, as_of: datetime, ticker: str = "SPY"):
    result = snapshot_compute(ticker=ticker, as_of=as_of)
    snapshot = next(s for s in result.snapshots if s.bucket == bucket)
    return signal_evaluate(snapshot_id=snapshot.pk)


def test_zero_dte_buys_a_call_on_bullish_flow_with_a_full_audit_trail():
    flow_scenario(ticker="SPY", as_of=ny(11, 0), expiry=DAY, direction="bullish")
    outcome = evaluate("0dte", ny(11, 0))
    signal = outcome.signal
    assert outcome.created and signal is not None
    assert (signal.strategy, signal.direction, signal.right) == ("zero_dte", "bullish", "C")
    assert signal.option_symbol == "SPY261120C00602000"
    assert signal.limit_price == Decimal("1.52")  # the ask
    assert signal.time_exit_at == ny(15, 45)
    assert signal.entry_deadline == ny(11, 5)
    assert signal.rule == "zero_dte.flow_bullish"
    assert "never sold short" in signal.rationale and "exercised" in signal.rationale
    assert signal.contributions["premium_imbalance"] > 0
    assert len(signal.evidence["flow_alerts"]) == 4
    assert signal.evidence["option_trades"] and signal.evidence["gex"]
    assert signal.features["contract"]["delta"] == 0.41
    assert Decimal("0") < signal.confidence <= Decimal("1")


def test_zero_dte_buys_a_put_on_bearish_flow():
    flow_scenario(ticker="SPY", as_of=ny(11, 0), expiry=DAY, direction="bearish")
    signal = evaluate("0dte", ny(11, 0)).signal
    assert signal is not None
    assert (signal.direction, signal.right, signal.option_symbol) == ("bearish", "P", "SPY261120P00598000")


def test_signal_is_published_to_pending_after_commit(redis_store, django_capture_on_commit_callbacks):
    flow_scenario(ticker="SPY", as_of=ny(11, 0), expiry=DAY, direction="bullish")
    with django_capture_on_commit_callbacks(execute=True):
        signal = evaluate("0dte", ny(11, 0)).signal
    pending = orjson.loads(redis_store.hget("signals:pending", signal.signal_id))
    assert pending["limit_price"] == "1.520000" and pending["strategy"] == "zero_dte"


@pytest.mark.parametrize("minute", [0, 1, 30, 59])
def test_zero_dte_never_enters_after_its_cut_off(minute):
    flow_scenario(ticker="SPY", as_of=ny(15, minute), expiry=DAY, direction="bullish")
    outcome = evaluate("0dte", ny(15, minute))
    assert outcome.signal is None and "cut-off" in outcome.reason


def test_zero_dte_stays_quiet_on_balanced_flow():
    as_of = ny(11, 0)
    flow_scenario(ticker="SPY", as_of=as_of, expiry=DAY, direction="bullish", alerts=2)
    for i in range(2):
        FlowAlertFactory(
            ticker="SPY", expiry=DAY, right="P", strike=Decimal("598"), executed_at=as_of - timedelta(minutes=1 + i)
        )
    for i in range(12):
        OptionTradeFactory(
            ticker="SPY",
            expiry=DAY,
            right="P",
            strike=Decimal("598"),
            delta=Decimal("-0.4"),
            executed_at=as_of - timedelta(seconds=20 + 60 * i),
        )
    outcome = evaluate("0dte", as_of)
    assert outcome.signal is None
    assert "inside" in outcome.reason or "disagrees" in outcome.reason


def test_zero_dte_stays_quiet_when_every_quote_is_too_wide():
    as_of = ny(11, 0)
    flow_scenario(ticker="SPY", as_of=as_of, expiry=DAY, direction="bullish")
    OptionTradeFactory(
        ticker="SPY",
        expiry=DAY,
        right="C",
        strike=Decimal("602"),
        nbbo_bid=Decimal("1.00"),
        nbbo_ask=Decimal("1.60"),
        executed_at=as_of - timedelta(seconds=1),
    )
    outcome = evaluate("0dte", as_of)
    assert outcome.signal is None and "no bullish contract" in outcome.reason


def test_moc_acts_inside_the_closing_window_with_a_hard_deadline():
    flow_scenario(ticker="SPY", as_of=ny(15, 40), expiry=DAY, direction="bullish")
    signal = evaluate("moc", ny(15, 40)).signal
    assert signal is not None and signal.strategy == "moc"
    assert signal.entry_deadline is not None and signal.entry_deadline <= ny(15, 50)
    assert signal.time_exit_at == ny(16, 10) < ny(16, 15)


def test_moc_deadline_caps_the_signal_lifetime_near_the_cut_off():
    flow_scenario(ticker="SPY", as_of=ny(15, 49), expiry=DAY, direction="bullish")
    signal = evaluate("moc", ny(15, 49)).signal
    assert signal is not None and signal.entry_deadline == ny(15, 50)


@pytest.mark.parametrize(("hour", "minute"), [(11, 0), (15, 20), (15, 29), (15, 50), (15, 55), (16, 5)])
def test_moc_never_acts_outside_its_window(hour, minute):
    flow_scenario(ticker="SPY", as_of=ny(hour, minute), expiry=DAY, direction="bullish")
    outcome = evaluate("moc", ny(hour, minute))
    assert outcome.signal is None
    assert "before the entry window" in outcome.reason or "cut-off" in outcome.reason


def test_one_dte_buys_tomorrows_expiry_and_exits_in_the_next_session():
    flow_scenario(ticker="SPY", as_of=ny(13, 0), expiry=NEXT_DAY, direction="bullish")
    signal = evaluate("1dte", ny(13, 0)).signal
    assert signal is not None
    assert signal.expiry == NEXT_DAY
    assert signal.time_exit_at == ny(11, 0, NEXT_DAY)


def test_one_dte_stays_quiet_when_only_todays_expiry_trades():
    flow_scenario(ticker="SPY", as_of=ny(13, 0), expiry=DAY, direction="bullish")
    assert evaluate("1dte", ny(13, 0)).signal is None


def test_swing_holds_five_trading_days_across_the_holiday():
    flow_scenario(ticker="SPY", as_of=ny(13, 0), expiry=SWING_EXPIRY, direction="bullish", alerts=5)
    signal = evaluate("14d", ny(13, 0)).signal
    assert signal is not None and signal.expiry == SWING_EXPIRY
    # Nov 23, 24, 25, (26 Thanksgiving), 27 (early close), 30: out at 15:30 on Nov 30.
    assert signal.time_exit_at == ny(15, 30, date(2026, 11, 30))
    assert signal.profit_target_pct == Decimal("0.8")


def test_swing_needs_opening_flow():
    flow_scenario(ticker="SPY", as_of=ny(13, 0), expiry=SWING_EXPIRY, direction="bullish", alerts=5)
    from apps.ingestion.models import FlowAlert

    FlowAlert.objects.update(all_opening_trades=False, volume=10, open_interest=10000)
    outcome = evaluate("14d", ny(13, 0))
    assert outcome.signal is None and "opens positions" in outcome.reason


def test_evaluating_the_same_evidence_twice_yields_one_signal():
    flow_scenario(ticker="SPY", as_of=ny(11, 0), expiry=DAY, direction="bullish")
    result = snapshot_compute(ticker="SPY", as_of=ny(11, 0))
    snapshot = next(s for s in result.snapshots if s.bucket == "0dte")
    first = signal_evaluate(snapshot_id=snapshot.pk)
    second = signal_evaluate(snapshot_id=snapshot.pk)
    assert first.created and not second.created
    assert first.signal.signal_id == second.signal.signal_id
    assert Signal.objects.count() == 1


def test_cooldown_keeps_one_flow_episode_to_one_signal():
    flow_scenario(ticker="SPY", as_of=ny(11, 0), expiry=DAY, direction="bullish")
    assert evaluate("0dte", ny(11, 0)).created
    # New evidence five minutes later: still the same episode.
    FlowAlertFactory(ticker="SPY", expiry=DAY, strike=Decimal("600"), executed_at=ny(11, 4))
    OptionTradeFactory(
        ticker="SPY",
        expiry=DAY,
        strike=Decimal("602"),
        executed_at=ny(
            11,
            4,
        ),
    )
    later = evaluate("0dte", ny(11, 5))
    assert later.signal is None and "cooldown" in later.reason
    assert Signal.objects.count() == 1


def test_defaults_are_stored_on_first_use_and_a_revision_is_a_new_version():
    first = strategy_config_current(strategy="zero_dte")
    assert first.version == 1 and first.parameters["entry_cutoff"] == "15:00"
    revised = strategy_config_revise(strategy="zero_dte", parameters={"entry_cutoff": "14:30"}, note="earlier")
    assert revised.version == 2 and revised.parameters["entry_cutoff"] == "14:30"
    assert StrategyConfig.objects.get(strategy="zero_dte", version=1).parameters["entry_cutoff"] == "15:00"
    assert strategy_config_current(strategy="zero_dte").version == 2


def test_a_revised_cut_off_is_applied_and_named_in_the_signal():
    strategy_config_revise(strategy="zero_dte", parameters={"entry_cutoff": "14:30"})
    flow_scenario(ticker="SPY", as_of=ny(14, 40), expiry=DAY, direction="bullish")
    assert evaluate("0dte", ny(14, 40)).signal is None
    strategy_config_revise(strategy="zero_dte", parameters={"entry_cutoff": "15:00"})
    signal = evaluate("0dte", ny(14, 41)).signal
    assert signal is not None and signal.strategy_version == 2


def test_a_disabled_strategy_stays_quiet():
    strategy_config_revise(strategy="zero_dte", parameters={}, enabled=False)
    flow_scenario(ticker="SPY", as_of=ny(11, 0), expiry=DAY, direction="bullish")
    outcome = evaluate("0dte", ny(11, 0))
    assert outcome.signal is None and "disabled" in outcome.reason


def test_an_unknown_parameter_is_refused():
    with pytest.raises(UnknownParameter):
        strategy_config_revise(strategy="moc", parameters={"entry_cutof": "15:40"})


def test_session_times_move_earlier_on_an_early_close():
    half_day = calendar.session_for(date(2026, 11, 27))
    assert session_time(half_day, "15:50") == ny(12, 50, date(2026, 11, 27))
    assert (
        REGISTRY["moc"].time_exit(half_day, REGISTRY["moc"].parameters(), {}, ny(12, 40, date(2026, 11, 27)))
        < half_day.options_close
    )


def test_a_contract_whose_quote_the_broker_would_refuse_is_never_chosen(settings):
    from apps.signals.strategies.base import choose_contract

    settings.PAPER_QUOTE_MAX_AGE_SECONDS = 300
    as_of = ny(11, 0)
    contract = {
        "option_symbol": "SPY261204C00655000",
        "right": "C",
        "expiry": "2026-12-04",
        "delta": "0.40",
        "bid": "2.00",
        "ask": "2.10",
        "open_interest": 5000,
    }
    params = {
        "min_delta": 0.25,
        "max_delta": 0.55,
        "target_delta": 0.40,
        "min_ask": 0.10,
        "max_spread_pct": 0.15,
        "min_open_interest": 100,
        "max_quote_age_seconds": 900,  # a strategy configured looser than the broker
    }
    fresh = {**contract, "quote_ts": (as_of - timedelta(seconds=240)).isoformat()}
    stale = {**contract, "quote_ts": (as_of - timedelta(seconds=400)).isoformat()}
    pick = choose_contract(
        features={"contracts": [fresh]}, direction="bullish", params=params, as_of=as_of, expiries=None
    )
    assert pick is not None
    assert (
        choose_contract(features={"contracts": [stale]}, direction="bullish", params=params, as_of=as_of, expiries=None)
        is None
    )
