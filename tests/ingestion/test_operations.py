"""Operator tools: the ingest_file and quarantine_retry commands, the selectors and the read-only admin."""

from __future__ import annotations

import gzip
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.core import clock
from apps.ingestion import selectors
from apps.ingestion.models import (
    FlowAlert,
    GexSnapshot,
    GexStrike,
    NewsItem,
    OptionTrade,
    PriceTick,
    QuarantinedFrame,
    RawFrame,
)
from apps.ingestion.services import ingest_lines, quarantine_retry
from tests.ingestion import frames

pytestmark = pytest.mark.django_db


def write_session(path, lines, *, compress=False):
    text = "\n".join(lines) + "\n\n"
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("compress", [False, True])
def test_ingest_file_ingests_a_recorded_session_and_a_second_run_only_counts_duplicates(tmp_path, compress):
    path = tmp_path / ("day.ndjson.gz" if compress else "day.ndjson")
    lines = [frames.line("price:SPY", frames.price()), frames.line("news", frames.news()), "oops"]
    write_session(path, lines, compress=compress)
    out = StringIO()
    call_command("ingest_file", str(path), "--batch-lines", "2", stdout=out)
    assert "2 accepted, 0 duplicates, 1 quarantined" in out.getvalue()
    assert RawFrame.objects.get(channel="price:SPY").source == path.name
    out = StringIO()
    call_command("ingest_file", str(path), stdout=out)
    assert "0 accepted, 2 duplicates, 1 quarantined" in out.getvalue()


def test_ingest_file_refuses_a_missing_file(tmp_path):
    with pytest.raises(CommandError):
        call_command("ingest_file", str(tmp_path / "absent.ndjson"))


def test_quarantine_retry_releases_lines_that_now_normalize_and_keeps_the_rest(monkeypatch):
    from apps.ingestion.uw import channels

    future_channel = frames.line("market_pulse", {"score": 3})
    broken = "{never json"
    ingest_lines(lines=[future_channel, broken], source="uw_ws")
    assert QuarantinedFrame.objects.count() == 2
    # The platform learns the channel (a code change in real life).
    monkeypatch.setitem(channels.BARE_CHANNELS, "market_pulse", channels.ChannelKind.RAW_ONLY)
    outcome = quarantine_retry(limit=10)
    assert (outcome.examined, outcome.released, outcome.still_quarantined) == (2, 1, 1)
    assert outcome.ingested.accepted == 1
    assert RawFrame.objects.get().channel == "market_pulse"
    assert RawFrame.objects.get().source == "uw_ws"
    assert QuarantinedFrame.objects.get().raw == broken
    again = quarantine_retry(limit=10)
    assert (again.examined, again.released) == (1, 0)


def test_quarantine_retry_command_reports_what_it_did():
    ingest_lines(lines=["[]"], source="uw_ws")
    out = StringIO()
    call_command("quarantine_retry", "--limit", "5", stdout=out)
    assert "examined 1: released 0" in out.getvalue()
    assert "still quarantined 1" in out.getvalue()


def test_selectors_read_the_latest_quote_price_and_flow_alerts_as_typed_values():
    ingest_lines(
        lines=[
            frames.line("option_trades:SPY", frames.option_trade(nbbo_bid="3.89", nbbo_ask="3.93")),
            frames.line("price:SPY", frames.price(close="661.90")),
            frames.line("flow-alerts", frames.flow_alert(id="fa-1")),
        ],
        source="t",
    )
    quote = selectors.latest_quote(option_symbol="SPY261120C00600000")
    assert quote is not None
    assert (quote.bid, quote.ask, quote.last) == (Decimal("3.89"), Decimal("3.93"), Decimal("3.91"))
    assert quote.ts.tzinfo is not None
    assert selectors.latest_quote(option_symbol="SPY261120P00100000") is None
    close, _ts = selectors.latest_price(ticker="SPY")
    assert close == Decimal("661.9")
    assert [alert["id"] for alert in selectors.recent_flow_alerts(limit=5)] == ["fa-1"]


def test_quarantine_by_channel_counts_recent_rejections():
    ingest_lines(
        lines=[frames.line("price:SPY", {"time": 1}), frames.line("gex:SPY", {"price": "x"}), "junk"], source="t"
    )
    counts = selectors.quarantine_by_channel(since=clock.now() - timedelta(minutes=5))
    assert counts == {"": 1, "gex:SPY": 1, "price:SPY": 1}


@pytest.mark.parametrize(
    "model", [RawFrame, QuarantinedFrame, FlowAlert, OptionTrade, PriceTick, GexSnapshot, GexStrike, NewsItem]
)
def test_admin_lists_every_ingestion_table_read_only(admin_client, model):
    ingest_lines(
        lines=[
            frames.line("flow-alerts", frames.flow_alert()),
            frames.line("option_trades:SPY", frames.option_trade()),
            frames.line("price:SPY", frames.price()),
            frames.line("gex:SPY", frames.gex()),
            frames.line("gex_strike:SPY", frames.gex_strike()),
            frames.line("news", frames.news()),
            "broken",
        ],
        source="t",
    )
    opts = model._meta
    changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count == model.objects.count() >= 1
    assert admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403
    row = model.objects.first()
    detail = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content


@pytest.mark.django_db
def test_quarantine_retry_leaves_rest_items_to_the_next_poll():
    QuarantinedFrame.objects.create(
        line_hash="r" * 64,
        channel="rest:flow_alerts",
        raw='{"ticker": 1}',
        reason="invalid 'ticker' in rest:flow_alerts",
    )
    outcome = quarantine_retry()
    assert outcome.examined == 0
    assert QuarantinedFrame.objects.get().reason == "invalid 'ticker' in rest:flow_alerts"


@pytest.mark.django_db
def test_uw_archive_writes_frames_and_the_tape_back_out_in_receive_order(tmp_path):
    from tests.ingestion import frames as builders

    lines = [
        builders.line("price:SPY", builders.price(time=builders.RECEIVED_MS), builders.RECEIVED_MS + 30),
        builders.line("option_trades:SPY", builders.option_trade(id="a"), builders.RECEIVED_MS + 10),
        builders.line("option_trades:SPY", builders.option_trade(id="b"), builders.RECEIVED_MS + 40),
    ]
    ingest_lines(lines=lines[:2], source="t")
    ingest_lines(lines=lines[2:], source="t")
    out = tmp_path / "archive.ndjson.gz"
    call_command("uw_archive", "--out", str(out), stdout=StringIO())
    written = gzip.open(out, "rt").read().splitlines()
    assert [orjson.loads(line)["received_at"] for line in written] == [
        builders.RECEIVED_MS + 10,
        builders.RECEIVED_MS + 30,
        builders.RECEIVED_MS + 40,
    ]
    # Re-ingesting the export adds nothing: it is exactly what was received.
    again = ingest_lines(lines=written, source="t")
    assert (again.accepted, again.duplicates) == (0, 3)
    call_command("uw_archive", "--out", str(out), "--since", str(builders.RECEIVED_MS + 20), stdout=StringIO())
    assert len(gzip.open(out, "rt").read().splitlines()) == 2
