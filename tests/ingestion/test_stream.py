"""The socket listener against the loopback Unusual Whales stand-in, through the real websocket-client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO

import orjson
import pytest
from django.core.management import call_command
from kombu.exceptions import OperationalError as BrokerError

from apps.ingestion import drift
from apps.ingestion.models import (
    DriftEvent,
    FlowAlert,
    GexSnapshot,
    GexStrike,
    NewsItem,
    OptionTrade,
    PriceTick,
    QuarantinedFrame,
)
from apps.ingestion.services import ingest_lines
from apps.ingestion.uw import stream
from apps.ingestion.uw.standin import UWStandin
from tests.ingestion import frames

CHANNELS = (
    "flow-alerts",
    "news",
    "price:SPY",
    "option_trades:SPY",
    "gex:SPY",
    "gex_strike:SPY",
    "gex_strike_expiry:SPY",
)


def live_session(seconds: float = 3.0, step_ms: int = 50) -> list[str]:
    """One frame of every channel at the start, then a price tick and a trade every ``step_ms``."""
    # The stand-in's clock starts at the first frame, and the market does not wait for the listener to join: the
    # frames that matter come half a second later, on a channel nobody joins before that.
    t0 = frames.RECEIVED_MS
    lines = [frames.line("price:QQQ", frames.price("QQQ"), t0)]
    start = t0 + 500
    lines += [
        frames.line("flow-alerts", frames.flow_alert(id="alert-first"), start),
        frames.line("news", frames.news(), start),
        frames.line("gex:SPY", frames.gex(), start),
        frames.line("gex_strike:SPY", frames.gex_strike(), start),
        frames.line("gex_strike_expiry:SPY", frames.gex_strike(expiry="2026-11-20"), start),
    ]
    for n, offset in enumerate(range(600, int(seconds * 1000) + 500, step_ms)):
        at = t0 + offset
        lines.append(frames.line("price:SPY", frames.price(time=at, close=f"{660 + n / 100:.2f}"), at))
        lines.append(frames.line("option_trades:SPY", frames.option_trade(id=f"trade-{n}", executed_at=at - 5), at))
    return lines


class Collector:
    """The listener's publish function: keeps the batches (and can pretend the broker is down)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures_left = 0
        self.lock = threading.Lock()
        self.backfills: list[str | None] = []

    def publish(self, lines: list[str]) -> None:
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            self.batches.append(list(lines))

    def backfill(self, since: str | None) -> None:
        self.backfills.append(since)

    @property
    def lines(self) -> list[str]:
        with self.lock:
            return [line for batch in self.batches for line in batch]

    def channels(self) -> list[str]:
        return [orjson.loads(line)["frame"][0] for line in self.lines]


def config(uw: UWStandin, **overrides: object) -> stream.StreamConfig:
    values: dict[str, object] = {
        "url": uw.ws_url,
        "token": uw.token,
        "channels": CHANNELS,
        "batch_frames": 50,
        "batch_ms": 10,
        "ping_after": 5.0,
        "pong_timeout": 2.0,
        "backoff_min": 0.05,
        "backoff_max": 0.2,
        "connect_timeout": 2.0,
    }
    values.update(overrides)
    return stream.StreamConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def running(redis_store) -> Iterator[Callable[..., tuple[stream.StreamListener, Collector]]]:
    started: list[tuple[stream.StreamListener, threading.Thread]] = []

    def start(uw: UWStandin, **overrides: object) -> tuple[stream.StreamListener, Collector]:
        collector = Collector()
        listener = stream.StreamListener(
            config(uw, **overrides), publish=collector.publish, request_backfill=collector.backfill, store=redis_store
        )
        thread = threading.Thread(target=listener.run, daemon=True)
        thread.start()
        started.append((listener, thread))
        return listener, collector

    yield start
    for listener, thread in started:
        listener.request_stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the listener did not stop"


