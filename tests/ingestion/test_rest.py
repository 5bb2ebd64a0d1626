"""The Unusual Whales REST side: client, archive, rate limits, normalizers, polls, backfill, tasks and schedules.

Every request goes through the real ``requests`` client to a loopback stand-in (``tests.ingestion.rest_standin``);
rows land in the real database and the budget in the real Redis.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import orjson
import pytest

from apps.core import clock
from apps.core.store import get_redis
from apps.ingestion import redis_keys, rest_services, rest_tasks
from apps.ingestion.models import (
    Candle,
    FlowAlert,
    GexSnapshot,
    GreekExposure,
    MarketTide,
    NetPremTick,
    NewsItem,
    OptionContract,
    QuarantinedFrame,
    RestPayload,
    StockState,
)
from apps.ingestion.services import ingest_lines
from apps.ingestion.uw import rest
from apps.ingestion.uw.rest import UWBudgetExhausted, UWDailyLimitReached, UWRestClient, UWRestError
from tests.ingestion import frames
from tests.ingestion.rest_standin import FLOW_ALERTS_PATH, Reply, RestStandin

pytestmark = pytest.mark.django_db

TOKEN = "uw-SECRET-token-7f3a9c"
T0 = datetime(2026, 11, 20, 14, 31, tzinfo=UTC)  # 09:31 New York, a Friday session


@pytest.fixture
def uw(settings):
    standin = RestStandin(token=TOKEN).start()
    settings.UW_API_URL = standin.base_url
    settings.UW_API_TOKEN = TOKEN
    settings.UW_REST_REQUESTS_PER_MINUTE = 120
    settings.UW_REST_TIMEOUT_SECONDS = 2.0
    yield standin
    standin.stop()


def client(standin: RestStandin, **options: Any) -> UWRestClient:
    options.setdefault("token", TOKEN)
    return UWRestClient(base_url=standin.base_url, **options)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def rest_alert(n: int, created_at: datetime, **overrides: Any) -> dict[str, Any]:
    item = {
        "id": f"alert-{n}",
        "alert_rule": "RepeatedHits",
        "all_opening_trades": True,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "expiry": "2026-11-20",
        "expiry_count": 1,
        "has_floor": False,
        "has_multileg": False,
        "has_singleleg": True,
        "has_sweep": True,
        "issue_type": "ETF",
        "open_interest": 40000,
        "option_chain": "SPY261120C00600000",
        "price": "0.67",
        "strike": "600",
        "ticker": "SPY",
        "total_ask_side_prem": "125137.06",
        "total_bid_side_prem": "20508.33",
        "total_premium": "145645.39",
        "total_size": 2100,
        "trade_count": 9,
        "type": "call",
        "underlying_price": "599.5",
        "volume": 12000,
        "volume_oi_ratio": "0",
    }
    item.update(overrides)
    return item


def socket_alert_lines(ids_and_times: list[tuple[str, datetime]]) -> list[str]:
    return [
        frames.line("flow-alerts", frames.flow_alert(id=uw_id, executed_at=redis_keys.epoch_ms(moment)))
        for uw_id, moment in ids_and_times
    ]


# --- normalizers, one endpoint each -------------------------------------------------------------------------------


def test_flow_alerts_from_rest_become_the_rows_the_socket_would_give(uw):
    executed = T0 - timedelta(milliseconds=100)
    socket_lines = socket_alert_lines([("alert-1", executed)])
    ingest_lines(lines=socket_lines, source="uw_ws")
    from_socket = FlowAlert.objects.get(uw_id="alert-1")
    FlowAlert.objects.all().delete()
    # Numbers as JSON numbers on one, strings on the other: the same alert either way.
    uw.data(
        FLOW_ALERTS_PATH,
        [
            rest_alert(
                1,
                executed,
                price=0.67,
                underlying_price=599.5,
                total_premium=145645.39,
                total_ask_side_prem="125137.06",
                total_bid_side_prem=20508.33,
            )
        ],
    )

    result = rest_services.rest_poll(endpoint="flow_alerts", ticker=None)

    assert result.rows == 1 and result.new_flow_alerts == 1
    from_rest = FlowAlert.objects.get(uw_id="alert-1")
    # REST alerts carry no bid/ask (the socket's do); every other column is the same.
    columns = [
        f.attname for f in FlowAlert._meta.concrete_fields if f.attname not in ("id", "raw_frame_id", "bid", "ask")
    ]
    assert from_rest.bid is None and from_rest.ask is None
    assert {c: getattr(from_rest, c) for c in columns} == {c: getattr(from_socket, c) for c in columns}
    assert from_rest.total_premium == Decimal("145645.3900")
    assert from_rest.executed_at == executed
    assert from_rest.volume_oi_ratio == Decimal("0.300000")  # computed: the feed's 0 is wrong


def test_flow_alert_whose_type_contradicts_its_symbol_is_quarantined_and_the_page_goes_on(uw):
    uw.data(FLOW_ALERTS_PATH, [rest_alert(1, T0, type="put"), rest_alert(2, T0), "junk", rest_alert(3, T0, id=None)])

    result = rest_services.rest_poll(endpoint="flow_alerts", ticker=None)

    assert result.items == 4 and result.quarantined == 2
    assert set(FlowAlert.objects.values_list("uw_id", flat=True)) >= {"alert-2"}
    assert FlowAlert.objects.count() == 2  # alert-2 and the id-less one under a derived id
    reasons = dict(QuarantinedFrame.objects.values_list("channel", "reason").order_by("reason"))
    assert set(reasons) == {"rest:flow_alerts"}
    assert any("'type'" in r for r in QuarantinedFrame.objects.values_list("reason", flat=True))
    assert RestPayload.objects.get(pk=result.payload_id).rows == 2


def test_spot_exposures_become_gex_snapshots_and_publish_the_latest_gex(uw):
    uw.data(
        "/api/stock/SPY/spot-exposures",
        [
            {
                "time": "2023-09-07 20:11:00+00:00",
                "price": "4451.38",
                "gamma_per_one_percent_move_oi": "909536312.57153",
                "gamma_per_one_percent_move_vol": 1182397206.34,
                "gamma_per_one_percent_move_dir": "-363814525.02861",
                "charm_per_one_percent_move_oi": "1234.5",
                "vanna_per_one_percent_move_oi": -99.1,
            },
            {"time": 1694117520000, "price": 4452, "gamma_per_one_percent_move_oi": "1"},
        ],
    )

    result = rest_services.rest_poll(endpoint="spot_exposures", ticker="SPY")

    assert result.rows == 2
    first = GexSnapshot.objects.get(ts=datetime(2023, 9, 7, 20, 11, tzinfo=UTC))
    assert first.ticker == "SPY" and first.price == Decimal("4451.380000")
    assert first.gamma_vol == Decimal("1182397206.340000") and first.vanna_oi == Decimal("-99.100000")
    assert first.delta_oi is None
    second = GexSnapshot.objects.get(ts=datetime(2023, 9, 7, 20, 12, tzinfo=UTC))
    latest = get_redis().hgetall(redis_keys.latest_gex_key("SPY"))
    assert latest["price"] == "4452" and latest["ts"] == second.ts.isoformat()


def test_greek_exposure_stock_state_and_candles_become_their_rows(uw):
    uw.data(
        "/api/stock/QQQ/greek-exposure",
        [{"date": "2026-11-19", "call_delta": "227549667.4651", "put_delta": -150000.5, "call_gamma": "9898.1"}],
    )
    uw.data(
        "/api/stock/QQQ/stock-state",
        {
            "open": "600.1",
            "high": 605,
            "low": "599.25",
            "close": "604.5",
            "prev_close": "598",
            "volume": 1000,
            "total_volume": "25000",
            "market_time": "r",
            "tape_time": "2026-11-20T14:31:00.123456Z",
        },
    )
    uw.data(
        "/api/stock/QQQ/ohlc/1m",
        [
            {
                "open": "604.1",
                "high": "604.9",
                "low": 604,
                "close": "604.5",
                "start_time": "2026-11-20T14:30:00Z",
                "end_time": 1795185060,  # epoch seconds
                "volume": 1200,
                "total_volume": 25000,
                "market_time": "r",
            }
        ],
    )

    for endpoint in ("greek_exposure", "stock_state", "candles_1m"):
        assert rest_services.rest_poll(endpoint=endpoint, ticker="QQQ").rows == 1

    greeks = GreekExposure.objects.get()
    assert (greeks.ticker, greeks.date) == ("QQQ", date(2026, 11, 19))
    assert greeks.put_delta == Decimal("-150000.500000") and greeks.put_gamma is None
    state = StockState.objects.get()
    assert state.tape_time == datetime(2026, 11, 20, 14, 31, 0, 123456, tzinfo=UTC)
    assert (state.high, state.total_volume, state.market_time) == (Decimal("605.000000"), 25000, "r")
    candle = Candle.objects.get()
    assert candle.interval == "1m" and candle.low == Decimal("604.000000")
    assert candle.end_time == datetime(2026, 11, 20, 14, 31, tzinfo=UTC)


def test_market_tide_net_prem_ticks_and_news_become_their_rows(uw):
    uw.data(
        "/api/market/market-tide",
        [
            {
                "date": "2026-11-20",
                "timestamp": "2026-11-20T09:31:00-05:00",
                "net_call_premium": "-1.5e6",
                "net_put_premium": 2500000.25,
                "net_volume": 1234,
            }
        ],
    )
    uw.data(
        "/api/stock/IWM/net-prem-ticks",
        [
            {
                "tape_time": "2026-11-20T14:31:00Z",
                "net_call_premium": "12345.67",
                "net_put_premium": -890,
                "net_call_volume": 10,
                "net_put_volume": "-4",
                "net_delta": "1234.56789",
            }
        ],
    )
    uw.data(
        "/api/news/headlines",
        [
            {
                "created_at": "2026-11-20T14:30:12Z",
                "headline": "Fed holds rates steady",
                "is_major": True,
                "meta": {},
                "sentiment": "neutral",
                "source": "Reuters",
                "tags": [],
                "tickers": ["SPY", "QQQ"],
            }
        ],
    )

    assert rest_services.rest_poll(endpoint="market_tide", ticker=None).rows == 1
    assert rest_services.rest_poll(endpoint="net_prem_ticks", ticker="IWM").rows == 1
    assert rest_services.rest_poll(endpoint="news", ticker=None).rows == 1

    tide = MarketTide.objects.get()
    assert tide.ts == datetime(2026, 11, 20, 14, 31, tzinfo=UTC)
    assert (tide.net_call_premium, tide.net_put_premium) == (Decimal("-1500000.0000"), Decimal("2500000.2500"))
    tick = NetPremTick.objects.get()
    assert (tick.ticker, tick.net_put_premium, tick.net_put_volume) == ("IWM", Decimal("-890.0000"), -4)
    # The socket's copy of the same headline is the same row (same news_key).
    ingest_lines(lines=[frames.line("news", frames.news(is_major=True))], source="uw_ws")
    item = NewsItem.objects.get()
    assert item.is_major and item.tickers == ["SPY", "QQQ"]
    assert get_redis().hget(redis_keys.LATEST_NEWS, "headline") == "Fed holds rates steady"


def test_option_contracts_keep_the_latest_snapshot_per_contract(uw):
    contract = {
        "option_symbol": "SPY261120C00600000",
        "volume": 100,
        "open_interest": 40000,
        "implied_volatility": "0.144949",
        "nbbo_bid": "3.89",
        "nbbo_ask": 3.93,
        "last_price": "3.91",
    }
    uw.reply(
        "/api/stock/SPY/option-contracts",
        Reply(body={"data": [contract, {**contract, "option_symbol": "SPY261120P00590000"}, {"option_symbol": "bad"}]}),
        Reply(body={"data": [{**contract, "volume": 250, "nbbo_bid": "4.01"}]}),
    )

    first = rest_services.rest_poll(endpoint="option_contracts", ticker="SPY")
    second = rest_services.rest_poll(endpoint="option_contracts", ticker="SPY")

    assert (first.rows, first.quarantined, second.rows) == (2, 1, 1)
    assert OptionContract.objects.count() == 2
    call = OptionContract.objects.get(option_symbol="SPY261120C00600000")
    assert (call.volume, call.nbbo_bid, call.nbbo_ask) == (250, Decimal("4.010000"), Decimal("3.930000"))
    assert (call.ticker, call.right, call.strike, call.expiry) == (
        "SPY",
        "C",
        Decimal("600.000000"),
        date(2026, 11, 20),
    )
    assert call.as_of == RestPayload.objects.get(pk=second.payload_id).requested_at


def test_polling_the_same_page_again_adds_nothing(uw):
    uw.data(
        "/api/stock/SPY/net-prem-ticks", [{"tape_time": f"2026-11-20T14:3{n}:00Z", "net_delta": n} for n in range(3)]
    )
    uw.data(FLOW_ALERTS_PATH, [rest_alert(1, T0), rest_alert(2, T0, id=None)])

    for _ in range(2):
        rest_services.rest_poll(endpoint="net_prem_ticks", ticker="SPY")
        again = rest_services.rest_poll(endpoint="flow_alerts", ticker=None)

    assert NetPremTick.objects.count() == 3
    assert FlowAlert.objects.count() == 2
    assert again.new_flow_alerts == 0
    assert get_redis().llen(redis_keys.FLOW_ALERTS) == 2
    assert RestPayload.objects.count() == 4  # each request archived, even the repeats


# --- the archive, errors and retries --------------------------------------------------------------------------------


def test_a_success_is_archived_with_its_usage_headers(uw):
    uw.data(
        "/api/stock/SPY/stock-state", {"close": "1", "tape_time": "2026-11-20T14:31:00Z"}, headers={"retry-after": "0"}
    )

    response = client(uw).stock_state(ticker="SPY")

    row = RestPayload.objects.get(pk=response.payload_id)
    assert (row.endpoint, row.path, row.status, row.params) == ("stock_state", "/api/stock/SPY/stock-state", 200, {})
    assert row.body == {"data": {"close": "1", "tape_time": "2026-11-20T14:31:00Z"}} and row.body_text == ""
    assert row.rate["x-uw-req-per-minute-remaining"] == "119" and row.rate["retry-after"] == "0"
    assert "content-type" not in row.rate
    assert response.items == [{"close": "1", "tape_time": "2026-11-20T14:31:00Z"}]


def test_429_waits_for_retry_after_before_trying_again(uw):
    uw.reply(
        "/api/news/headlines",
        Reply(status=429, body={"msg": "slow down"}, headers={"retry-after": "1"}),
        Reply(body={"data": []}),
    )

    response = client(uw).news()

    first, second = uw.seen("/api/news/headlines")
    assert second.at - first.at >= 0.95
    assert response.attempts == 2 and response.items == []
    assert list(RestPayload.objects.order_by("id").values_list("status", "rate__retry-after")) == [
        (429, "1"),
        (200, None),
    ]


def test_429_without_retry_after_backs_off_and_gives_up_after_the_bounded_tries(uw):
    uw.reply("/api/news/headlines", Reply(status=429, body={"msg": "slow down"}))
    waits: list[float] = []

    with pytest.raises(UWRestError) as caught:
        client(uw, max_attempts=3, sleep=waits.append).news()

    assert caught.value.status == 429 and not caught.value.permanent
    assert len(uw.seen("/api/news/headlines")) == 3 and len(waits) == 2
    assert all(0 <= wait <= rest.BACKOFF_CAP_SECONDS for wait in waits)
    assert RestPayload.objects.filter(status=429).count() == 3


def test_500_text_plain_is_archived_as_text_and_retried(uw):
    uw.reply(
        "/api/market/market-tide",
        Reply(status=500, text="Internal Server Error", content_type="text/plain"),
        Reply(body={"data": []}),
    )

    response = client(uw, sleep=lambda _: None).market_tide()

    assert response.attempts == 2
    failed = RestPayload.objects.get(status=500)
    assert failed.body is None and failed.body_text == "Internal Server Error"


def test_a_timeout_is_archived_with_status_0(uw):
    uw.reply("/api/market/market-tide", Reply(body={"data": []}, delay=1.0))

    with pytest.raises(UWRestError) as caught:
        client(uw, timeout=0.2, max_attempts=2, sleep=lambda _: None).market_tide()

    assert caught.value.status == 0 and not caught.value.permanent
    rows = list(RestPayload.objects.all())
    assert len(rows) == 2 and {r.status for r in rows} == {0}
    assert all("Timeout" in r.body_text and r.body is None and r.elapsed_ms >= 150 for r in rows)


@pytest.mark.parametrize("status", [401, 422])
def test_other_4xx_are_permanent_and_not_retried(uw, status):
    body = {"msg": "invalid", "path": "x", "query": {}, "url": "y"}
    uw.reply("/api/stock/SPY/greek-exposure", Reply(status=status, body=body))

    with pytest.raises(UWRestError) as caught:
        client(uw).greek_exposure(ticker="SPY")

    assert caught.value.permanent and caught.value.status == status and "invalid" in caught.value.body
    assert len(uw.seen("/api/stock/SPY/greek-exposure")) == 1
    assert RestPayload.objects.get().status == status


def test_a_wrong_token_is_a_permanent_401(uw):
    with pytest.raises(UWRestError) as caught:
        client(uw, token="not-the-token").news()
    assert caught.value.permanent and caught.value.status == 401


def test_the_token_appears_in_no_archived_row_and_no_log_record(uw, caplog):
    caplog.set_level(logging.DEBUG)
    uw.reply("/api/stock/SPY/greek-exposure", Reply(status=422, echo_authorization=True))
    uw.reply("/api/market/market-tide", Reply(status=500, text=f"oops {TOKEN}", content_type="text/plain"))
    uw.reply("/api/news/headlines", Reply(body={"data": [{"headline": TOKEN}]}, delay=1.0))
    uw.data(FLOW_ALERTS_PATH, [{"id": "x", "note": f"Bearer {TOKEN}"}])
    settings_client = client(uw, timeout=0.3, max_attempts=2, sleep=lambda _: None)

    for call in (
        lambda: settings_client.greek_exposure(ticker="SPY"),
        settings_client.market_tide,
        settings_client.news,
    ):
        with pytest.raises(UWRestError) as caught:
            call()
        assert TOKEN not in str(caught.value) and TOKEN not in caught.value.body
    rest_services.rest_poll(endpoint="flow_alerts", ticker=None, client=settings_client)

    assert uw.seen("/api/stock/SPY/greek-exposure")[0].authorization == f"Bearer {TOKEN}"
    archived = orjson.dumps(list(RestPayload.objects.values()), default=str).decode()
    assert "greek-exposure" in archived and TOKEN not in archived
    quarantined = orjson.dumps(list(QuarantinedFrame.objects.values()), default=str).decode()
    assert "rest:flow_alerts" in quarantined and TOKEN not in quarantined
    assert caplog.records and TOKEN not in caplog.text
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert TOKEN not in repr(settings_client)


# --- rate limits ----------------------------------------------------------------------------------------------------


def test_the_per_minute_budget_stops_a_burst_across_clients(uw):
    uw.data("/api/news/headlines", [])
    with clock.simulated(T0 + timedelta(seconds=10)):
        first, second = client(uw, requests_per_minute=3, max_wait_seconds=0), client(uw, requests_per_minute=3)
        first.news()
        second.news()
        first.news()
        with pytest.raises(UWBudgetExhausted) as caught:
            second.max_wait_seconds = 0
            second.news()

    assert len(uw.seen("/api/news/headlines")) == 3
    assert not caught.value.permanent and caught.value.retry_after == pytest.approx(50, abs=0.01)
    assert RestPayload.objects.count() == 3


def test_the_budget_frees_up_in_the_next_minute(uw):
    uw.data("/api/news/headlines", [])
    with clock.simulated(T0 + timedelta(seconds=59)):
        limited = client(uw, requests_per_minute=1, max_wait_seconds=0)
        limited.news()
        with pytest.raises(UWBudgetExhausted):
            limited.news()
        clock.advance_to(T0 + timedelta(seconds=60))
        limited.news()
    assert len(uw.seen("/api/news/headlines")) == 2


def test_a_budget_wait_on_a_simulated_clock_gives_up_instead_of_spinning(uw):
    uw.data("/api/news/headlines", [])
    with clock.simulated(T0):
        patient = client(uw, requests_per_minute=1, max_wait_seconds=120, sleep=lambda _: None)
        patient.news()
        with pytest.raises(UWBudgetExhausted):
            patient.news()
    assert len(uw.seen("/api/news/headlines")) == 1


def test_uw_saying_the_minute_is_used_up_pauses_the_next_request_until_the_reset(uw):
    uw.reply(
        "/api/news/headlines",
        Reply(body={"data": []}, headers={"x-uw-req-per-minute-remaining": "0", "x-uw-req-per-minute-reset": "500"}),
        Reply(body={"data": []}),
    )

    uw_client = client(uw)
    uw_client.news()
    assert get_redis().exists(rest.PAUSE_KEY)
    uw_client.news()

    first, second = uw.seen("/api/news/headlines")
    assert second.at - first.at >= 0.4
    with pytest.raises(UWBudgetExhausted):
        get_redis().set(rest.PAUSE_KEY, str(redis_keys.epoch_ms(clock.now()) + 60_000), px=60_000)
        client(uw, max_wait_seconds=1).news()
    assert len(uw.seen("/api/news/headlines")) == 2


def test_reaching_the_daily_limit_stops_polling_until_20_00_new_york(uw, caplog):
    uw.data("/api/news/headlines", [], headers={"x-uw-daily-req-count": "15000", "x-uw-token-req-limit": "15000"})
    with clock.simulated(T0):
        client(uw).news()
        with pytest.raises(UWDailyLimitReached) as caught:
            client(uw).news()

    assert caught.value.permanent and "2026-11-21T01:00:00+00:00" in str(caught.value)
    assert len(uw.seen("/api/news/headlines")) == 1
    assert get_redis().ttl(rest.DAILY_STOP_KEY) == pytest.approx(10 * 3600 + 29 * 60, abs=5)
    assert "daily request limit reached (15000 of 15000)" in caplog.text
    assert "2026-11-20 20:00 New York" in caplog.text


def test_the_daily_reset_after_20_00_is_the_next_evening():
    late = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)  # 20:30 New York on the 20th
    assert rest.next_daily_reset(late) == datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


# --- backfill -------------------------------------------------------------------------------------------------------


def test_backfill_fills_the_gap_over_several_pages_without_duplicating_socket_alerts(uw):
    stored = [(f"alert-{n}", T0 + timedelta(seconds=n)) for n in range(3)]
    ingest_lines(lines=socket_alert_lines(stored), source="uw_ws")
    newest = T0 + timedelta(seconds=2)
    # UW holds the stored ones too (same ids), older ones the socket never saw, and 250 missed during a disconnect.
    dataset = [rest_alert(n, moment) for n, (_, moment) in enumerate(stored)]
    dataset += [rest_alert(100 + n, T0 - timedelta(minutes=5, seconds=n)) for n in range(5)]
    dataset += [rest_alert(1000 + n, newest + timedelta(milliseconds=300 * (n + 1))) for n in range(250)]
    uw.flow_alert_dataset = dataset

    result = rest_services.flow_alerts_backfill()

    assert result.complete and result.pages == 2 and result.inserted == 250
    assert FlowAlert.objects.count() == 253
    assert not FlowAlert.objects.filter(uw_id__in=[f"alert-{100 + n}" for n in range(5)]).exists()
    pages = uw.seen(FLOW_ALERTS_PATH)
    assert all(p.params["limit"] == "200" for p in pages)
    assert pages[0].params["newer_than"] == str(redis_keys.epoch_ms(newest - timedelta(seconds=1)))
    assert "older_than" not in pages[0].params and "older_than" in pages[1].params
    assert get_redis().llen(redis_keys.FLOW_ALERTS) == 253

    again = rest_services.flow_alerts_backfill()
    assert again.inserted == 0 and again.pages == 1 and FlowAlert.objects.count() == 253


def test_backfill_since_a_disconnect_fills_the_hole_between_socket_alerts(uw):
    before = T0
    after = T0 + timedelta(minutes=10)
    ingest_lines(lines=socket_alert_lines([("alert-1", before), ("alert-2", after)]), source="uw_ws")
    missed = [rest_alert(10 + n, before + timedelta(minutes=n + 1)) for n in range(5)]
    uw.flow_alert_dataset = [rest_alert(1, before), rest_alert(2, after), *missed]

    assert rest_services.flow_alerts_backfill().inserted == 0  # from the newest stored: nothing newer
    result = rest_services.flow_alerts_backfill(since=before)

    assert result.inserted == 5 and result.already_stored == 2
    assert FlowAlert.objects.count() == 7


def test_a_rest_alert_without_an_id_is_the_socket_alert_it_copies(uw):
    moment = T0 + timedelta(milliseconds=250)
    ingest_lines(lines=socket_alert_lines([("ws-id-1", moment)]), source="uw_ws")
    copy = rest_alert(0, moment, id=None)
    other = rest_alert(0, moment + timedelta(seconds=1), id=None)
    uw.flow_alert_dataset = [copy, other]

    result = rest_services.flow_alerts_backfill(since=T0)

    assert result.inserted == 1
    assert FlowAlert.objects.count() == 2
    derived = FlowAlert.objects.exclude(uw_id="ws-id-1").get()
    assert derived.uw_id.startswith("rest-") and derived.executed_at == moment + timedelta(seconds=1)
    assert rest_services.flow_alerts_backfill(since=T0).inserted == 0


def test_backfill_stores_nothing_when_a_page_fails(uw):
    uw.flow_alert_dataset = [rest_alert(n, T0 + timedelta(seconds=n)) for n in range(3)]
    uw.reply(FLOW_ALERTS_PATH, Reply(status=422, body={"msg": "bad"}))

    with pytest.raises(UWRestError):
        rest_services.flow_alerts_backfill(since=T0 - timedelta(minutes=1))

    assert FlowAlert.objects.count() == 0 and RestPayload.objects.get().status == 422


# --- tasks and schedules --------------------------------------------------------------------------------------------


def test_tasks_are_registered_under_their_names():
    from celery import current_app

    assert {"ingestion.rest_poll", "ingestion.flow_alerts_backfill"} <= set(current_app.tasks)


def test_the_poll_task_stores_rows_and_reports_permanent_errors_without_retrying(uw, caplog):
    uw.data("/api/stock/SPY/net-prem-ticks", [{"tape_time": "2026-11-20T14:31:00Z", "net_delta": "1"}])
    uw.reply("/api/stock/QQQ/net-prem-ticks", Reply(status=422, body={"msg": "bad ticker"}))

    ok = rest_tasks.rest_poll.delay(endpoint="net_prem_ticks", ticker="SPY").get()
    failed = rest_tasks.rest_poll.delay(endpoint="net_prem_ticks", ticker="QQQ").get()

    assert ok["rows"] == 1 and NetPremTick.objects.count() == 1
    assert failed["status"] == 422 and len(uw.seen("/api/stock/QQQ/net-prem-ticks")) == 1
    assert "failed permanently" in caplog.text


def test_the_tasks_skip_when_the_market_is_closed(uw, settings):
    saturday = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
    settings.TP_CLOCK_OFFSET_SECONDS = (saturday - datetime.now(UTC)).total_seconds()
    assert not clock.is_simulated()
    assert rest_tasks.rest_poll.delay(endpoint="news", market_hours_only=True).get() is None
    assert rest_tasks.flow_alerts_backfill.delay(market_hours_only=True).get() is None
    assert uw.requests == []
    assert rest_tasks.market_is_open(T0) and not rest_tasks.market_is_open(saturday)


def test_the_tasks_never_call_uw_in_a_replay(uw):
    with clock.simulated(T0):
        assert rest_tasks.market_is_open(clock.now())
        assert rest_tasks.rest_poll.delay(endpoint="news").get() is None
        assert rest_tasks.flow_alerts_backfill.delay().get() is None
    assert uw.requests == []


def test_the_schedules_stay_well_under_the_per_minute_budget(settings):
    from apps.core.beat import declared_periodic_tasks

    entries = [d for d in declared_periodic_tasks() if d.app == "ingestion"]
    assert {d.task for d in entries} == {"ingestion.rest_poll", "ingestion.flow_alerts_backfill"}
    assert all(d.kwargs.get("market_hours_only") for d in entries)
    worst = 0
    total = 0
    # celery-types does not declare the expanded field sets a crontab builds.
    minutes: list[set[int]] = [cast(Any, d.celery_crontab()).minute for d in entries]
    for minute in range(60):
        fired = sum(1 for fires in minutes if minute in fires)
        worst = max(worst, fired)
        total += fired
    assert worst <= settings.UW_REST_REQUESTS_PER_MINUTE / 4
    assert total / 60 < 15
