"""The local Unusual Whales stand-in, reached by the platform's real clients (websocket-client and requests)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket

from apps.ingestion.uw.standin import UWStandin
from tests.ingestion.frames import RECEIVED_MS, flow_alert, gex, line, news, option_trade, price

T0 = RECEIVED_MS
LIVE_UNTIL_MS = 4000  # the session's live part: frames every 50 ms for this long after it starts
AUTH = {"Authorization": "Bearer test-token"}
ALERT_IDS = ("alert-old", "alert-mid", "alert-new")


def session() -> list[str]:
    """What has happened when the stand-in starts (alerts, a price, GEX, news, two trades), a live part of trades
    and prices, and one alert ten minutes on that no test reaches."""
    lines = [
        line("flow-alerts", flow_alert(id=alert_id, executed_at=T0 - 3000 + 1000 * n, rule_name=f"Rule{n}"), T0)
        for n, alert_id in enumerate(ALERT_IDS)
    ]
    lines += [
        line("price:SPY", price(time=T0 - 100), T0),
        line("gex:SPY", gex(timestamp=T0 - 1000), T0),
        line("news", news(), T0),
        line("option_trades:SPY", option_trade(executed_at=T0 - 500, ask_vol=50, bid_vol=0), T0),
        line(
            "option_trades:QQQ",
            option_trade(underlying_symbol="QQQ", option_symbol="QQQ261120P00590000", option_type="put"),
            T0,
        ),
        line("option_trades:SPY", {"response": {}, "status": "ok"}, T0),  # a recorded ack is not replayed
    ]
    for offset in range(300, LIVE_UNTIL_MS, 50):
        at = T0 + offset
        lines.append(line("option_trades:SPY", option_trade(executed_at=at - 20), at))
        lines.append(line("option_trades:QQQ", option_trade(underlying_symbol="QQQ", executed_at=at - 20), at + 1))
        if offset % 200 == 0:
            lines.append(line("price:SPY", price(time=at), at + 2))
    live = flow_alert(id="alert-live", ticker="IWM", option_chain="IWM261120P00230000", executed_at=T0 + 480)
    lines.append(line("flow-alerts", live, T0 + 500))
    lines.append(line("flow-alerts", flow_alert(id="alert-future", executed_at=T0 + 600_000), T0 + 600_000))
    return lines


@pytest.fixture
def uw() -> Iterator[UWStandin]:
    standin = UWStandin(session(), speed=1.0).start()
    yield standin
    standin.stop()


def connect(uw: UWStandin, token: str | None = "test-token") -> websocket.WebSocket:
    url = uw.ws_url if token is None else f"{uw.ws_url}?token={token}"
    return websocket.create_connection(url, timeout=2)


def join(ws: websocket.WebSocket, *channels: str) -> list[Any]:
    for channel in channels:
        ws.send(json.dumps({"channel": channel, "msg_type": "join"}))
    return [json.loads(ws.recv()) for _ in channels]


def receive_for(ws: websocket.WebSocket, seconds: float) -> list[Any]:
    frames = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            frames.append(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            break
    return frames


def get(uw: UWStandin, path: str, headers: dict[str, str] | None = AUTH, **params: Any) -> requests.Response:
    return requests.get(f"{uw.api_url}{path}", params=params, headers=headers, timeout=2)


# --- socket ---------------------------------------------------------------------------------------------------


def test_join_is_acknowledged_and_an_unknown_channel_gets_an_error_ack(uw: UWStandin) -> None:
    ws = connect(uw)
    ok, error = join(ws, "option_trades:SPY", "option_trades_v9:SPY")
    assert ok == ["option_trades:SPY", {"response": {}, "status": "ok"}]
    assert error[0] == "option_trades_v9:SPY" and error[1]["status"] == "error" and error[1]["message"]
    assert uw.joins == [(1, "option_trades:SPY")]
    ws.close()


def test_frames_go_only_to_connections_joined_to_their_channel(uw: UWStandin) -> None:
    clients = {"all": connect(uw), "spy": connect(uw), "price": connect(uw), "alerts": connect(uw)}
    join(clients["all"], "option_trades")
    join(clients["spy"], "option_trades:SPY")
    join(clients["price"], "price:SPY")
    join(clients["alerts"], "flow-alerts")
    seen = {name: receive_for(ws, 0.6) for name, ws in clients.items()}
    assert {frame[0] for frame in seen["all"]} == {"option_trades:SPY", "option_trades:QQQ"}
    assert {frame[0] for frame in seen["spy"]} == {"option_trades:SPY"}
    assert {frame[0] for frame in seen["price"]} == {"price:SPY"}
    # the alerts due before the join (at the start) are not re-sent: only the live one arrives
    assert [frame[1]["id"] for frame in seen["alerts"]] == ["alert-live"] == uw.sent_flow_alert_ids
    spy_received = sum(frame[0] == "option_trades:SPY" for frame in seen["all"] + seen["spy"])
    assert uw.frames_sent["option_trades:SPY"] >= spy_received > 0
    assert uw.frames_sent["price:SPY"] >= len(seen["price"]) > 0
    for ws in clients.values():
        ws.close()


def test_a_wrong_or_missing_token_is_accepted_then_closed_without_a_frame(uw: UWStandin) -> None:
    for token in ("wrong", None):
        ws = connect(uw, token)  # the upgrade itself succeeds
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws.recv()
    assert uw.connections_refused == 2
    assert uw.open_connections == 0


def test_drop_connections_closes_the_client_socket_without_a_close_frame(uw: UWStandin) -> None:
    ws = connect(uw)
    join(ws, "option_trades")
    assert uw.drop_connections() == 1
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:  # frames already in flight come first
            frame = ws.recv_data_frame(control_frame=True)[1]
            assert frame.opcode != websocket.ABNF.OPCODE_CLOSE
    assert uw.wait_for(lambda: uw.open_connections == 0, timeout=1)


def test_stall_stops_frames_and_pongs_and_then_resumes(uw: UWStandin) -> None:
    ws = connect(uw)
    join(ws, "option_trades:SPY")
    assert receive_for(ws, 0.3)  # the live part is flowing
    uw.stall(0.8)
    receive_for(ws, 0.05)  # what was sent before the stall
    ws.ping("are-you-there")
    assert receive_for(ws, 0.5) == []
    ws.settimeout(1.0)
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"are-you-there"
    assert receive_for(ws, 0.3)  # and frames flow again
    assert uw.frames_dropped > 0
    ws.close()


def test_inject_reaches_every_connection_joined_or_not(uw: UWStandin) -> None:
    joined, idle = connect(uw), connect(uw)
    join(joined, "flow-alerts")
    assert uw.wait_for(lambda: uw.open_connections == 2)
    uw.inject('["option_trades:SPY", {"id": 7, "size": "fifty"')
    for ws in (joined, idle):
        assert ws.recv() == '["option_trades:SPY", {"id": 7, "size": "fifty"'
        ws.close()


def test_a_looped_session_repeats_with_fresh_ids_and_later_times() -> None:
    lines = [
        line("option_trades:SPY", option_trade(id=f"t{n}", executed_at=T0 + 100 * n), T0 + 100 * n) for n in range(3)
    ]
    with UWStandin(lines, speed=4.0, loop=True) as uw:
        ws = connect(uw)
        join(ws, "option_trades")
        frames = receive_for(ws, 1.5)
        ws.close()
    ids = [frame[1]["id"] for frame in frames]
    times = [frame[1]["executed_at"] for frame in frames]
    assert len(ids) >= 6 and len(set(ids)) == len(ids)
    assert times == sorted(times) and times[-1] > T0 + 1000
    assert uw.laps_completed >= 2


# --- REST -----------------------------------------------------------------------------------------------------


def test_rest_requires_the_bearer_token(uw: UWStandin) -> None:
    for headers in (None, {"Authorization": "Bearer wrong"}):
        answer = get(uw, "/api/option-trades/flow-alerts", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/json" and answer.json()["message"]


def test_usage_headers_count_down_and_the_budget_ends_in_429_with_retry_after() -> None:
    with UWStandin(session(), requests_per_minute=3) as uw:
        remaining = []
        for _ in range(3):
            answer = get(uw, "/api/market/market-tide")
            assert answer.status_code == 200
            remaining.append(int(answer.headers["x-uw-req-per-minute-remaining"]))
            assert int(answer.headers["x-uw-token-req-limit"]) == 15000
            assert 0 < int(answer.headers["x-uw-req-per-minute-reset"]) <= 60_000
        assert answer.headers["x-uw-daily-req-count"] == "3" and answer.headers["x-uw-minute-req-counter"] == "3"
        assert remaining == [2, 1, 0]
        limited = get(uw, "/api/market/market-tide")
        assert limited.status_code == 429
        assert 0 < float(limited.headers["retry-after"]) <= 60 and limited.json()["message"]
        assert [status for _, _, status in uw.requests] == [200, 200, 200, 429]


def test_fail_next_requests_answers_429_then_500_as_text_then_recovers(uw: UWStandin) -> None:
    uw.fail_next_requests(1, status=429, retry_after=2.5)
    uw.fail_next_requests(1, status=500)
    limited = get(uw, "/api/news/headlines")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2.5"
    broken = get(uw, "/api/news/headlines")
    assert broken.status_code == 500 and broken.headers["content-type"].startswith("text/plain")
    assert get(uw, "/api/news/headlines").status_code == 200


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/option-trades/flow-alerts", {"limit": "500"}),
        ("/api/option-trades/flow-alerts", {"newer_than": "soon"}),
        ("/api/stock/SPY/ohlc/7m", {}),
        ("/api/stock/SPY/spot-exposures", {"date": "20-11-2026"}),
    ],
)
def test_a_bad_parameter_is_422_with_msg_path_query_and_url(uw: UWStandin, path: str, params: dict[str, str]) -> None:
    answer = requests.get(f"{uw.api_url}{path}", params=params, headers=AUTH, timeout=2)
    assert answer.status_code == 422
    body = answer.json()
    assert set(body) == {"msg", "path", "query", "url"} and body["path"] == path and body["query"] == params


def test_an_unknown_path_is_404(uw: UWStandin) -> None:
    assert get(uw, "/api/stock/SPY/dark-matter").status_code == 404


def test_flow_alerts_newer_than_returns_only_newer_alerts_that_have_happened(uw: UWStandin) -> None:
    at_start = get(uw, "/api/option-trades/flow-alerts").json()["data"]
    assert [row["id"] for row in at_start] == list(reversed(ALERT_IDS))  # newest first; later ones not yet
    assert uw.wait_for(lambda: uw.cursor_ms >= T0 + 600, timeout=2)
    oldest_ms = T0 - 3000
    for newer_than in (str(oldest_ms), str(oldest_ms // 1000), "2026-11-20T14:30:57Z"):
        rows = get(uw, "/api/option-trades/flow-alerts", newer_than=newer_than).json()["data"]
        assert [row["id"] for row in rows] == ["alert-live", "alert-new", "alert-mid"], newer_than
        assert all(row["created_at"] < "2026-11-20T14:31:00.600" for row in rows)  # none beyond the cursor
    older = get(uw, "/api/option-trades/flow-alerts", older_than=str(T0 - 1000), limit="1").json()["data"]
    assert [row["id"] for row in older] == ["alert-mid"]
    assert get(uw, "/api/option-trades/flow-alerts", ticker_symbol="QQQ").json()["data"] == []
    assert get(uw, "/api/option-trades/flow-alerts", min_premium="1000000").json()["data"] == []


def test_a_rest_flow_alert_is_the_socket_alert_in_rest_shape(uw: UWStandin) -> None:
    row = get(uw, "/api/option-trades/flow-alerts", older_than=str(T0), limit="1").json()["data"][0]
    assert row["id"] == "alert-new" and row["alert_rule"] == "Rule2"
    assert row["created_at"] == "2026-11-20T14:30:59.000000Z"
    assert (row["type"], row["strike"], row["expiry"]) == ("call", "600", "2026-11-20")
    assert row["total_premium"] == "145645.39" and row["price"] == "0.67" and row["volume_oi_ratio"] == "0.3"
    assert row["issue_type"] == "ETF"


ENDPOINT_FIELDS = {
    "/api/option-trades/flow-alerts": {
        "id", "alert_rule", "created_at", "ticker", "option_chain", "type", "strike", "expiry", "price",
        "underlying_price", "total_premium", "total_ask_side_prem", "total_bid_side_prem", "total_size",
        "trade_count", "volume", "open_interest", "volume_oi_ratio", "has_sweep", "has_floor", "has_multileg",
        "has_singleleg", "all_opening_trades", "expiry_count", "issue_type",
    },
    "/api/stock/SPY/spot-exposures": {
        "time", "price",
        *(f"{g}_per_one_percent_move_{s}" for g in ("gamma", "charm", "vanna") for s in ("oi", "vol", "dir")),
    },
    "/api/stock/SPY/greek-exposure": {
        "date", *(f"{side}_{g}" for side in ("call", "put") for g in ("delta", "gamma", "charm", "vanna")),
    },
    "/api/stock/SPY/stock-state": {
        "open", "high", "low", "close", "prev_close", "volume", "total_volume", "market_time", "tape_time",
    },
    "/api/stock/SPY/ohlc/1m": {
        "open", "high", "low", "close", "start_time", "end_time", "volume", "total_volume", "market_time",
    },
    "/api/news/headlines": {"created_at", "headline", "is_major", "meta", "sentiment", "source", "tags", "tickers"},
    "/api/market/market-tide": {"date", "timestamp", "net_call_premium", "net_put_premium", "net_volume"},
    "/api/stock/SPY/net-prem-ticks": {
        "tape_time", "net_call_premium", "net_put_premium", "net_call_volume", "net_put_volume", "net_delta",
    },
    "/api/stock/SPY/option-contracts": {
        "option_symbol", "volume", "open_interest", "implied_volatility", "nbbo_bid", "nbbo_ask", "last_price",
    },
}  # fmt: skip


@pytest.mark.parametrize("path", list(ENDPOINT_FIELDS))
def test_every_endpoint_answers_with_the_documented_fields(uw: UWStandin, path: str) -> None:
    answer = get(uw, path)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    data = answer.json()["data"]
    rows = [data] if path.endswith("stock-state") else data
    assert isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows)
    for row in rows:
        assert ENDPOINT_FIELDS[path] <= set(row), ENDPOINT_FIELDS[path] - set(row)


def test_net_premium_is_signed_by_the_side_of_the_trade(uw: UWStandin) -> None:
    ticks = get(uw, "/api/stock/SPY/net-prem-ticks").json()["data"]
    first_minute = ticks[0]
    # the one SPY trade of 14:30 bought 50 at the ask: premium 19550.00 counts positive
    assert first_minute["tape_time"] == "2026-11-20T14:30:00Z"
    assert first_minute["net_call_premium"] == "19550.00" and first_minute["net_call_volume"] == 50


def test_rest_sees_only_what_the_session_clock_has_reached(uw: UWStandin) -> None:
    before = len(get(uw, "/api/stock/SPY/option-contracts").json()["data"])
    tide = get(uw, "/api/market/market-tide").json()["data"]
    assert all(re.match(r"2026-11-20T09:3\d:00-05:00", row["timestamp"]) for row in tide)
    assert uw.cursor_ms < T0 + 600_000 and before >= 1


# --- firehose -------------------------------------------------------------------------------------------------


def test_the_firehose_delivers_every_frame_once_with_a_unique_id_and_its_send_time() -> None:
    with UWStandin() as uw:
        ws = connect(uw)
        join(ws, "option_trades")
        pending = uw.firehose_submit(frames=3000)
        frames = [json.loads(ws.recv()) for _ in range(3000)]
        run = pending.result(timeout=2)
        ws.close()
    assert run.frames == run.deliveries == 3000 and run.connections == 1
    ids = {payload["id"] for _, payload in frames}
    assert len(ids) == 3000
    assert {channel for channel, _ in frames} == {"option_trades:SPY"}
    assert run.first_send_ms is not None and run.last_send_ms is not None
    assert all(run.first_send_ms <= payload["created_at"] <= run.last_send_ms for _, payload in frames)
    assert uw.firehose_runs == [run]


def test_a_paced_firehose_keeps_to_its_rate() -> None:
    with UWStandin() as uw:
        ws = connect(uw)
        join(ws, "option_trades:SPY")
        run = uw.firehose(frames=100, rate=400.0, timeout=2)
        frames = [json.loads(ws.recv()) for _ in range(100)]
        ws.close()
    assert len(frames) == 100 and 0.2 <= run.elapsed_s < 0.6