def wait(predicate: Callable[[], object], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_the_socket_url_carries_the_token_and_logs_never_do():
    url = stream.socket_url("wss://api.unusualwhales.com/socket", "s3cret")
    assert url == "wss://api.unusualwhales.com/socket?token=s3cret"
    assert "s3cret" not in stream.redacted(url)


def test_backoff_doubles_to_the_maximum_with_at_most_a_quarter_of_jitter():
    import random

    rng = random.Random(3)
    delays = [stream.backoff_delay(n, minimum=5, maximum=60, rng=rng) for n in range(6)]
    for n, delay in enumerate(delays):
        base = min(60, 5 * 2**n)
        assert base <= delay <= base * 1.25


@pytest.mark.django_db(transaction=True)
def test_every_joined_channel_arrives_as_session_lines_and_is_normalized(running, requires_real_services):
    with UWStandin(live_session(1.0), speed=1.0) as uw:
        listener, collector = running(uw)
        assert wait(lambda: uw.replay_finished.is_set() and collector.lines and listener.queued_frames == 0)
        assert wait(lambda: len(collector.lines) == listener.stats.frames)
        joined = sorted(channel for _, channel in uw.joins)
        assert joined == sorted(CHANNELS)
        lines = collector.lines
        first = orjson.loads(lines[0])
        assert set(first) == {"received_at", "frame"}
        assert abs(first["received_at"] - time.time() * 1000) < 60_000
        result = ingest_lines(lines=lines, source=stream.SOURCE)
    assert result.quarantined == 0
    assert FlowAlert.objects.filter(uw_id="alert-first").exists()
    assert NewsItem.objects.count() == 1
    assert GexSnapshot.objects.count() == 1
    assert GexStrike.objects.count() == 2
    data = [line for line in lines if '"response"' not in line]
    assert PriceTick.objects.count() == sum('"frame":["price:SPY"' in line for line in data) >= 15
    assert OptionTrade.objects.count() == sum('"frame":["option_trades:SPY"' in line for line in data) >= 15
    assert set(listener.stats.joined) == set(CHANNELS)
    assert len(collector.backfills) == 1


@pytest.mark.django_db
def test_rejoins_every_channel_after_the_connection_drops_and_asks_for_a_backfill(running):
    with UWStandin(live_session(4.0), speed=1.0) as uw:
        listener, collector = running(uw)
        assert wait(lambda: len(uw.joins) == len(CHANNELS) and collector.lines)
        assert uw.drop_connections() == 1
        assert wait(lambda: uw.connections_opened == 2 and len(uw.joins) == 2 * len(CHANNELS))
        before = len(collector.lines)
        assert wait(lambda: len(collector.lines) > before + 5), "frames did not resume after the rejoin"
    second = sorted(channel for number, channel in uw.joins if number == max(n for n, _ in uw.joins))
    assert second == sorted(CHANNELS)
    assert listener.stats.reconnects >= 1
    assert len(collector.backfills) == 2
    # The second backfill starts before the last alert this listener saw (less the out-of-order margin).
    assert collector.backfills[1] is not None


@pytest.mark.django_db
def test_a_stalled_connection_is_pinged_then_dropped_and_reopened(running):
    with UWStandin(live_session(6.0), speed=1.0) as uw:
        listener, collector = running(uw, ping_after=0.3, pong_timeout=0.3)
        assert wait(lambda: collector.lines)
        uw.stall(3.0)
        assert wait(lambda: listener.stats.stalls >= 1, timeout=5), "the stall was not detected"
        assert "no pong" in listener.stats.last_error
        assert wait(lambda: uw.connections_opened >= 2, timeout=5), "no reconnect after the stall"
        before = len(collector.lines)
        assert wait(lambda: len(collector.lines) > before + 5, timeout=6), "frames did not resume"


@pytest.mark.django_db(transaction=True)
def test_a_malformed_frame_is_quarantined_while_the_stream_goes_on(running, requires_real_services):
    with UWStandin(live_session(3.0), speed=1.0) as uw:
        listener, collector = running(uw)
        assert wait(lambda: collector.lines)
        uw.inject('["price:SPY", {"close": "661.00", "time": ')
        assert wait(lambda: uw.replay_finished.is_set() and listener.queued_frames == 0, timeout=8)
        lines = collector.lines
    result = ingest_lines(lines=lines, source=stream.SOURCE)
    assert result.quarantined == 1
    assert result.quarantine_reasons == {"bad_frame": 1} or result.quarantine_reasons == {"broken_json": 1}
    bad = QuarantinedFrame.objects.get()
    assert "661.00" in bad.raw
    # Frames after the broken one were read, archived and normalized.
    assert result.accepted == len(lines) - 1 - result.duplicates
    trades = [line for line in lines if '"frame":["option_trades' in line and '"response"' not in line]
    assert OptionTrade.objects.count() == len(trades) > 10


@pytest.mark.django_db(transaction=True)
def test_a_re_typed_field_raises_a_drift_event_and_the_frame_is_still_stored(running, requires_real_services):
    drift.reset_cache()
    with UWStandin(live_session(3.0, step_ms=10), speed=1.0) as uw:
        listener, collector = running(uw)
        assert wait(lambda: uw.replay_finished.is_set() and listener.queued_frames == 0, timeout=10)
        baseline = collector.lines
        ingest_lines(lines=baseline, source=stream.SOURCE)  # ~290 price frames: the fingerprint's baseline
        # UW starts sending the close as a JSON number instead of a decimal string.  Types are checked on a
        # sample of the payloads (one in drift.SAMPLE_EVERY), so a re-type shows within that many frames.
        count = drift.SAMPLE_EVERY + 1
        for n in range(count):
            retyped = frames.price(time=frames.RECEIVED_MS + 10_000 + n, close=661.25)
            uw.inject(orjson.dumps(["price:SPY", retyped]).decode())
        assert wait(lambda: len(collector.lines) >= len(baseline) + count)
        later = collector.lines[len(baseline) :]
    result = ingest_lines(lines=later, source=stream.SOURCE)
    drift.flush()
    assert result.quarantined == 0
    assert result.by_channel["price:SPY"] >= count
    event = DriftEvent.objects.get(stream="ws:price", kind="retyped_field")
    assert (event.field, event.expected, event.observed) == ("close", "string", "number")
    assert PriceTick.objects.filter(ts__gt=PriceTick.objects.order_by("ts").first().ts).exists()


@pytest.mark.django_db
def test_frames_are_held_while_the_broker_is_unreachable_and_published_in_order(running):
    with UWStandin(live_session(2.0), speed=1.0) as uw:
        listener, collector = running(uw, batch_frames=5)
        collector.failures_left = 6
        assert wait(lambda: uw.replay_finished.is_set(), timeout=6)
        assert wait(lambda: listener.queued_frames == 0 and collector.batches)
    assert listener.stats.publish_failures == 6
    assert listener.stats.dropped_frames == 0
    times = [orjson.loads(line)["received_at"] for line in collector.lines]
    assert times == sorted(times)
    assert len(collector.lines) == listener.stats.frames


@pytest.mark.django_db
def test_past_the_buffer_bound_the_oldest_frames_are_dropped_and_counted(running, caplog):
    with UWStandin(live_session(2.0), speed=1.0) as uw:
        listener, collector = running(uw, batch_frames=10, buffer_frames=20)
        collector.failures_left = 10**6
        assert wait(lambda: uw.replay_finished.is_set(), timeout=6)
        assert wait(lambda: listener.stats.frames >= 60)
        collector.failures_left = 0
        assert wait(lambda: listener.queued_frames == 0)
    assert listener.stats.dropped_frames > 0
    assert listener.stats.dropped_frames + len(collector.lines) == listener.stats.frames
    assert any("dropped the oldest" in record.getMessage() for record in caplog.records)


@pytest.mark.django_db
def test_the_pause_flag_closes_the_socket_until_it_is_cleared(running, redis_store):
    with UWStandin(live_session(6.0), speed=1.0) as uw:
        listener, collector = running(uw)
        assert wait(lambda: uw.open_connections == 1 and collector.lines)
        redis_store.set(stream.PAUSE_KEY, "ops")
        assert wait(lambda: uw.open_connections == 0 and listener.stats.status == "paused", timeout=5)
        assert stream.stream_state(store=redis_store)["paused"] is True
        redis_store.delete(stream.PAUSE_KEY)
        assert wait(lambda: uw.open_connections == 1 and uw.connections_opened == 2, timeout=5)


@pytest.mark.django_db
def test_state_for_the_console_reports_status_frames_and_per_channel_rates(running, redis_store):
    with UWStandin(live_session(3.0), speed=1.0) as uw:
        listener, collector = running(uw)
        assert wait(lambda: listener.stats.frames > 20)
        time.sleep(1.2)
        state = stream.stream_state(store=redis_store)
        health = StringIO()
        call_command("health", stdout=health)
    assert state["status"] == "connected"
    assert int(state["frames"]) > 20
    assert "uw stream    connected, reported" in health.getvalue()
    assert state["channels"]["price:SPY"]["frames"] > 5
    assert state["channels"]["price:SPY"]["last_frame_age_s"] < 2
    assert "price:SPY" in state["joined"]
    # The compose healthcheck of uw-listener, run as it is there.
    call_command("uw_stream_control", "status", "--check", stdout=StringIO())


@pytest.mark.django_db
def test_the_listener_healthcheck_fails_without_a_fresh_report(redis_store):
    with pytest.raises(SystemExit):
        call_command("uw_stream_control", "status", "--check", stdout=StringIO())
    redis_store.hset(stream.STATE_KEY, mapping={"status": "connected", "updated_at": str(time.time() - 120)})
    with pytest.raises(SystemExit):
        call_command("uw_stream_control", "status", "--check", stdout=StringIO())


@pytest.mark.django_db
def test_pause_and_resume_are_recorded_and_set_the_flag_after_commit(redis_store, django_capture_on_commit_callbacks):
    from apps.ingestion.models import StreamControl
    from apps.ops.models import AuditLog

    with django_capture_on_commit_callbacks(execute=True):
        stream.stream_pause_set(paused=True, actor="alice", reason="UW maintenance")
    assert redis_store.get(stream.PAUSE_KEY) == "alice"
    with django_capture_on_commit_callbacks(execute=True):
        stream.stream_pause_set(paused=False, actor="alice")
    assert redis_store.get(stream.PAUSE_KEY) is None
    assert list(AuditLog.objects.order_by("id").values_list("action", "actor")) == [
        ("uw_stream.pause", "alice"),
        ("uw_stream.resume", "alice"),
    ]
    assert [control.paused for control in StreamControl.objects.order_by("id")] == [True, False]


@pytest.mark.django_db
def test_the_console_pauses_the_listener_and_shows_its_state(
    admin_client, redis_store, django_capture_on_commit_callbacks
):
    redis_store.hset(stream.STATE_KEY, mapping={"status": "connected", "updated_at": str(time.time()), "frames": "42"})
    page = admin_client.get("/admin/ingestion/streamcontrol/")
    assert page.status_code == 200
    assert "UW listener: connected" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        added = admin_client.post("/admin/ingestion/streamcontrol/add/", {"paused": "on", "reason": "UW incident"})
    assert added.status_code == 302
    assert redis_store.get(stream.PAUSE_KEY) == "admin"


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_pause_the_listener(client, django_user_model, redis_store):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    refused = client.post("/admin/ingestion/streamcontrol/add/", {"paused": "on", "reason": "x"})
    assert refused.status_code == 403
    assert redis_store.get(stream.PAUSE_KEY) is None
