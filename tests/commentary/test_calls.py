"""Every Claude call is an ai_calls row; the SDK's retries and timeouts come from settings."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.commentary import services
from apps.commentary.claude import transport
from apps.commentary.claude.transport import TransportError
from apps.commentary.models import AiCall, AiReport
from apps.core import clock

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 20)
AFTER_CLOSE = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _after_the_close():
    clock.set_simulated(AFTER_CLOSE)


def test_a_rate_limited_call_retried_by_the_sdk_is_one_call_with_two_attempts(claude):
    claude.fail(429)

    report = services.report_generate(kind="post_market", day=DAY)

    assert [r.status for r in claude.requests] == [429, 200]
    assert report.status == AiReport.Status.PENDING_APPROVAL
    (call,) = AiCall.objects.all()
    assert (call.purpose, call.ref, call.status, call.attempts) == ("report", "post_market:2026-11-20", "ok", 2)
    assert (call.input_tokens, call.output_tokens, call.cost_usd) == (1200, 350, Decimal("0.002950"))
    assert call.model == "claude-haiku-4-5-20251001" and call.at == AFTER_CLOSE


def test_a_call_that_fails_after_the_retries_is_recorded_with_its_status_and_error(claude):
    claude.fail(529, 529, 529)

    services.report_generate(kind="intraday", day=DAY)

    (call,) = AiCall.objects.all()
    assert (call.status, call.status_code, call.attempts) == ("error", 529, 3)
    assert "Anthropic API answered 529 after 3 attempts" in call.error
    assert (call.input_tokens, call.output_tokens, call.cost_usd) == (0, 0, None)
    assert call.model == "claude-haiku-4-5"  # the model asked for: none answered


def test_a_bad_request_is_not_retried_and_is_recorded(claude):
    claude.fail(400)

    report = services.report_generate(kind="intraday", day=DAY)

    assert len(claude.requests) == 1
    (call,) = AiCall.objects.all()
    assert (call.status, call.status_code, call.attempts) == ("error", 400, 1)
    assert report.status == AiReport.Status.FAILED and "400" in report.error


def test_retries_and_timeout_come_from_settings(claude, settings):
    settings.ANTHROPIC_TIMEOUT_SECONDS = 7.5
    settings.ANTHROPIC_MAX_RETRIES = 4

    client = transport.client()

    assert client.timeout == 7.5
    assert client.max_retries == 4
    assert client.base_url.host == "127.0.0.1"


def test_a_slow_api_times_out_after_the_configured_seconds_and_retries(claude, settings):
    settings.ANTHROPIC_TIMEOUT_SECONDS = 0.3
    settings.ANTHROPIC_MAX_RETRIES = 1
    claude.delay_seconds = 1.0

    with pytest.raises(TransportError, match="timed out after 2 attempts") as raised:
        services.claude_call(purpose="report", ref="post_market:2026-11-20", system="s", prompt="p", max_tokens=10)

    assert raised.value.permanent is False
    assert len(claude.requests) == 2
    (call,) = AiCall.objects.all()
    assert (call.status, call.status_code, call.attempts) == ("error", None, 2)
    assert "timeout 0.3 s each" in call.error
    assert 600 <= call.latency_ms < 5000  # two attempts of 0.3 s, not the stand-in's full second each
