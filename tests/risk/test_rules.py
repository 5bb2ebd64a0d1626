"""Every rule of the risk manager rejects when it should, and the stored decision names the rule and its figures."""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import Decimal

import pytest

from apps.core import clock, occ
from apps.execution.models import Trade
from apps.ingestion.models import OptionTrade
from apps.risk import services
from apps.risk.models import RiskDecision
from apps.risk.selectors import BROKER_STATE_KEY
from apps.signals.models import Signal
from tests.risk.factories import SESSION_DAY, SignalFactory, book_long, ny, open_trade_row

pytestmark = pytest.mark.django_db

EVERY_CHECK = {
    "daily_loss_limit",
    "kill_switch",
    "broker_connected",
    "signal_pending",
    "regular_session",
    "contract_not_expired",
    "time_exit_ahead",
    "zero_dte_cutoff",
    "max_open_positions",
    "max_positions_per_underlying",
    "max_positions_per_strategy",
    "premium_cap",
    "buying_power",
    "max_leverage",
    "max_portfolio_delta",
    "max_portfolio_gamma",
}


def review(signal: Signal) -> RiskDecision:
    decision = services.signal_review(signal_id=signal.signal_id)
    # What is asserted is what was stored, not the object in memory.
    return RiskDecision.objects.get(pk=decision.pk)


def detail(decision: RiskDecision, check: str) -> str:
    return next(c["detail"] for c in decision.checks if c["check"] == check)


def assert_rejected_by(decision: RiskDecision, rule: str, *figures: str, also: set[str] = frozenset()) -> None:
    """Rejected by ``rule`` (and only by the rules in ``also`` besides), with the figures in its detail and reason."""
    assert decision.approved is False and decision.quantity == 0
    assert {c["check"] for c in decision.checks if not c["passed"]} == {rule, *also}
    assert decision.reason.startswith("rejected: ")
    assert f"{rule}: " in decision.reason
    for figure in figures:
        assert figure in detail(decision, rule), (figure, detail(decision, rule))
        assert figure in decision.reason
    assert Signal.objects.get(pk=decision.signal_id).status in (Signal.Status.REJECTED, Signal.Status.CLOSED)


def spot(redis_store, ticker: str, close: str, at=None) -> None:
    """The underlying's latest price as ingestion keeps it."""
    redis_store.hset(f"latest:uw:price:{ticker}", mapping={"close": close, "ts": (at or ny(10, 29)).isoformat()})


# --- approved ---------------------------------------------------------------------------------------------------------
def test_approves_a_signal_that_passes_every_rule_and_records_each_check_with_its_figures(redis_store):
    spot(redis_store, "SPY", "600")
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=5)

    decision = review(signal)

    assert decision.approved is True and decision.quantity == 5
    assert {c["check"] for c in decision.checks} == EVERY_CHECK
    assert all(c["passed"] for c in decision.checks)
    assert detail(decision, "broker_connected") == "paper broker in process"
    delta = detail(decision, "max_portfolio_delta")
    assert "new SPY250610C00600000 x5: spot 600 (latest:uw:price:SPY at 2025-06-10 10:29:00 New York)" in delta
    assert "iv 0.2000 (default: no print of the contract with an IV)" in delta
    assert "of at most 2500.00" in delta
    assert "of at most 500.00" in detail(decision, "max_portfolio_gamma")
    assert "0.0063 x net liq 100000.00 of at most 0.5000" in detail(decision, "max_leverage")
    assert decision.account["net_liq_source"] == "book" and decision.account["maint_margin"] == "0"
    assert f"all {len(EVERY_CHECK)} checks passed" in decision.reason


# --- the day and the switches -----------------------------------------------------------------------------------------
def test_daily_loss_limit_rejects_and_names_the_days_pnl_and_the_limit():
    loser = open_trade_row(ticker="QQQ", strategy="moc")
    Trade.objects.filter(signal=loser).update(
        status=Trade.Status.CLOSED, exit_at=ny(10, 15), exit_price=Decimal("0.10"), realized_pnl=Decimal("-3500")
    )

    decision = review(SignalFactory())

    # 3 % of the start-of-day value (100,000 + 3,500) is 3,105.
    assert_rejected_by(
        decision, "daily_loss_limit", "today's PnL -3500.00", "loss limit of 3105.00", also={"kill_switch"}
    )


