"""The Redis keys ingestion writes: contents per docs/pipeline.md, and never rewound by late frames."""

from __future__ import annotations

import orjson
import pytest

from apps.ingestion import redis_keys
from apps.ingestion.services import ingest_lines
from tests.ingestion import frames

pytestmark = pytest.mark.django_db
MS = frames.RECEIVED_MS


def test_latest_price_holds_close_volume_and_iso_time(redis_store):
    ingest_lines(lines=[frames.line("price:SPY", frames.price(close="661.90", time=MS, vol=5))], source="t")
    assert redis_store.hgetall("latest:uw:price:SPY") == {
        "close": "661.9",
        "volume": "5",
        "ts": "2026-11-20T14:31:00+00:00",
        "ts_ms": str(MS),
    }


def test_latest_price_is_not_rewound_by_a_late_older_tick(redis_store):
    newer = frames.line("price:SPY", frames.price(close="662.00", time=MS))
    older = frames.line("price:SPY", frames.price(close="650.00", time=MS - 60_000), received_at=MS + 10)
    ingest_lines(lines=[newer], source="t")
    ingest_lines(lines=[older], source="t")
    assert redis_store.hget("latest:uw:price:SPY", "close") == "662"


def test_within_one_batch_the_newest_tick_wins_whatever_the_order(redis_store):
    lines = [
        frames.line("price:SPY", frames.price(close="663", time=MS)),
        frames.line("price:SPY", frames.price(close="600", time=MS - 120_000)),
    ]
    ingest_lines(lines=lines, source="t")
    assert redis_store.hget("latest:uw:price:SPY", "close") == "663"


def test_price_ticks_sorted_set_keeps_the_last_day_only(redis_store):
    day = 24 * 60 * 60 * 1000
    ingest_lines(lines=[frames.line("price:SPY", frames.price(close="600", time=MS - day - 1))], source="t")
    ingest_lines(lines=[frames.line("price:SPY", frames.price(close="601", time=MS - 1000))], source="t")
    ingest_lines(lines=[frames.line("price:SPY", frames.price(close="602", time=MS))], source="t")
    members = redis_store.zrange("uw:price_ticks:SPY", 0, -1, withscores=True)
    assert members == [(f"{MS - 1000}:601", float(MS - 1000)), (f"{MS}:602", float(MS))]


def test_latest_gex_holds_exposures_price_and_time(redis_store):
    ingest_lines(lines=[frames.line("gex:QQQ", frames.gex("QQQ"))], source="t")
    latest = redis_store.hgetall("latest:uw:gex:QQQ")
    assert latest["gamma_oi"] == "909536312.57153"
    assert latest["delta_oi"] == ""
    assert latest["price"] == "662.28"
    assert latest["ts"] == "2026-11-20T14:30:00+00:00"


def test_latest_quote_comes_from_the_newest_trade_of_the_contract(redis_store):
    occ = "SPY261120C00600000"
    newest = frames.option_trade(price="4.10", nbbo_bid="4.05", nbbo_ask="4.15", executed_at=MS, delta="0.55")
    late = frames.option_trade(price="3.50", nbbo_bid="3.45", nbbo_ask="3.55", executed_at=MS - 30_000)
    ingest_lines(lines=[frames.line("option_trades:SPY", newest)], source="t")
    ingest_lines(lines=[frames.line("option_trades:SPY", late, received_at=MS + 5)], source="t")
    quote = redis_store.hgetall(f"latest:uw:quote:{occ}")
    assert (quote["bid"], quote["ask"], quote["last"]) == ("4.05", "4.15", "4.1")
    assert quote["underlying_price"] == "599.86"
    assert quote["iv"] == "0.144949"
    assert quote["delta"] == "0.55"
    assert quote["ts"] == "2026-11-20T14:31:00+00:00"


def test_latest_news_holds_the_newest_headline(redis_store):
    later = frames.news(headline="Later", timestamp="2026-11-20T15:00:00Z")
    ingest_lines(lines=[frames.line("news", later)], source="t")
    ingest_lines(lines=[frames.line("news", frames.news(headline="Earlier"))], source="t")
    news = redis_store.hgetall("latest:uw:news")
    assert news["headline"] == "Later"
    assert orjson.loads(news["tickers"]) == ["SPY", "QQQ"]


def test_flow_alerts_list_is_newest_first_and_capped(redis_store, monkeypatch):
    monkeypatch.setattr(redis_keys, "FLOW_ALERTS_CAP", 3)
    lines = [
        frames.line("flow-alerts", frames.flow_alert(id=f"a{i}", executed_at=MS + i * 1000), received_at=MS + i)
        for i in (2, 0, 4, 1, 3)
    ]
    ingest_lines(lines=lines, source="t")
    alerts = [orjson.loads(item) for item in redis_store.lrange("uw:flow_alerts", 0, -1)]
    assert [alert["id"] for alert in alerts] == ["a4", "a3", "a2"]
    assert alerts[0]["strike"] == "600"
    assert alerts[0]["right"] == "C"
    assert alerts[0]["total_premium"] == "145645.39"


def test_a_flow_alert_is_pushed_once_even_when_resent_with_different_bytes(redis_store):
    alert = frames.flow_alert(id="same-id")
    resent = {**alert, "url": "https://example.invalid/changed"}
    ingest_lines(lines=[frames.line("flow-alerts", alert)], source="t")
    result = ingest_lines(lines=[frames.line("flow-alerts", resent)], source="t")
    assert result.accepted == 1  # a different frame, archived
    assert redis_store.llen("uw:flow_alerts") == 1


def test_duplicates_do_not_touch_redis(redis_store):
    line = frames.line("price:SPY", frames.price(close="661.90", time=MS))
    ingest_lines(lines=[line], source="t")
    redis_store.hset("latest:uw:price:SPY", "close", "marker")
    ingest_lines(lines=[line], source="t")
    assert redis_store.hget("latest:uw:price:SPY", "close") == "marker"


def test_publishing_the_same_updates_twice_changes_nothing(redis_store):
    updates = redis_keys.LatestUpdates()
    updates.offer_hash("latest:uw:price:SPY", MS, {"close": "1"})
    updates.add_price_tick("SPY", MS, "1")
    updates.add_flow_alert(MS, '{"id":"x"}')
    redis_keys.latest_publish(updates=updates)
    redis_keys.latest_publish(updates=updates)
    assert redis_store.llen("uw:flow_alerts") == 1
    assert redis_store.zcard("uw:price_ticks:SPY") == 1
    assert redis_store.hget("latest:uw:price:SPY", "close") == "1"


def test_a_concurrent_newer_write_between_read_and_exec_is_not_overwritten(redis_store, monkeypatch):
    """Another worker writes a newer value after our read: WATCH aborts our EXEC, and the retry sees the newer one."""
    key = "latest:uw:price:SPY"
    redis_store.hset(key, mapping={"close": "1", "ts_ms": str(MS - 10)})
    updates = redis_keys.LatestUpdates()
    updates.offer_hash(key, MS, {"close": "2"})
    original_multi = redis_keys.redis.client.Pipeline.multi
    raced = []

    def multi_with_a_racing_writer(self):
        if not raced:
            raced.append(True)
            redis_store.hset(key, mapping={"close": "3", "ts_ms": str(MS + 10)})
        return original_multi(self)

    monkeypatch.setattr(redis_keys.redis.client.Pipeline, "multi", multi_with_a_racing_writer)
    redis_keys.latest_publish(updates=updates)
    assert redis_store.hget(key, "close") == "3"
