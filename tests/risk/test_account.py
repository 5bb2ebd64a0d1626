"""The account a review judges by: the paper book and, when fresh, the broker's own figures, on the safe side; the
broker's connection state."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from apps.risk import services
from apps.risk.selectors import BROKER_ACCOUNT_KEY, BROKER_STATE_KEY, broker_account, broker_connected
from tests.risk.factories import SignalFactory, ny

pytestmark = pytest.mark.django_db


def broker_reports(redis_store, *, updated_at=None, **values: str) -> None:
    fields = {
        "NetLiquidation": "100000",
        "BuyingPower": "100000",
        "MaintMarginReq": "0",
        "UnrealizedPnL": "0",
        "RealizedPnL": "0",
        "TotalCashValue": "100000",
        **values,
        "updated_at": (updated_at or ny(10, 29, 30)).isoformat(),
    }
    redis_store.hset(BROKER_ACCOUNT_KEY, mapping=fields)


def test_a_fresh_broker_account_is_read_as_decimals(redis_store):
    broker_reports(redis_store, NetLiquidation="95000.50", MaintMarginReq="1200")

    account = broker_account()

    assert account is not None
    assert account["NetLiquidation"] == Decimal("95000.50")
    assert account["MaintMarginReq"] == Decimal("1200")
    assert account["updated_at"] == ny(10, 29, 30)


@pytest.mark.parametrize("age", [timedelta(seconds=121), timedelta(seconds=-121)])
def test_a_broker_account_older_or_newer_than_two_minutes_is_ignored(redis_store, age):
    broker_reports(redis_store, updated_at=ny(10, 30) - age)

    assert broker_account() is None


def test_an_unreadable_broker_account_is_ignored_and_logged(redis_store, caplog):
    broker_reports(redis_store, BuyingPower="n/a")

    assert broker_account() is None
    assert "risk:account:broker is unreadable" in caplog.text


def test_the_review_sizes_by_the_lower_net_liq_of_book_and_broker_and_stores_both(redis_store, committed):
    broker_reports(
        redis_store,
        NetLiquidation="50000",
        BuyingPower="40000",
        MaintMarginReq="1500",
        UnrealizedPnL="-20",
        RealizedPnL="5",
        TotalCashValue="49000",
    )
    signal = SignalFactory(limit_price=Decimal("1.50"), quantity_hint=10)

    with committed():
        decision = services.signal_review(signal_id=signal.signal_id)

    # 2 % of the broker's 50,000 = 1,000 buys 6 at 158.00; the book's 100,000 would have bought 10 (the per-order max).
    assert decision.approved is True and decision.quantity == 6
    premium = next(c for c in decision.checks if c["check"] == "premium_cap")
    assert "budget 1000.00 (2.00% of net liq 50000.00, broker)" in premium["detail"]
    account = decision.account
    assert (account["net_liq"], account["net_liq_source"]) == ("50000", "broker")
    assert (account["buying_power"], account["buying_power_source"]) == ("40000", "broker")
    assert (account["book_net_liq"], account["book_buying_power"]) == ("100000", "100000")
    assert account["broker_net_liq"] == "50000"
    assert account["broker_maint_margin"] == account["maint_margin"] == "1500"
    assert account["broker_updated_at"] == ny(10, 29, 30).isoformat()
    # The broker's positions (net liq minus cash) count towards leverage when larger than the book's.
    assert account["positions_value"] == "1000"
    assert redis_store.hget("risk:account", "net_liq_source") == "broker"


def test_the_book_is_used_when_it_is_the_more_conservative_side(redis_store):
    broker_reports(redis_store, NetLiquidation="150000", BuyingPower="150000")

    decision = services.signal_review(signal_id=SignalFactory().signal_id)

    assert (decision.account["net_liq"], decision.account["net_liq_source"]) == ("100000", "book")
    assert decision.account["broker_net_liq"] == "150000"


def test_without_a_broker_account_the_snapshot_says_the_book_was_used():
    decision = services.signal_review(signal_id=SignalFactory().signal_id)

    assert decision.account["net_liq_source"] == decision.account["buying_power_source"] == "book"
    assert decision.account["broker_net_liq"] == "" and decision.account["maint_margin"] == "0"


# --- the connection ---------------------------------------------------------------------------------------------------
def test_the_paper_broker_is_always_connected(settings, redis_store):
    settings.BROKER = "paper"
    redis_store.hset(BROKER_STATE_KEY, mapping={"broker": "ib", "connected": "0"})

    assert broker_connected() == (True, "paper broker in process")


def test_an_ib_broker_is_connected_only_when_its_owner_says_so(settings, redis_store):
    settings.BROKER = "ib"
    assert broker_connected()[0] is False

    redis_store.hset(BROKER_STATE_KEY, mapping={"broker": "ib", "connected": "1", "since": "t0", "detail": ""})
    assert broker_connected() == (True, "ib broker connected since t0")

    redis_store.hset(BROKER_STATE_KEY, mapping={"connected": "0", "since": "t1", "detail": "socket closed"})
    assert broker_connected() == (False, "ib broker disconnected since t1: socket closed")