def test_kill_switch_rejects_every_signal_while_it_is_on():
    services.kill_switch_engage(by="ops", reason="drill")

    assert_rejected_by(review(SignalFactory()), "kill_switch", "the kill switch is ON")


def test_broker_connected_rejects_new_entries_when_the_ib_broker_is_disconnected(settings, redis_store):
    settings.BROKER = "ib"
    redis_store.hset(
        BROKER_STATE_KEY,
        mapping={"broker": "ib", "connected": "0", "since": "2025-06-10T14:20:00+00:00", "detail": "TWS error 1100"},
    )

    decision = review(SignalFactory())

    assert_rejected_by(
        decision,
        "broker_connected",
        "reduce-only: ib broker disconnected since 2025-06-10T14:20:00+00:00: TWS error 1100",
    )


def test_broker_connected_rejects_when_the_ib_broker_never_reported_its_state(settings):
    settings.BROKER = "ib"

    assert_rejected_by(review(SignalFactory()), "broker_connected", "reduce-only:", "execution:broker:state is missing")


def test_broker_connected_passes_when_the_ib_broker_reports_connected(settings, redis_store):
    settings.BROKER = "ib"
    redis_store.hset(BROKER_STATE_KEY, mapping={"broker": "ib", "connected": "1", "since": "2025-06-10T13:00:00+00:00"})

    decision = review(SignalFactory())

    assert decision.approved is True
    assert detail(decision, "broker_connected") == "ib broker connected since 2025-06-10T13:00:00+00:00"


def test_signal_pending_rejects_a_signal_that_was_already_judged():
    assert_rejected_by(review(SignalFactory(status=Signal.Status.CLOSED)), "signal_pending", "signal status is closed")


# --- time -------------------------------------------------------------------------------------------------------------
def test_regular_session_rejects_before_the_open():
    clock.set_simulated(ny(9, 15))

    assert_rejected_by(review(SignalFactory()), "regular_session", "2025-06-10 09:15:00 New York is outside")


def test_entry_deadline_rejects_after_the_signals_own_deadline():
    signal = SignalFactory(strategy="one_dte", bucket="1dte", entry_deadline=ny(10, 0))

    assert_rejected_by(review(signal), "entry_deadline", "entry deadline 10:00:00 New York, now 10:30:00")


def test_zero_dte_cutoff_rejects_a_same_day_contract_after_the_cutoff():
    clock.set_simulated(ny(15, 5))

    assert_rejected_by(review(SignalFactory()), "zero_dte_cutoff", "0DTE entries stop at 15:00 New York, now 15:05:00")


def test_moc_deadline_rejects_a_moc_entry_from_the_platforms_deadline_before_the_signals_own():
    clock.set_simulated(ny(15, 46))
    signal = SignalFactory(strategy="moc", bucket="moc", entry_deadline=ny(15, 50), time_exit_at=ny(16, 10))

    assert_rejected_by(review(signal), "moc_deadline", "MOC entries stop at 15:45 New York", "now 15:46:00")


def test_moc_deadline_keeps_its_distance_from_an_early_close():
    black_friday = date(2025, 11, 28)  # closes at 13:00: the 15:45 deadline becomes 12:45
    clock.set_simulated(ny(12, 46, day=black_friday))
    signal = SignalFactory(
        strategy="moc",
        bucket="moc",
        expiry=black_friday,
        option_symbol=occ.build("SPY", black_friday, "C", 600),
        entry_deadline=ny(12, 50, day=black_friday),
        time_exit_at=ny(13, 10, day=black_friday),
    )

    assert_rejected_by(review(signal), "moc_deadline", "MOC entries stop at 12:45 New York", "now 12:46:00")


