"""The REST client, pollers and gap backfill against the UW stand-in (requests over loopback, real PostgreSQL)."""

from __future__ import annotations

import time

import pytest

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
from apps.ingestion.rest_services import flow_alerts_backfill, rest_poll
from apps.ingestion.services import ingest_lines
from apps.ingestion.uw.rest import ENDPOINTS, UWRestClient
from apps.ingestion.uw.standin import UWStandin
from tests.ingestion import frames

T0 = frames.RECEIVED_MS


def session(alerts: int = 30) -> list[str]:
    """What has happened before the stand-in starts: alerts, prices, GEX, news and option prints for SPY."""
    lines = []
    for n in range(alerts):
        at = T0 - 60_000 + n * 1000
        lines.append(frames.line("flow-alerts", frames.flow_alert(id=f"rest-alert-{n:02d}", executed_at=at), at))
        lines.append(frames.line("price:SPY", frames.price(time=at, close=f"{660 + n / 10:.2f}"), at + 1))
        lines.append(frames.line("gex:SPY", frames.gex(timestamp=at), at + 2))
        lines.append(frames.line("option_trades:SPY", frames.option_trade(id=f"rt-{n}", executed_at=at), at + 3))
    lines.append(frames.line("news", frames.news(), T0 - 5000))
    # The clock's first frame is the oldest; everything above is due once the stand-in is a second old.
    return sorted(lines, key=lambda line: int(line.split(",", 1)[0].split(":")[1]))


@pytest.fixture
def uw(settings):
    with UWStandin(session(), speed=None) as standin:
        assert standin.wait_for(lambda: standin.replay_finished.is_set(), timeout=10)
        settings.UW_API_URL = standin.api_url
        settings.UW_API_TOKEN = standin.token
        yield standin


def client(uw: UWStandin) -> UWRestClient:
    return UWRestClient(base_url=uw.api_url, token=uw.token, requests_per_minute=120, max_wait_seconds=5)


@pytest.mark.django_db
def test_every_endpoint_polled_from_the_stand_in_is_normalized_and_archived(uw):
    tables = {
        "flow_alerts": FlowAlert,
        "spot_exposures": GexSnapshot,
        "greek_exposure": GreekExposure,
        "stock_state": StockState,
        "candles_1m": Candle,
        "news": NewsItem,
        "market_tide": MarketTide,
        "net_prem_ticks": NetPremTick,
        "option_contracts": OptionContract,
    }
    assert set(tables) == set(ENDPOINTS)
    rest = client(uw)
    for name, model in tables.items():
        result = rest_poll(endpoint=name, ticker="SPY" if ENDPOINTS[name].per_ticker else None, client=rest)
        assert result.status == 200, name
        assert result.quarantined == 0, name
        assert model.objects.exists(), name
    assert RestPayload.objects.filter(status=200).count() == len(tables)
    assert not QuarantinedFrame.objects.exists()


@pytest.mark.django_db
def test_a_429_from_the_stand_in_is_honoured_before_the_retry(uw):
    uw.fail_next_requests(1, status=429, retry_after=1.0)
    started = time.monotonic()
    result = rest_poll(endpoint="stock_state", ticker="SPY", client=client(uw))
    assert result.status == 200
    assert time.monotonic() - started >= 0.95
    assert list(RestPayload.objects.order_by("id").values_list("status", flat=True)) == [429, 200]
    assert RestPayload.objects.first().rate.get("retry-after") == "1"


@pytest.mark.django_db
def test_the_backfill_fills_the_gap_the_socket_left_with_no_duplicate(uw):
    # The socket delivered the first ten alerts, then the connection dropped.
    socket_lines = [line for line in session() if '"frame":["flow-alerts"' in line][:10]
    assert ingest_lines(lines=socket_lines, source="uw_ws").accepted == 10
    result = flow_alerts_backfill(client=client(uw))
    assert result.complete
    assert result.inserted == 20
    ids = list(FlowAlert.objects.order_by("uw_id").values_list("uw_id", flat=True))
    assert ids == [f"rest-alert-{n:02d}" for n in range(30)]
    again = flow_alerts_backfill(client=client(uw))
    assert again.inserted == 0
    assert FlowAlert.objects.count() == 30
