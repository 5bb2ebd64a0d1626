"""ingest_lines: accounting, archive, duplicates, quarantine, persistence and the hand-off to analytics."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from apps.ingestion import services, tape
from apps.ingestion.models import (
    FlowAlert,
    GexSnapshot,
    GexStrike,
    NewsItem,
    OptionTrade,
    PriceTick,
    QuarantinedFrame,
    RawBatch,
    RawFrame,
)
from apps.ingestion.services import ingest_lines
from tests.ingestion import frames

SAMPLE = Path("/work/shared/fixtures/uw_socket_sample.ndjson")
pytestmark = pytest.mark.django_db


class RecordingTask:
    """Stands in for analytics.update_ticker: records what ingestion hands over, runs nothing."""

    name = "analytics.update_ticker"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def apply_async(self, args=(), kwargs=None):
        self.calls.append(tuple(args))


@pytest.fixture
def analytics(monkeypatch):
    task = RecordingTask()
    monkeypatch.setattr(services, "analytics_task", lambda: task)
    return task


def one_of_each() -> list[str]:
    return [
        frames.line("flow-alerts", frames.flow_alert()),
        frames.line("option_trades:SPY", frames.option_trade()),
        frames.line("price:SPY", frames.price()),
        frames.line("gex:SPY", frames.gex()),
        frames.line("gex_strike:SPY", frames.gex_strike()),
        frames.line("gex_strike_expiry:SPY", frames.gex_strike(expiry="2026-11-20")),
        frames.line("news", frames.news()),
    ]


def assert_accounted(result, lines):
    assert result.accepted + result.duplicates + result.quarantined == len(lines)


def test_one_frame_of_every_channel_is_archived_and_normalized():
    lines = one_of_each()
    result = ingest_lines(lines=lines, source="test")
    assert (result.accepted, result.duplicates, result.quarantined) == (7, 0, 0)
    # The option trade is archived in the tape's compressed block, every other frame as a row.
    assert RawFrame.objects.count() == 6
    assert frames.archived_frames() == 7
    assert FlowAlert.objects.count() == OptionTrade.objects.count() == PriceTick.objects.count() == 1
    assert GexSnapshot.objects.count() == NewsItem.objects.count() == 1
    assert GexStrike.objects.count() == 2
    assert result.by_channel["price:SPY"] == 1
    assert result.by_channel["flow-alerts"] == 1
    assert result.tickers == {"SPY"}
    assert result.rows["uw_option_trades"] == 1


def test_stored_values_round_trip_as_decimals_and_aware_times():
    ingest_lines(lines=one_of_each(), source="test")
    trade = OptionTrade.objects.get()
    assert trade.price == Decimal("3.91")
    assert trade.executed_at == datetime(2026, 11, 20, 14, 30, 59, 500000, tzinfo=UTC)
    alert = FlowAlert.objects.get()
    assert alert.total_premium == Decimal("145645.39")
    assert alert.raw_frame is not None
    assert alert.raw_frame.channel == "flow-alerts"


def test_raw_frame_keeps_the_payload_channel_source_and_receive_time():
    payload = frames.price(close=661.9, surprise={"new": True})
    ingest_lines(lines=[frames.line("price:SPY", payload)], source="replay:sample")
    raw = RawFrame.objects.get()
    assert raw.payload == payload
    assert raw.channel == "price:SPY"
    assert raw.source == "replay:sample"
    assert raw.received_at == datetime(2026, 11, 20, 14, 31, tzinfo=UTC)
    assert len(raw.frame_hash) == 64


def test_the_same_lines_ingested_twice_add_no_rows_and_count_as_duplicates():
    lines = one_of_each()
    ingest_lines(lines=lines, source="test")
    counts = [model.objects.count() for model in (RawFrame, FlowAlert, OptionTrade, PriceTick, GexStrike, NewsItem)]
    again = ingest_lines(lines=lines, source="test")
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 7, 0)
    assert [model.objects.count() for model in (RawFrame, FlowAlert, OptionTrade, PriceTick, GexStrike, NewsItem)] == (
        counts
    )
    assert again.tickers == set()


def test_a_frame_repeated_within_a_batch_is_one_accepted_and_the_rest_duplicates():
    line = frames.line("price:SPY", frames.price())
    same_frame_later = frames.line("price:SPY", frames.price(), received_at=frames.RECEIVED_MS + 5)
    result = ingest_lines(lines=[line, line, same_frame_later], source="test")
    assert (result.accepted, result.duplicates, result.quarantined) == (1, 2, 0)
    assert RawFrame.objects.count() == PriceTick.objects.count() == 1


def test_key_order_does_not_make_a_frame_new():
    payload = frames.price()
    reordered = dict(reversed(list(payload.items())))
    first = ingest_lines(lines=[frames.line("price:SPY", payload)], source="test")
    second = ingest_lines(lines=[frames.line("price:SPY", reordered)], source="test")
    assert (first.accepted, second.duplicates) == (1, 1)


def test_the_same_trade_on_the_market_wide_and_ticker_channels_is_one_trade():
    trade = frames.option_trade()
    result = ingest_lines(
        lines=[frames.line("option_trades", trade), frames.line("option_trades:SPY", trade)], source="test"
    )
    # The tape's identity is UW's trade id: the second copy is a duplicate, archived once.
    assert (result.accepted, result.duplicates) == (1, 1)
    assert OptionTrade.objects.count() == 1
    assert frames.archived_frames() == 1


def test_the_tape_archive_holds_the_new_trade_lines_as_received():
    lines = [frames.line("option_trades:SPY", frames.option_trade(id=f"t-{i}")) for i in range(3)]
    ingest_lines(lines=lines[:1], source="test")
    ingest_lines(lines=lines, source="uw_ws")
    batches = list(RawBatch.objects.order_by("id"))
    assert [batch.frames for batch in batches] == [1, 2]
    assert tape.archived_lines(batches[1]) == lines[1:]
    assert batches[1].source == "uw_ws"
    assert batches[1].channel == "option_trades"


@pytest.mark.parametrize(
    ("line", "kind", "words"),
    [
        ("{not json", "broken_json", "broken JSON"),
        ("", "broken_json", "broken JSON"),
        ("[1, 2]", "not_an_object", "not an object"),
        ('"just a string"', "not_an_object", "not an object"),
        ('{"frame": ["price:SPY", {}]}', "bad_received_at", "received_at"),
        ('{"received_at": "yesterday", "frame": ["price:SPY", {}]}', "bad_received_at", "received_at"),
        ('{"received_at": 1795185060000}', "bad_frame", "no 'frame'"),
        ('{"received_at": 1795185060000, "frame": {"price:SPY": {}}}', "bad_frame", "two-element"),
        ('{"received_at": 1795185060000, "frame": ["price:SPY"]}', "bad_frame", "two-element"),
        ('{"received_at": 1795185060000, "frame": [7, {}]}', "bad_frame", "not a string"),
        ('{"received_at": 1795185060000, "frame": ["stock_trades:SPY", {}]}', "unknown_channel", "unknown channel"),
        ('{"received_at": 1795185060000, "frame": ["price:SPY", [1]]}', "bad_frame", "not an object"),
        ('{"received_at": 1795185060000, "frame": ["price:SPY", {"time": 1795185000000}]}', "missing_field", "close"),
        (
            '{"received_at": 1795185060000, "frame": ["price:SPY", {"close": "abc", "time": 1795185000000}]}',
            "invalid_value",
            "'close'",
        ),
        (
            '{"received_at": 1795185060000, "frame": ["price:SPY", {"close": "1", "time": 1, "x": "a\\u0000"}]}',
            "unstorable",
            "NUL",
        ),
    ],
)
def test_bad_lines_are_quarantined_with_their_reason_and_the_stream_goes_on(line, kind, words):
    good = frames.line("price:SPY", frames.price())
    result = ingest_lines(lines=[line, good], source="test")
    assert (result.accepted, result.duplicates, result.quarantined) == (1, 0, 1)
    assert result.quarantine_reasons == {kind: 1}
    row = QuarantinedFrame.objects.get()
    assert words in row.reason
    assert row.raw == line
    assert row.source == "test"
    assert PriceTick.objects.count() == 1


def test_quarantine_row_keeps_channel_and_receive_time_when_the_line_had_them():
    bad = frames.line("option_trades:SPY", frames.option_trade(size="lots"))
    result = ingest_lines(lines=[bad], source="test")
    assert result.quarantine_reasons == {"invalid_value": 1}
    row = QuarantinedFrame.objects.get()
    assert row.channel == "option_trades:SPY"
    assert row.received_at == datetime(2026, 11, 20, 14, 31, tzinfo=UTC)
    assert "'size'" in row.reason
    assert RawFrame.objects.count() == 0


def test_a_bad_line_seen_again_is_quarantined_again_but_stored_once():
    bad = '{"received_at": 1795185060000, "frame": ["nope", {}]}'
    first = ingest_lines(lines=[bad, bad], source="test")
    second = ingest_lines(lines=[bad], source="test")
    assert (first.quarantined, second.quarantined) == (2, 1)
    assert QuarantinedFrame.objects.count() == 1


def test_lines_that_are_not_text_are_quarantined_not_raised():
    result = ingest_lines(lines=[None, 42, b"{broken", frames.line("price:SPY", frames.price())], source="test")
    assert (result.accepted, result.quarantined) == (1, 3)
    assert result.quarantine_reasons == {"not_text": 2, "broken_json": 1}


def test_lines_with_lone_surrogates_and_nul_bytes_are_quarantined_and_storable():
    result = ingest_lines(lines=["\ud800{", "\x00\x00", '{"a": "\udfff"}'], source="test")
    assert result.quarantined == 3
    assert QuarantinedFrame.objects.count() == 3
    assert all("\x00" not in row.raw for row in QuarantinedFrame.objects.all())


def test_join_acks_are_accepted_and_archived_without_a_normalized_row():
    lines = [frames.join_ack("option_trades"), frames.join_ack("price:SPY"), frames.join_ack("flow-alerts")]
    result = ingest_lines(lines=lines, source="test")
    assert (result.accepted, result.quarantined) == (3, 0)
    assert RawFrame.objects.count() == 3
    assert PriceTick.objects.count() == OptionTrade.objects.count() == FlowAlert.objects.count() == 0
    assert result.tickers == set()
    assert result.by_channel == {"option_trades": 1, "price:SPY": 1, "flow-alerts": 1}


def test_documented_channels_without_a_table_are_archived_raw_only():
    lines = [
        frames.line("lit_trades", {"ticker": "SPY", "price": "661.9", "size": 100}),
        frames.line("off_lit_trades", {"ticker": "SPY", "price": "661.9", "size": 5000}),
        frames.line("market_tide", {"net_call_premium": "1", "net_put_premium": "2"}),
        frames.line("net_flow:SPY", {"net_call_premium": "1"}),
        frames.line("interval_flow", {"x": 1}),
        frames.line("trading_halts", {"ticker": "XYZ"}),
    ]
    result = ingest_lines(lines=lines, source="test")
    assert (result.accepted, result.quarantined) == (6, 0)
    assert set(RawFrame.objects.values_list("channel", flat=True)) == {
        "lit_trades",
        "off_lit_trades",
        "market_tide",
        "net_flow:SPY",
        "interval_flow",
        "trading_halts",
    }


def test_an_empty_batch_is_an_empty_result():
    result = ingest_lines(lines=[], source="test")
    assert (result.accepted, result.duplicates, result.quarantined) == (0, 0, 0)
    assert result.first_received_at is None


def test_first_and_last_received_at_span_the_batch():
    lines = [
        frames.line("price:SPY", frames.price(), received_at=frames.RECEIVED_MS + 2000),
        frames.line("price:QQQ", frames.price("QQQ"), received_at=frames.RECEIVED_MS),
        frames.line("price:IWM", frames.price("IWM"), received_at=frames.RECEIVED_MS + 1000),
    ]
    result = ingest_lines(lines=lines, source="test")
    assert result.first_received_at == datetime(2026, 11, 20, 14, 31, tzinfo=UTC)
    assert result.last_received_at == datetime(2026, 11, 20, 14, 31, 2, tzinfo=UTC)


def test_analytics_is_enqueued_after_commit_once_per_ticker_with_its_latest_receive_time(
    analytics, django_capture_on_commit_callbacks
):
    lines = [
        frames.line("price:SPY", frames.price(), received_at=frames.RECEIVED_MS),
        frames.line("option_trades:SPY", frames.option_trade(), received_at=frames.RECEIVED_MS + 1500),
        frames.line("price:QQQ", frames.price("QQQ"), received_at=frames.RECEIVED_MS + 700),
        frames.line("news", frames.news(tickers=["IWM"])),
        frames.join_ack("price:IWM"),
    ]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest_lines(lines=lines, source="test")
        assert analytics.calls == []  # nothing leaves before the transaction commits
    for callback in callbacks:
        callback()
    assert sorted(analytics.calls) == [
        ("QQQ", "2026-11-20T14:31:00.700000+00:00"),
        ("SPY", "2026-11-20T14:31:01.500000+00:00"),
    ]


def test_analytics_is_not_enqueued_for_untracked_tickers_or_duplicates(analytics, django_capture_on_commit_callbacks):
    lines = [frames.line("price:TSLA", frames.price("TSLA")), frames.line("price:SPY", frames.price())]
    with django_capture_on_commit_callbacks(execute=True):
        first = ingest_lines(lines=lines, source="test")
    with django_capture_on_commit_callbacks(execute=True):
        ingest_lines(lines=lines, source="test")
    assert first.tickers == {"TSLA", "SPY"}
    assert analytics.calls == [("SPY", "2026-11-20T14:31:00+00:00")]


def test_the_next_stage_is_looked_up_by_its_contract_name(monkeypatch):
    from celery import current_app

    sentinel = object()
    monkeypatch.setitem(current_app.tasks, "analytics.update_ticker", sentinel)
    assert services.analytics_task() is sentinel


def test_the_whole_sample_session_ingests_with_nothing_quarantined(analytics, django_capture_on_commit_callbacks):
    lines = SAMPLE.read_text().splitlines()
    totals = {"accepted": 0, "duplicates": 0, "quarantined": 0}
    with django_capture_on_commit_callbacks(execute=True):
        for start in range(0, len(lines), 250):
            batch = lines[start : start + 250]
            result = ingest_lines(lines=batch, source="replay:sample")
            assert_accounted(result, batch)
            for key in totals:
                totals[key] += getattr(result, key)
    assert totals["quarantined"] == 0
    assert totals["accepted"] + totals["duplicates"] == len(lines)
    assert frames.archived_frames() == totals["accepted"]
    channels = {orjson.loads(line)["frame"][0] for line in lines}
    assert set(RawFrame.objects.values_list("channel", flat=True)) == {
        name for name in channels if not name.startswith("option_trades")
    }
    assert FlowAlert.objects.count() > 0 and OptionTrade.objects.count() > 0
    assert {ticker for ticker, _ in analytics.calls} == {"SPY", "QQQ", "IWM"}
    replay = ingest_lines(lines=lines, source="replay:sample")
    assert (replay.accepted, replay.duplicates, replay.quarantined) == (0, len(lines), 0)


def test_a_refused_join_is_archived_and_logged(caplog):
    refused = frames.line("gex:SPY", {"status": "error", "response": {"message": "plan does not include gex"}})
    result = ingest_lines(lines=[refused], source="test")
    assert result.accepted == 1
    assert "UW refused gex:SPY" in caplog.text
    assert "plan does not include gex" in caplog.text


def test_a_batch_larger_than_one_look_up_or_insert_statement_is_still_one_exact_account(monkeypatch):
    monkeypatch.setattr(services, "LOOKUP_CHUNK", 7)
    lines = [frames.line("price:SPY", frames.price(time=frames.RECEIVED_MS - i * 1000)) for i in range(1200)]
    first = ingest_lines(lines=lines[:600], source="test")
    second = ingest_lines(lines=lines, source="test")
    assert (first.accepted, second.accepted, second.duplicates) == (600, 600, 600)
    assert PriceTick.objects.count() == RawFrame.objects.count() == 1200