def test_moc_deadline_moves_with_the_limits():
    services.limits_update(by="ops", moc_entry_deadline=time(15, 30))
    clock.set_simulated(ny(15, 35))
    signal = SignalFactory(strategy="moc", bucket="moc", entry_deadline=ny(15, 50), time_exit_at=ny(16, 10))

    assert_rejected_by(review(signal), "moc_deadline", "MOC entries stop at 15:30 New York", "now 15:35:00")


def test_contract_not_expired_rejects_a_contract_that_expired_yesterday():
    yesterday = SESSION_DAY - timedelta(days=1)
    signal = SignalFactory(
        strategy="one_dte", bucket="1dte", expiry=yesterday, option_symbol=occ.build("SPY", yesterday, "C", 600)
    )

    assert_rejected_by(review(signal), "contract_not_expired", "expiry 2025-06-09, today 2025-06-10")


def test_time_exit_ahead_rejects_a_signal_whose_forced_exit_has_passed():
    signal = SignalFactory(strategy="one_dte", expiry=SESSION_DAY + timedelta(days=1), time_exit_at=ny(10, 0))

    assert_rejected_by(review(signal), "time_exit_ahead", "time exit 2025-06-10 10:00 New York")


# --- positions --------------------------------------------------------------------------------------------------------
def test_max_open_positions_rejects_beyond_the_total():
    services.limits_update(by="ops", max_open_positions=2)
    open_trade_row(ticker="QQQ", strategy="moc")
    open_trade_row(ticker="IWM", strategy="one_dte")

    assert_rejected_by(review(SignalFactory()), "max_open_positions", "2 open or pending of at most 2")


def test_max_positions_per_underlying_rejects_beyond_the_tickers_limit():
    for strategy in ("one_dte", "swing_14d", "moc"):
        open_trade_row(ticker="SPY", strategy=strategy)

    assert_rejected_by(review(SignalFactory(ticker="SPY")), "max_positions_per_underlying", "3 on SPY of at most 3")


def test_max_positions_per_strategy_rejects_beyond_the_strategys_limit():
    open_trade_row(ticker="QQQ", strategy="zero_dte")
    open_trade_row(ticker="IWM", strategy="zero_dte")

    assert_rejected_by(review(SignalFactory()), "max_positions_per_strategy", "2 in zero_dte of at most 2")


# --- size and money ---------------------------------------------------------------------------------------------------
def test_premium_cap_rejects_a_contract_dearer_than_the_premium_budget():
    decision = review(SignalFactory(limit_price=Decimal("25.00")))

    assert_rejected_by(
        decision, "premium_cap", "budget 2000.00 (2.00% of net liq 100000.00, book) buys 0 at 2625.00 a contract"
    )


def test_buying_power_rejects_when_the_cash_pays_for_no_contract():
    # 10 contracts at 99.99 leave 10.00 of cash.
    book_long(option_symbol="SPY250620C00500000", quantity=10, price=Decimal("99.99"))

    decision = review(SignalFactory())

    assert_rejected_by(decision, "buying_power", "buying power 10.00 (book) pays for 0 at 126.65")


def test_buying_power_keeps_the_configured_reserve_untouched():
    services.limits_update(by="ops", min_buying_power_share=Decimal("0.999"))

    decision = review(SignalFactory())

    assert_rejected_by(decision, "buying_power", "keeping 99900.00 (99.90% of net liq) untouched pays for 0")


def test_max_leverage_rejects_when_open_positions_already_use_the_allowed_share_of_net_liq():
    book_long(option_symbol="SPY250620C00500000", quantity=10, price=Decimal("60.00"))

    decision = review(SignalFactory())

    assert_rejected_by(
        decision,
        "max_leverage",
        "gross 60000.00 (open positions 60000.00 + pending entries 0.00)",
        "0.6000 x net liq 100000.00 of at most 0.5000",
        "room for 0 at 126.00",
    )


def test_max_leverage_sizes_an_order_down_to_the_room_left():
    services.limits_update(by="ops", max_leverage=Decimal("0.004"))  # 400 of gross value: 3 contracts at 126

    decision = review(SignalFactory(quantity_hint=5))

    assert decision.approved is True and decision.quantity == 3
    assert "room for 3 at 126.00; sized down from 5 to 3" in detail(decision, "max_leverage")


