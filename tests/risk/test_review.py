"""The risk manager's decisions: one per signal, every check recorded, sized by the premium budget."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest

from apps.core import clock, occ
from apps.execution.models import Trade
from apps.risk import services
from apps.risk.models import KillSwitchEvent, RiskDecision, RiskLimits
from apps.risk.selectors import KILL_SWITCH_KEY, kill_switch_is_on
from apps.risk.tasks import review
from apps.signals.models import Signal
from tests.risk.factories import SESSION_DAY, SignalFactory, book_long, ny, open_trade_row

pytestmark = pytest.mark.django_db


def failed_checks(decision: RiskDecision) -> set[str]:
    return {c["check"] for c in decision.checks if not c["passed"]}


def test_approves_a_signal_within_every_limit_and_sizes_it_by_the_hint(committed, tasks_run, redis_store):
    signal = SignalFactory(limit_price=Decimal("1.20"), quantity_hint=5)

    with committed():
        decision = services.signal_review(signal_id=signal.signal_id)

    assert decision.approved is True
    assert decision.quantity == 5
    assert decision.limit_price == Decimal("1.26")  # 1.20 plus the 5 % entry tolerance
    assert failed_checks(decision) == set()
    assert decision.account["net_liq"] == "100000"
    assert decision.decided_at == ny(10, 30)
    assert "approved 5 x" in decision.reason
    signal.refresh_from_db()
    # The entry ran on commit and, with no quote recorded, the paper broker rejected it.
    assert signal.status == Signal.Status.REJECTED
    assert signal.orders.get().reject_reason == f"no quote for {signal.option_symbol}"
    assert tasks_run.named("execution.submit_order") == [(decision.pk,)]
    last = json.loads(redis_store.get("risk:last_decision"))
    assert last["signal_id"] == signal.signal_id and last["approved"] is True
    assert redis_store.hget("risk:account", "net_liq") == "100000"


def test_reviewing_a_signal_twice_returns_the_one_decision_and_enqueues_one_order(committed, tasks_run):
    signal = SignalFactory()

    with committed():
        first = services.signal_review(signal_id=signal.signal_id)
    with committed():
        second = review.delay(signal.signal_id).get()

    assert second == first.pk
    assert RiskDecision.objects.filter(signal=signal).count() == 1
    assert len(tasks_run.named("execution.submit_order")) == 1


def test_rejects_every_signal_while_the_kill_switch_is_on_and_accepts_again_after_release(committed, redis_store):
    with committed():
        services.kill_switch_engage(by="ops", reason="broker outage")
    assert redis_store.get(KILL_SWITCH_KEY) == "1"

    rejected = services.signal_review(signal_id=SignalFactory().signal_id)

    assert rejected.approved is False and rejected.quantity == 0
    assert failed_checks(rejected) == {"kill_switch"}
    assert "kill switch is ON" in rejected.reason
    assert Signal.objects.get(pk=rejected.signal_id).status == Signal.Status.REJECTED

    with committed():
        services.kill_switch_release(by="ops", reason="broker back")
    assert redis_store.get(KILL_SWITCH_KEY) == "0"
    assert services.signal_review(signal_id=SignalFactory().signal_id).approved is True
    assert list(KillSwitchEvent.objects.order_by("at", "id").values_list("engaged", "by")) == [
        (True, "ops"),
        (False, "ops"),
    ]


def test_kill_switch_state_survives_a_flushed_redis_through_its_history(redis_store):
    services.kill_switch_engage(by="ops", reason="test")
    redis_store.flushdb()

    assert kill_switch_is_on() is True
    assert redis_store.get(KILL_SWITCH_KEY) == "1"


def test_premium_cap_sizes_an_expensive_contract_down_to_the_budget():
    signal = SignalFactory(limit_price=Decimal("4.00"), quantity_hint=10)

    decision = services.signal_review(signal_id=signal.signal_id)

    # 2 % of 100,000 = 2,000; at 4.20 x 100 = 420 a contract that buys 4.
    assert decision.approved is True
    assert decision.quantity == 4


def test_premium_cap_rejects_a_contract_dearer_than_the_whole_budget():
    signal = SignalFactory(limit_price=Decimal("25.00"))

    decision = services.signal_review(signal_id=signal.signal_id)

    assert decision.approved is False
    assert failed_checks(decision) == {"premium_cap"}


def test_quantity_never_exceeds_the_per_order_maximum():
    signal = SignalFactory(limit_price=Decimal("0.50"), quantity_hint=50)

    decision = services.signal_review(signal_id=signal.signal_id)

    assert decision.approved is True
    assert decision.quantity == 10


def test_rejects_a_fourth_position_on_the_same_underlying():
    for strategy in ("one_dte", "swing_14d", "moc"):
        open_trade_row(ticker="SPY", strategy=strategy)

    decision = services.signal_review(signal_id=SignalFactory(ticker="SPY").signal_id)

    assert decision.approved is False
    assert failed_checks(decision) == {"max_positions_per_underlying"}
    assert services.signal_review(signal_id=SignalFactory(ticker="QQQ").signal_id).approved is True


def test_rejects_a_third_position_in_the_same_strategy():
    open_trade_row(ticker="QQQ", strategy="zero_dte")
    open_trade_row(ticker="IWM", strategy="zero_dte")

    decision = services.signal_review(signal_id=SignalFactory(ticker="SPY", strategy="zero_dte").signal_id)

    assert decision.approved is False
    assert failed_checks(decision) == {"max_positions_per_strategy"}


def test_approved_signals_waiting_for_their_fill_hold_their_slot():
    # No commit runs here, so the two approved entries are still in flight when the third signal is judged.
    assert services.signal_review(signal_id=SignalFactory(ticker="QQQ").signal_id).approved is True
    assert services.signal_review(signal_id=SignalFactory(ticker="IWM").signal_id).approved is True

    third = services.signal_review(signal_id=SignalFactory(ticker="SPY").signal_id)

    assert failed_checks(third) == {"max_positions_per_strategy"}


def test_a_limits_change_is_a_new_version_and_decisions_name_the_version_they_used():
    first = services.limits_active()
    open_trade_row(ticker="QQQ", strategy="moc")

    second = services.limits_update(by="ops", note="one position at a time", max_open_positions=1)
    decision = services.signal_review(signal_id=SignalFactory().signal_id)

    first.refresh_from_db()
    assert (first.active, second.active, second.version) == (False, True, first.version + 1)
    assert RiskLimits.objects.filter(active=True).count() == 1
    assert decision.limits_id == second.pk
    assert failed_checks(decision) == {"max_open_positions"}


def test_daily_loss_limit_trips_the_kill_switch_by_itself(redis_store):
    loser = open_trade_row(ticker="QQQ", strategy="moc")
    Trade.objects.filter(signal=loser).update(
        status=Trade.Status.CLOSED, exit_at=ny(10, 15), exit_price=Decimal("0.10"), realized_pnl=Decimal("-3500")
    )

    decision = services.signal_review(signal_id=SignalFactory().signal_id)

    assert decision.approved is False
    assert failed_checks(decision) == {"daily_loss_limit", "kill_switch"}
    event = KillSwitchEvent.objects.get()
    assert (event.engaged, event.by) == (True, "risk")
    assert "daily loss limit" in event.reason
    assert redis_store.get(KILL_SWITCH_KEY) == "1"


def test_a_loss_within_the_daily_limit_leaves_the_kill_switch_off():
    loser = open_trade_row(ticker="QQQ", strategy="moc")
    Trade.objects.filter(signal=loser).update(
        status=Trade.Status.CLOSED, exit_at=ny(10, 15), exit_price=Decimal("0.10"), realized_pnl=Decimal("-2500")
    )

    assert services.daily_loss_guard() is False
    assert services.signal_review(signal_id=SignalFactory().signal_id).approved is True


def test_yesterdays_losses_do_not_count_against_todays_limit():
    loser = open_trade_row(ticker="QQQ", strategy="moc")
    Trade.objects.filter(signal=loser).update(
        status=Trade.Status.CLOSED, exit_at=ny(15, 0) - timedelta(days=1), realized_pnl=Decimal("-9000")
    )

    assert services.daily_loss_guard() is False


def test_rejects_a_signal_whose_entry_deadline_has_passed():
    signal = SignalFactory(strategy="moc", bucket="moc", entry_deadline=ny(10, 0))

    decision = services.signal_review(signal_id=signal.signal_id)

    assert decision.approved is False
    assert failed_checks(decision) == {"entry_deadline"}


def test_accepts_a_signal_before_its_entry_deadline():
    signal = SignalFactory(strategy="moc", bucket="moc", entry_deadline=ny(15, 50))

    assert services.signal_review(signal_id=signal.signal_id).approved is True


def test_rejects_entries_outside_the_regular_session():
    clock.set_simulated(ny(9, 15))

    decision = services.signal_review(signal_id=SignalFactory().signal_id)

    assert failed_checks(decision) == {"regular_session"}


def test_rejects_entries_on_a_weekend():
    saturday = date(2025, 6, 14)
    clock.set_simulated(ny(11, 0, day=saturday))
    signal = SignalFactory(
        expiry=date(2025, 6, 16), time_exit_at=ny(15, 45, day=date(2025, 6, 16)), as_of=ny(11, 0, day=saturday)
    )

    assert failed_checks(services.signal_review(signal_id=signal.signal_id)) == {"regular_session"}


def test_rejects_a_zero_dte_entry_after_the_cutoff_but_accepts_a_next_day_expiry():
    clock.set_simulated(ny(15, 5))
    zero_dte = SignalFactory()
    next_day = date(2025, 6, 11)
    one_dte = SignalFactory(
        strategy="one_dte", bucket="1dte", expiry=next_day, time_exit_at=ny(15, 0, day=next_day), ticker="QQQ"
    )

    assert failed_checks(services.signal_review(signal_id=zero_dte.signal_id)) == {"zero_dte_cutoff"}
    assert services.signal_review(signal_id=one_dte.signal_id).approved is True


def test_a_moc_entry_on_a_same_day_contract_is_bound_by_its_deadline_not_the_zero_dte_cutoff():
    clock.set_simulated(ny(15, 40))
    in_time = SignalFactory(strategy="moc", bucket="moc", entry_deadline=ny(15, 50), time_exit_at=ny(16, 10))
    assert services.signal_review(signal_id=in_time.signal_id).approved is True

    clock.set_simulated(ny(15, 51))
    late = SignalFactory(strategy="moc", bucket="moc", ticker="QQQ", entry_deadline=ny(15, 50), time_exit_at=ny(16, 10))
    # Past the signal's own deadline and the platform's stricter MOC deadline (15:45 by default).
    assert failed_checks(services.signal_review(signal_id=late.signal_id)) == {"entry_deadline", "moc_deadline"}


def test_zero_dte_cutoff_moves_earlier_on_an_early_close():
    black_friday = date(2025, 11, 28)  # the session closes at 13:00, so 0DTE entries stop at 12:00
    clock.set_simulated(ny(12, 15, day=black_friday))
    signal = SignalFactory(
        expiry=black_friday,
        option_symbol=occ.build("SPY", black_friday, "C", 600),
        time_exit_at=ny(12, 45, day=black_friday),
    )

    assert failed_checks(services.signal_review(signal_id=signal.signal_id)) == {"zero_dte_cutoff"}


def test_rejects_a_signal_whose_time_exit_has_passed():
    signal = SignalFactory(strategy="one_dte", expiry=SESSION_DAY + timedelta(days=1), time_exit_at=ny(10, 0))

    assert failed_checks(services.signal_review(signal_id=signal.signal_id)) == {"time_exit_ahead"}


def test_buying_power_sizes_the_order_down_to_what_the_cash_pays_for():
    # 10 contracts bought at 98.50 leave 1,500 of cash in a 100,000 account (98.5 % of it in one position: leverage
    # allowed up to the whole account here, so that buying power is the binding cap).
    services.limits_update(by="test", max_leverage=Decimal("1"))
    book_long(option_symbol="SPY250620C00500000", quantity=10, price=Decimal("98.50"))
    signal = SignalFactory(limit_price=Decimal("4.00"), quantity_hint=10)

    decision = services.signal_review(signal_id=signal.signal_id)

    # The budget (2,000) buys 4 at 420; the cash (1,500) pays for 3 at 420.65 with commission.
    assert decision.approved is True
    assert decision.quantity == 3
    buying_power = next(c for c in decision.checks if c["check"] == "buying_power")
    assert "sized down from 4 to 3" in buying_power["detail"]


def test_a_signal_that_is_no_longer_pending_is_not_approved():
    signal = SignalFactory(status=Signal.Status.CLOSED)

    decision = services.signal_review(signal_id=signal.signal_id)

    assert failed_checks(decision) == {"signal_pending"}
    signal.refresh_from_db()
    assert signal.status == Signal.Status.CLOSED
