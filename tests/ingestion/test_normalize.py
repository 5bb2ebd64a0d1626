"""Channel normalizers: every documented channel, decimals as strings or numbers, ISO or epoch times."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.ingestion.models import FlowAlert, GexSnapshot, GexStrike, NewsItem, OptionTrade, PriceTick
from apps.ingestion.uw.channels import ChannelKind, UnknownChannel, channel_resolve
from apps.ingestion.uw.normalize import NormalizationError, RejectKind, normalize_frame, parse_time
from tests.ingestion import frames

EXECUTED = datetime(2026, 11, 20, 14, 30, 59, 900000, tzinfo=UTC)


def normalize(channel: str, payload):
    return normalize_frame(channel_resolve(channel), payload)


def test_flow_alert_takes_strike_expiry_and_right_from_the_option_chain():
    result = normalize("flow-alerts", frames.flow_alert(option_chain="QQQ261120P00599500", ticker="QQQ"))
    alert = result.record
    assert isinstance(alert, FlowAlert)
    assert (alert.option_symbol, alert.expiry, alert.right) == ("QQQ261120P00599500", date(2026, 11, 20), "P")
    assert alert.strike == Decimal("599.5")
    assert result.ticker == "QQQ"
    assert result.kind is ChannelKind.FLOW_ALERT


def test_flow_alert_numbers_and_decimal_strings_give_the_same_decimals():
    as_numbers = normalize("flow-alerts", frames.flow_alert(total_premium=145645.39, price=0.67, bid=0.65)).record
    as_strings = normalize("flow-alerts", frames.flow_alert(total_premium="145645.39", price="0.67", bid="0.65")).record
    for alert in (as_numbers, as_strings):
        assert alert.total_premium == Decimal("145645.39")
        assert alert.price == Decimal("0.67")
        assert alert.bid == Decimal("0.65")
        assert isinstance(alert.underlying_price, Decimal)
    assert str(as_numbers.price) == str(as_strings.price)


def test_flow_alert_executed_at_epoch_ms_and_iso_are_the_same_instant():
    from_ms = normalize("flow-alerts", frames.flow_alert(executed_at=1795185059900)).record
    from_iso = normalize("flow-alerts", frames.flow_alert(executed_at="2026-11-20T14:30:59.900000Z")).record
    assert from_ms.executed_at == from_iso.executed_at == EXECUTED
    assert from_ms.executed_at.tzinfo is not None


def test_flow_alert_volume_oi_ratio_is_computed_when_the_feed_sends_zero():
    alert = normalize("flow-alerts", frames.flow_alert(volume=12000, open_interest=40000, volume_oi_ratio=0)).record
    assert alert.volume_oi_ratio == Decimal("0.3")


def test_flow_alert_volume_oi_ratio_from_the_feed_is_kept_when_not_zero():
    payload = frames.flow_alert(volume=12000, open_interest=40000, volume_oi_ratio="0.31")
    alert = normalize("flow-alerts", payload).record
    assert alert.volume_oi_ratio == Decimal("0.31")


def test_flow_alert_without_open_interest_has_no_ratio():
    alert = normalize("flow-alerts", frames.flow_alert(open_interest=0, volume_oi_ratio=0)).record
    assert alert.volume_oi_ratio == Decimal("0")


def test_flow_alert_null_rule_name_becomes_empty_and_booleans_are_read():
    alert = normalize("flow-alerts", frames.flow_alert(rule_name=None, has_sweep=False, has_floor=True)).record
    assert alert.rule_name == ""
    assert (alert.has_sweep, alert.has_floor, alert.all_opening_trades) == (False, True, True)


def test_flow_alert_without_option_chain_is_rejected_as_missing_field():
    payload = frames.flow_alert()
    del payload["option_chain"]
    with pytest.raises(NormalizationError) as exc:
        normalize("flow-alerts", payload)
    assert exc.value.kind is RejectKind.MISSING_FIELD
    assert "option_chain" in exc.value.reason
    assert "flow-alerts" in exc.value.reason


def test_flow_alert_with_a_malformed_option_chain_is_rejected_as_invalid():
    with pytest.raises(NormalizationError) as exc:
        normalize("flow-alerts", frames.flow_alert(option_chain="SPY-not-occ"))
    assert exc.value.kind is RejectKind.INVALID_VALUE
    assert "SPY-not-occ" in exc.value.reason


def test_unknown_extra_fields_are_tolerated():
    result = normalize("flow-alerts", frames.flow_alert(brand_new_field={"x": 1}, another=[1, 2]))
    assert isinstance(result.record, FlowAlert)


@pytest.mark.parametrize("channel", ["option_trades", "option_trades:SPY"])
def test_option_trade_is_normalized_on_both_channels(channel):
    result = normalize(channel, frames.option_trade())
    trade = result.record
    assert isinstance(trade, OptionTrade)
    assert trade.option_symbol == "SPY261120C00600000"
    assert (trade.right, trade.strike, trade.expiry) == ("C", Decimal("600"), date(2026, 11, 20))
    assert trade.price == Decimal("3.91")
    assert trade.premium == Decimal("19550.00")
    assert trade.implied_volatility == Decimal("0.144949")
    assert trade.theta == Decimal("-0.41")
    assert trade.tags == ["ask_side", "bullish"]
    assert result.ticker == "SPY"


def test_option_trade_numbers_parse_like_decimal_strings():
    trade = normalize("option_trades:SPY", frames.option_trade(price=3.91, nbbo_bid=3.89, delta=0.52901)).record
    assert (trade.price, trade.nbbo_bid, trade.delta) == (Decimal("3.91"), Decimal("3.89"), Decimal("0.52901"))


def test_option_trade_iso_executed_at_is_read_as_utc():
    trade = normalize("option_trades", frames.option_trade(executed_at="2026-11-20 09:30:59.900-05:00")).record
    assert trade.executed_at == EXECUTED


def test_option_trade_premium_is_computed_when_absent():
    payload = frames.option_trade(price="1.25", size=3)
    del payload["premium"]
    assert normalize("option_trades", payload).record.premium == Decimal("375")


@pytest.mark.parametrize(
    ("split", "price", "side"),
    [
        ({"ask_vol": 10, "bid_vol": 0}, "3.91", "ask"),
        ({"ask_vol": 0, "bid_vol": 7}, "3.91", "bid"),
        ({"ask_vol": 0, "bid_vol": 0, "mid_vol": 5}, "3.91", "mid"),
        ({"ask_vol": 0, "bid_vol": 0, "no_side_vol": 5}, "3.91", "no_side"),
        ({"ask_vol": 1, "bid_vol": 1}, "3.93", "ask"),
        ({"ask_vol": 1, "bid_vol": 1}, "3.89", "bid"),
        ({"ask_vol": 1, "bid_vol": 1}, "3.91", "mid"),
    ],
)
def test_option_trade_side_comes_from_the_volume_split_else_from_price_against_nbbo(split, price, side):
    trade = normalize("option_trades:SPY", frames.option_trade(price=price, **split)).record
    assert trade.side == side


def test_option_trade_whose_fields_contradict_its_symbol_is_rejected():
    with pytest.raises(NormalizationError) as exc:
        normalize("option_trades", frames.option_trade(strike="605"))
    assert exc.value.kind is RejectKind.INVALID_VALUE
    assert "strike" in exc.value.reason


def test_option_trade_on_another_tickers_channel_is_rejected():
    with pytest.raises(NormalizationError) as exc:
        normalize("option_trades:QQQ", frames.option_trade())
    assert "QQQ" in exc.value.reason


def test_option_trade_with_unparsable_price_names_the_field():
    with pytest.raises(NormalizationError) as exc:
        normalize("option_trades", frames.option_trade(price="three"))
    assert exc.value.kind is RejectKind.INVALID_VALUE
    assert "'price'" in exc.value.reason


def test_option_trade_with_a_price_too_large_for_the_column_is_rejected_not_crashing_the_insert():
    with pytest.raises(NormalizationError) as exc:
        normalize("option_trades", frames.option_trade(price=1e300))
    assert "out of range" in exc.value.reason


def test_price_tick_from_string_close_and_epoch_time():
    result = normalize("price:SPY", frames.price(close="661.90", time=1795185000000))
    tick = result.record
    assert isinstance(tick, PriceTick)
    assert (tick.ticker, tick.close, tick.volume) == ("SPY", Decimal("661.90"), 822582)
    assert tick.ts == datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def test_price_tick_from_numeric_close_and_iso_time():
    tick = normalize("price:QQQ", frames.price("QQQ", close=600.67, time="2026-11-20T14:30:00+00:00")).record
    assert tick.close == Decimal("600.67")
    assert tick.ts == datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def test_price_tick_without_close_is_missing_a_field():
    payload = frames.price()
    del payload["close"]
    with pytest.raises(NormalizationError) as exc:
        normalize("price:SPY", payload)
    assert exc.value.kind is RejectKind.MISSING_FIELD


def test_gex_snapshot_reads_every_exposure_and_treats_empty_delta_as_absent():
    snapshot = normalize("gex:SPY", frames.gex()).record
    assert isinstance(snapshot, GexSnapshot)
    assert snapshot.gamma_oi == Decimal("909536312.57153")
    assert snapshot.gamma_dir == Decimal("-363814525.02861")
    assert snapshot.delta_oi is None
    assert snapshot.delta_vol == Decimal("0")
    assert snapshot.vanna_dir == Decimal("3.3")
    assert snapshot.price == Decimal("662.28")


def test_gex_snapshot_accepts_numbers():
    snapshot = normalize("gex:SPY", frames.gex(gamma_per_one_percent_move_oi=909536312.5, price=662.28)).record
    assert snapshot.gamma_oi == Decimal("909536312.5")


def test_gex_strike_has_a_natural_key_without_expiry():
    row = normalize("gex_strike:SPY", frames.gex_strike()).record
    assert isinstance(row, GexStrike)
    assert row.expiry is None
    assert row.strike == Decimal("600")
    assert row.call_gamma_oi == Decimal("0.25")
    assert row.natural_key == "SPY|1795185000000|600|"


def test_gex_strike_expiry_requires_and_keeps_the_expiry():
    row = normalize("gex_strike_expiry:SPY", frames.gex_strike(expiry="2026-11-20", strike=600.5)).record
    assert row.expiry == date(2026, 11, 20)
    assert row.natural_key == "SPY|1795185000000|600.5|2026-11-20"
    with pytest.raises(NormalizationError) as exc:
        normalize("gex_strike_expiry:SPY", frames.gex_strike())
    assert "expiry" in exc.value.reason


def test_news_from_iso_timestamp_drives_no_ticker():
    result = normalize("news", frames.news())
    item = result.record
    assert isinstance(item, NewsItem)
    assert item.published_at == datetime(2026, 11, 20, 14, 30, 12, tzinfo=UTC)
    assert item.tickers == ["SPY", "QQQ"]
    assert len(item.news_key) == 64
    assert result.ticker is None


def test_news_from_epoch_ms_is_the_same_item_as_from_iso():
    from_iso = normalize("news", frames.news()).record
    from_ms = normalize("news", frames.news(timestamp=1795185012000)).record
    assert from_iso.news_key == from_ms.news_key


@pytest.mark.parametrize("channel", ["lit_trades", "off_lit_trades", "market_tide", "net_flow:SPY", "interval_flow"])
def test_documented_channels_without_a_table_are_accepted_raw_only(channel):
    result = normalize(channel, {"anything": "goes", "n": 1})
    assert result.record is None
    assert result.kind is ChannelKind.RAW_ONLY


def test_join_acks_produce_no_row():
    result = normalize("price:SPY", {"response": {}, "status": "ok"})
    assert result.record is None
    assert result.ticker is None


@pytest.mark.parametrize("name", ["flow_alerts", "price", "price:", "price:spy", "gex_strikes:SPY", "trades"])
def test_undocumented_channel_names_are_unknown(name):
    with pytest.raises(UnknownChannel) as exc:
        channel_resolve(name)
    assert str(exc.value).startswith("unknown channel")


@pytest.mark.parametrize(
    "value",
    [1795185059900, 1795185059.9, "1795185059900", "2026-11-20T14:30:59.900Z", "2026-11-20T09:30:59.9-05:00"],
)
def test_times_in_every_documented_form_are_the_same_aware_utc_instant(value):
    assert parse_time(value) == EXECUTED


@pytest.mark.parametrize("value", [0, -5, True, "soon", "9999999999999999", [1]])
def test_impossible_times_are_refused(value):
    with pytest.raises(ValueError):
        parse_time(value)


@pytest.mark.parametrize(
    ("channel", "payload", "field"),
    [
        ("option_trades:SPY", frames.option_trade(), "executed_at"),
        ("option_trades:SPY", frames.option_trade(), "size"),
        ("option_trades:SPY", frames.option_trade(), "id"),
        ("flow-alerts", frames.flow_alert(), "executed_at"),
        ("flow-alerts", frames.flow_alert(), "total_premium"),
        ("flow-alerts", frames.flow_alert(), "id"),
        ("price:SPY", frames.price(), "time"),
        ("gex:SPY", frames.gex(), "timestamp"),
        ("gex:SPY", frames.gex(), "price"),
        ("gex_strike:SPY", frames.gex_strike(), "strike"),
        ("gex_strike:SPY", frames.gex_strike(), "timestamp"),
        ("news", frames.news(), "headline"),
        ("news", frames.news(), "timestamp"),
    ],
)
def test_a_frame_without_a_required_field_is_rejected_even_when_a_lookalike_field_is_present(channel, payload, field):
    del payload[field]
    with pytest.raises(NormalizationError) as exc:
        normalize(channel, payload)
    assert exc.value.kind is RejectKind.MISSING_FIELD
    assert repr(field) in exc.value.reason


def test_a_data_frame_that_happens_to_carry_a_status_field_is_still_data():
    result = normalize("price:SPY", frames.price(status="open"))
    assert isinstance(result.record, PriceTick)


def test_an_error_ack_is_still_an_ack():
    assert normalize("gex:SPY", {"status": "error", "response": {"message": "not authorized"}}).record is None