# --- greeks -----------------------------------------------------------------------------------------------------------
def test_max_portfolio_delta_rejects_and_records_the_greeks_and_their_inputs(redis_store):
    services.limits_update(by="ops", max_portfolio_delta=Decimal("100"))
    spot(redis_store, "SPY", "600")

    decision = review(SignalFactory(quantity_hint=5))

    assert_rejected_by(decision, "max_portfolio_delta", "of at most 100.00", "spot 600 (latest:uw:price:SPY")
    text = detail(decision, "max_portfolio_delta")
    # An at-the-money call: delta a little above 0.5, times 5 contracts of 100 shares.
    delta = Decimal(text.split("portfolio delta after the trade ")[1].split(" ")[0])
    assert Decimal("250") < delta < Decimal("280")
    assert "rate 0.04" in text and "y to the options close" in text


def test_a_long_put_adds_negative_delta_so_a_call_can_bring_the_portfolio_back_within_the_limit(redis_store):
    spot(redis_store, "SPY", "600")
    put = occ.build("SPY", SESSION_DAY, "P", 600)
    book_long(option_symbol=put, quantity=10, price=Decimal("1.00"))
    services.limits_update(by="ops", max_portfolio_delta=Decimal("400"))

    # Ten at-the-money puts alone are about -497 shares: a put entry would go further out, a call entry comes back in.
    more_puts = review(
        SignalFactory(right="P", direction=Signal.Direction.BEARISH, option_symbol=put, ticker="SPY", quantity_hint=5)
    )
    call = review(SignalFactory(quantity_hint=5))

    assert_rejected_by(more_puts, "max_portfolio_delta", f"held {put} x10")
    assert call.approved is True
    text = detail(call, "max_portfolio_delta")
    total = Decimal(text.split("portfolio delta after the trade ")[1].split(" ")[0])
    assert Decimal("-400") < total < Decimal("0")


def test_a_contract_without_a_price_counts_with_the_worst_delta_it_can_have():
    services.limits_update(by="ops", max_portfolio_delta=Decimal("400"))

    decision = review(SignalFactory(quantity_hint=5))

    # No latest price and no quote for SPY: the 5 calls count as up to +500 shares.
    assert_rejected_by(
        decision,
        "max_portfolio_delta",
        "between +0.00 and +500.00 (worst |500.00|)",
        "no price for SPY, delta counted in [+0.00, +500.00] (|delta| up to 1 per share)",
        "gamma at the money (spot = strike 600)",
    )


def test_the_newest_print_with_an_iv_prices_the_contract(redis_store):
    spot(redis_store, "SPY", "600")
    signal = SignalFactory()
    OptionTrade.objects.create(
        uw_id="iv-1",
        ticker="SPY",
        option_symbol=signal.option_symbol,
        expiry=signal.expiry,
        right="C",
        strike=signal.strike,
        price=Decimal("1.18"),
        size=3,
        premium=Decimal("354"),
        implied_volatility=Decimal("0.35"),
        executed_at=ny(10, 20),
    )

    decision = review(signal)

    assert "iv 0.3500 (print at 2025-06-10 10:20:00 New York)" in detail(decision, "max_portfolio_delta")


def test_max_portfolio_gamma_rejects_and_names_the_figures(redis_store):
    services.limits_update(by="ops", max_portfolio_gamma=Decimal("10"))
    spot(redis_store, "SPY", "600")

    decision = review(SignalFactory(quantity_hint=5))

    assert_rejected_by(decision, "max_portfolio_gamma", "shares per $1 of at most 10.00")
    gamma = Decimal(detail(decision, "max_portfolio_gamma").split("after the trade ")[1].split(" ")[0])
    # An at-the-money 0DTE call with 5 h 45 min to the options close: gamma about 0.13 per share, 500 shares.
    assert Decimal("50") < gamma < Decimal("80")
    assert "gamma 0.1" in detail(decision, "max_portfolio_delta")
