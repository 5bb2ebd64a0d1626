"""Market reports: Claude through the real anthropic SDK against a loopback stand-in, or the labelled template."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from apps.commentary import services
from apps.commentary.claude import pricing
from apps.commentary.models import AiReport
from apps.core import clock, store
from tests.distribution.rows import (
    flow_alert_row,
    gex_snapshot_row,
    risk_decision_row,
    signal_row,
    trade_row,
)

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 20)  # a Friday session
OPEN = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)  # 09:30 New York
AFTER_CLOSE = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # 16:30 New York


@pytest.fixture(autouse=True)
def _after_the_close():
    clock.set_simulated(AFTER_CLOSE)


@pytest.fixture
def session_rows():
    """A small day: two strategies signalled, one rejection, a winner and a loser, flow, GEX; plus yesterday's
    trade, which a post-market report must leave out."""
    win = signal_row(at=OPEN + timedelta(minutes=5), strategy="zero_dte")
    lose = signal_row(at=OPEN + timedelta(minutes=40), strategy="one_dte")
    refused = signal_row(at=OPEN + timedelta(hours=1), strategy="zero_dte", status="rejected")
    risk_decision_row(signal=win, approved=True, at=OPEN + timedelta(minutes=5))
    risk_decision_row(signal=lose, approved=True, at=OPEN + timedelta(minutes=40))
    risk_decision_row(signal=refused, approved=False, at=OPEN + timedelta(hours=1), reason="max positions reached")
    trade_row(
        signal=win,
        at=OPEN + timedelta(minutes=6),
        status="closed",
        exit_price=Decimal("1.90"),
        exit_at=OPEN + timedelta(hours=2),
        exit_reason="target",
        realized_pnl=Decimal("127.40"),
    )
    trade_row(
        signal=lose,
        at=OPEN + timedelta(minutes=41),
        status="closed",
        exit_price=Decimal("0.85"),
        exit_at=OPEN + timedelta(hours=3),
        exit_reason="stop",
        realized_pnl=Decimal("-82.60"),
    )
    yesterday = signal_row(at=OPEN - timedelta(days=1), strategy="swing_14d")
    trade_row(
        signal=yesterday,
        at=OPEN - timedelta(days=1),
        status="closed",
        exit_price=Decimal("2"),
        exit_at=OPEN - timedelta(days=1) + timedelta(hours=1),
        exit_reason="time",
        realized_pnl=Decimal("999"),
    )
    for premium in ("250000", "1800000", "640000"):
        flow_alert_row(at=OPEN + timedelta(minutes=30), premium=premium)
    gex_snapshot_row(at=OPEN + timedelta(hours=6), gamma_oi="-5000000")


def test_post_market_facts_cover_signals_risk_trades_flow_and_gex_of_the_day(session_rows):
    from apps.commentary.selectors import report_facts

    facts = report_facts(kind="post_market", day=DAY)

    assert facts["signals"]["total"] == 3
    assert facts["signals"]["by_strategy"]["zero_dte"] == {"total": 2, "active": 1, "rejected": 1}
    assert facts["risk"]["approved"] == 2 and facts["risk"]["rejected"] == 1
    assert facts["risk"]["top_rejection_reasons"] == [{"reason": "max positions reached", "count": 1}]
    trades = facts["trades"]
    assert (trades["opened"], trades["closed"], trades["wins"], trades["losses"]) == (2, 2, 1, 1)
    assert trades["realized_pnl"] == "44.80"
    assert trades["best"]["realized_pnl"] == "127.40" and trades["worst"]["realized_pnl"] == "-82.60"
    assert [a["total_premium"] for a in facts["flow"]["biggest"]] == ["1800000.00", "640000.00", "250000.00"]
    assert facts["gex"]["by_ticker"]["SPY"]["gamma_oi"] == "-5000000.000000"
    json.dumps(facts)  # stored as JSON and sent to Claude as JSON


def test_claude_writes_the_report_and_tokens_and_cost_are_recorded(
    claude, session_rows, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_generate(kind="post_market", day=DAY)

    assert report.status == AiReport.Status.PENDING_APPROVAL
    assert report.is_template is False
    assert report.content == "SPY closed green."
    assert (report.input_tokens, report.output_tokens) == (1200, 350)
    assert report.model == "claude-haiku-4-5-20251001"
    assert report.cost_usd == Decimal("0.002950")  # 1200 x $1/MTok + 350 x $5/MTok
    assert store.get_redis().lrange(services.PENDING_KEY, 0, -1) == [str(report.pk)]
    (request,) = claude.requests
    # The SDK authenticates with x-api-key or a bearer token depending on its version: either carries our key.
    credentials = request.headers.get("x-api-key", "") + request.headers.get("authorization", "")
    assert "sk-ant-test-standin" in credentials
    assert request.headers["anthropic-version"]
    assert request.body["model"] == "claude-haiku-4-5"
    assert request.body["max_tokens"] == services.MAX_OUTPUT_TOKENS
    assert "post-market report" in request.body["system"]
    prompt = request.body["messages"][0]["content"]
    assert '"realized_pnl": "44.80"' in prompt
    assert report.facts["trades"]["realized_pnl"] == "44.80"


def test_an_overloaded_api_is_retried_by_the_sdk_and_the_report_still_written(claude):
    claude.fail(529, 529)

    report = services.report_generate(kind="post_market", day=DAY)

    assert [r.status for r in claude.requests] == [529, 529, 200]
    assert report.status == AiReport.Status.PENDING_APPROVAL
    assert report.content == "SPY closed green."


def test_errors_that_outlast_the_sdk_retries_are_recorded_as_a_clear_failure(
    claude, django_capture_on_commit_callbacks
):
    claude.fail(500, 500, 500)

    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_generate(kind="post_market", day=DAY)

    assert len(claude.requests) == 3  # the first try and the SDK's two retries
    assert report.status == AiReport.Status.FAILED
    assert "Anthropic API answered 500 after 3 attempts" in report.error
    assert report.content == "" and report.cost_usd is None
    assert store.get_redis().llen(services.PENDING_KEY) == 0

    with django_capture_on_commit_callbacks(execute=True):
        again = services.report_generate(kind="post_market", day=DAY)

    assert again.pk == report.pk
    assert again.status == AiReport.Status.PENDING_APPROVAL and again.error == ""
    assert store.get_redis().lrange(services.PENDING_KEY, 0, -1) == [str(report.pk)]


def test_a_rejected_api_key_is_not_retried(claude):
    claude.fail(401)

    report = services.report_generate(kind="intraday", day=DAY)

    assert len(claude.requests) == 1
    assert report.status == AiReport.Status.FAILED
    assert "401" in report.error


def test_without_an_api_key_the_report_is_a_clearly_labelled_template(
    no_api_key, anthropic_api, session_rows, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_generate(kind="post_market", day=DAY)

    first_line = report.content.splitlines()[0]
    assert first_line == services.TEMPLATE_NOTICE
    assert "no AI was used" in first_line
    assert report.is_template is True and report.model == "template"
    assert (report.input_tokens, report.output_tokens, report.cost_usd) == (0, 0, None)
    assert "realized PnL $44.80" in report.content
    assert "max positions reached" in report.content
    assert anthropic_api.requests == []
    assert store.get_redis().lrange(services.PENDING_KEY, 0, -1) == [str(report.pk)]


def test_generating_the_same_report_twice_calls_claude_once(claude, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = services.report_generate(kind="post_market", day=DAY)
        second = services.report_generate(kind="post_market", day="2026-11-20")

    assert first.pk == second.pk
    assert len(claude.requests) == 1
    assert AiReport.objects.count() == 1
    assert store.get_redis().llen(services.PENDING_KEY) == 1


def test_cost_is_unknown_rather_than_guessed_for_an_unpriced_model():
    assert pricing.call_cost(model="claude-haiku-4-5", input_tokens=1_000_000, output_tokens=0) == Decimal("1.000000")
    assert pricing.call_cost(model="some-future-model", input_tokens=10, output_tokens=10) is None


def test_pre_market_report_recaps_the_previous_session(no_api_key, session_rows):
    from apps.commentary.selectors import report_window

    clock.advance_to(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))  # Monday 09:00 New York
    start, end = report_window(kind="pre_market", day=date(2026, 11, 23))

    report = services.report_generate(kind="pre_market", day=date(2026, 11, 23))

    assert start == datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # Friday midnight New York
    assert end == clock.now()
    assert report.facts["trades"]["closed"] == 2
