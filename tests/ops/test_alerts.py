"""The platform's alert evaluator and its delivery to the operators' Telegram chat and Discord webhook, through the
real python-telegram-bot and discord-webhook clients to the loopback stand-ins; Alertmanager's webhook."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.core import clock
from apps.core.standins.discord import DiscordStandin, Scripted
from apps.core.standins.telegram import TelegramStandin
from apps.ingestion.feeds import UW_REST, UW_STREAM, feed_pause_key
from apps.ingestion.redis_keys import feed_last_frame_key
from apps.ingestion.uw.stream import CHANNELS_KEY, STATE_KEY
from apps.ops import alerts, tasks
from apps.ops.models import Alert, AuditLog, DeadLetter

pytestmark = pytest.mark.django_db

CHAT_ID = -100777
WEBHOOK = "ops-alerts"
TOKEN = "am-secret-token"
# Tuesday 24 November 2026, 11:00 New York: a regular session.
MARKET_HOURS = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
# Saturday 28 November 2026, 11:00 New York: no session.
WEEKEND = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)


def _pin_clock(settings, instant: datetime) -> None:
    """The platform clock at ``instant`` (the wall clock shifted, as a rehearsal does; not simulated, because the
    evaluator stands aside during a replay)."""
    settings.TP_CLOCK_OFFSET_SECONDS = (instant - datetime.now(UTC)).total_seconds()


@pytest.fixture
def telegram() -> Iterator[TelegramStandin]:
    standin = TelegramStandin().start()
    yield standin
    standin.stop()


@pytest.fixture
def discord() -> Iterator[DiscordStandin]:
    standin = DiscordStandin().start()
    yield standin
    standin.stop()


@pytest.fixture
def channels(settings, telegram, discord):
    settings.TELEGRAM_BOT_TOKEN = telegram.token
    settings.TELEGRAM_BASE_URL = telegram.api_root
    settings.OPS_ALERT_TELEGRAM_CHAT_ID = str(CHAT_ID)
    settings.OPS_ALERT_DISCORD_WEBHOOK_URL = discord.url(WEBHOOK)
    return telegram, discord


@pytest.fixture
def uw_feed(settings):
    """The UW listener is in use here, the session is open, and a frame older than 60 s is stale."""
    settings.UW_API_TOKEN = "uw-token"
    settings.FEED_STALE_SECONDS = 60
    _pin_clock(settings, MARKET_HOURS)


def _listener_reports(redis_store, *, last_frame_age: float) -> None:
    """What the UW listener writes every second: its state and each channel's last-frame age as of the report.  The
    REST pollers (the other UW feed) stay fresh meanwhile."""
    redis_store.set(feed_last_frame_key(UW_REST), f"{time.time():.3f}")
    redis_store.hset(STATE_KEY, mapping={"status": "connected", "updated_at": f"{time.time():.3f}"})
    channel = {"frames": 10, "rate_per_s": 0.0, "last_frame_age_s": last_frame_age}
    redis_store.hset(CHANNELS_KEY, mapping={"flow-alerts": orjson.dumps(channel).decode()})


def _telegram_texts(telegram: TelegramStandin) -> list[str]:
    return [m.text for m in telegram.messages_in(CHAT_ID)]


def _discord_texts(discord: DiscordStandin) -> list[str]:
    return [r.body["content"] for r in discord.delivered(WEBHOOK)]


def test_a_stale_feed_in_market_hours_is_raised_delivered_once_and_resolved_when_it_recovers(
    channels, uw_feed, redis_store
):
    telegram, discord = channels
    _listener_reports(redis_store, last_frame_age=300)

    first = tasks.alerts_evaluate.delay().get()

    alert = Alert.objects.get(key="feed_stale:uw_stream")
    assert first["raised"] == ["feed_stale:uw_stream"]
    assert (alert.rule, alert.severity, alert.source) == ("FeedStale", "critical", "platform")
    assert alert.delivered_at is not None and alert.delivery_error == ""
    [sent] = _telegram_texts(telegram)
    assert sent.startswith("ALERT [CRITICAL] FeedStale: uw_stream feed stale: last frame 300 s ago (threshold 60 s")
    assert "runbook: docs/alerting.md#feedstale" in sent
    assert _discord_texts(discord) == [sent]

    tasks.alerts_evaluate.delay()

    assert len(telegram.calls_to("sendMessage")) == 1 and len(discord.requests_to(WEBHOOK)) == 1
    assert Alert.objects.get(key="feed_stale:uw_stream").last_seen_at > alert.last_seen_at

    _listener_reports(redis_store, last_frame_age=0.5)
    recovered = tasks.alerts_evaluate.delay().get()

    alert.refresh_from_db()
    assert recovered["resolved"] == ["feed_stale:uw_stream"]
    assert alert.resolved_at is not None and alert.delivered_at is not None
    resolution = _telegram_texts(telegram)[-1]
    assert resolution.startswith("RESOLVED FeedStale: uw_stream feed stale")
    assert _discord_texts(discord)[-1] == resolution
    assert (
        alert.detail["notified"]["raised"].keys()
        == alert.detail["notified"]["resolved"].keys()
        == {
            "telegram",
            "discord",
        }
    )

    tasks.alerts_evaluate.delay()

    assert len(telegram.calls_to("sendMessage")) == 2 and len(discord.requests_to(WEBHOOK)) == 2
    assert Alert.objects.count() == 1


def test_a_stale_feed_is_not_an_alert_when_paused_or_outside_the_session(settings, channels, uw_feed, redis_store):
    telegram, _ = channels
    _listener_reports(redis_store, last_frame_age=300)
    redis_store.set(feed_pause_key(UW_STREAM), "ops")

    assert tasks.alerts_evaluate.delay().get()["firing"] == []

    redis_store.delete(feed_pause_key(UW_STREAM))
    _pin_clock(settings, WEEKEND)

    assert tasks.alerts_evaluate.delay().get()["firing"] == []
    assert not Alert.objects.exists() and telegram.calls_to("sendMessage") == []


def test_a_failed_delivery_is_retried_next_run_without_sending_twice_to_the_channel_that_took_it(
    channels, uw_feed, redis_store
):
    telegram, discord = channels
    telegram.script_error("sendMessage", status=500, description="Internal Server Error")
    _listener_reports(redis_store, last_frame_age=300)

    tasks.alerts_evaluate.delay()

    alert = Alert.objects.get(key="feed_stale:uw_stream")
    assert alert.delivered_at is None
    assert alert.delivery_error.startswith("telegram: ")
    assert len(_discord_texts(discord)) == 1 and _telegram_texts(telegram) == []

    tasks.alerts_evaluate.delay()

    alert.refresh_from_db()
    assert alert.delivered_at is not None and alert.delivery_error == ""
    assert len(_telegram_texts(telegram)) == 1
    assert len(discord.requests_to(WEBHOOK)) == 1  # Discord had it: not sent again


def test_a_rate_limited_channel_waits_the_time_it_asked_for(channels, uw_feed, redis_store):
    telegram, discord = channels
    discord.script(WEBHOOK, Scripted(429, {"retry_after": 1.5}, {"Retry-After": "1.5"}))
    _listener_reports(redis_store, last_frame_age=300)

    tasks.alerts_evaluate.delay()
    held = tasks.alerts_evaluate.delay().get()

    assert held["delivery"]["held"] == ["discord"]
    assert len(discord.requests_to(WEBHOOK)) == 1  # the second run did not knock while Discord said to wait
    assert Alert.objects.get().delivered_at is None
    assert redis_store.pttl(alerts.HOLD_KEY.format(channel="discord")) > 0

    time.sleep(1.6)
    tasks.alerts_evaluate.delay()

    assert Alert.objects.get().delivered_at is not None
    assert len(_discord_texts(discord)) == 1 and len(_telegram_texts(telegram)) == 1


def test_the_other_conditions_open_one_row_per_key_and_resolve_when_they_clear(
    settings, channels, redis_store, django_capture_on_commit_callbacks
):
    from apps.risk.services import kill_switch_engage, kill_switch_release

    settings.QUEUE_BACKLOG_THRESHOLD = 3
    settings.REDIS_MEMORY_ALERT_BYTES = 1  # any Redis is above one byte (no maxmemory on the test server)
    redis_store.rpush("signals", *["message"] * 3)
    DeadLetter.objects.create(task_name="signals.evaluate", task_id="t1", exception="boom", at=clock.now())
    with django_capture_on_commit_callbacks(execute=True):
        kill_switch_engage(by="tests", reason="alert test", flatten=False)

    report = tasks.alerts_evaluate.delay().get()

    assert report["firing"] == ["dead_letters", "kill_switch", "queue_backlog:signals", "redis_memory"]
    assert Alert.objects.get(key="kill_switch").severity == "critical"
    assert Alert.objects.get(key="queue_backlog:signals").summary.startswith("3 messages wait in the signals queue")

    redis_store.delete("signals")
    with django_capture_on_commit_callbacks(execute=True):
        kill_switch_release(by="tests", reason="alert test over")
    settings.REDIS_MEMORY_ALERT_BYTES = 2**40
    report = tasks.alerts_evaluate.delay().get()

    assert sorted(report["resolved"]) == ["kill_switch", "queue_backlog:signals", "redis_memory"]
    assert list(Alert.objects.filter(resolved_at__isnull=True).values_list("key", flat=True)) == ["dead_letters"]


def test_the_evaluator_stands_aside_during_a_replay(channels, uw_feed, redis_store):
    _listener_reports(redis_store, last_frame_age=300)

    with clock.simulated(MARKET_HOURS):
        report = tasks.alerts_evaluate.delay().get()

    assert report["skipped"] == "simulated clock (replay)"
    assert not Alert.objects.exists()


def _payload(status: str) -> dict:
    alert = {
        "status": status,
        "labels": {"alertname": "QueueBacklog", "severity": "warning", "queue": "signals"},
        "annotations": {
            "summary": "1500 messages wait in the signals queue",
            "runbook_url": "docs/alerting.md#queuebacklog",
        },
        "startsAt": "2026-11-24T15:58:00Z",
        "endsAt": "2026-11-24T16:04:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=tp_queue_depth",
        "fingerprint": "a1b2c3d4e5f60718",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="QueueBacklog"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "platform",
        "groupLabels": {"alertname": "QueueBacklog"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def _post(client: Client, payload: object, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/ops/alertmanager/", data=json.dumps(payload), content_type="application/json", headers=headers)


def test_alertmanager_firing_then_resolved_round_trips_to_one_alert_row_and_both_notices(
    settings, channels, django_capture_on_commit_callbacks
):
    telegram, discord = channels
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    client = Client()

    with django_capture_on_commit_callbacks(execute=True):
        firing = _post(client, _payload("firing"))
        again = _post(client, _payload("firing"))  # Alertmanager repeats a firing alert

    assert firing.status_code == 200 and again.status_code == 200
    alert = Alert.objects.get()
    assert firing.json()["raised"] == [alert.pk] and again.json()["refreshed"] == [alert.pk]
    assert (alert.source, alert.rule, alert.severity) == ("alertmanager", "QueueBacklog", "warning")
    assert alert.key == "alertmanager:QueueBacklog:a1b2c3d4e5f60718"
    assert alert.detail["labels"]["queue"] == "signals"
    [sent] = _telegram_texts(telegram)
    assert sent.startswith("ALERT [WARNING] QueueBacklog: 1500 messages wait in the signals queue")
    assert _discord_texts(discord) == [sent]

    with django_capture_on_commit_callbacks(execute=True):
        resolved = _post(client, _payload("resolved"))

    alert.refresh_from_db()
    assert resolved.json()["resolved"] == [alert.pk]
    assert alert.resolved_at is not None and alert.delivered_at is not None
    assert _telegram_texts(telegram)[-1].startswith("RESOLVED QueueBacklog: 1500 messages wait in the signals queue")
    assert len(_discord_texts(discord)) == 2


def test_alertmanager_webhook_refuses_a_caller_without_the_token(settings):
    client = Client()
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN

    assert _post(client, _payload("firing"), token=None).status_code == 401
    assert _post(client, _payload("firing"), token="not-the-token").status_code == 401
    assert _post(client, {"version": "3", "alerts": []}).status_code == 400

    settings.ALERTMANAGER_WEBHOOK_TOKEN = ""  # no token configured: nobody gets in
    assert _post(client, _payload("firing"), token="").status_code == 401
    assert not Alert.objects.exists()


def test_the_admin_lists_unacknowledged_alerts_first_and_acknowledges_through_the_control():
    now = clock.now()
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    older = Alert.objects.create(
        key="a", rule="FeedStale", summary="older", raised_at=now - timedelta(hours=1), last_seen_at=now
    )
    newer = Alert.objects.create(
        key="b",
        rule="KillSwitchTripped",
        summary="newer",
        raised_at=now,
        last_seen_at=now,
        acknowledged_at=now,
        acknowledged_by="someone",
    )
    client = Client()
    client.force_login(user)

    page = client.get("/admin/ops/alert/")
    assert page.status_code == 200
    assert [a.pk for a in page.context["cl"].result_list] == [older.pk, newer.pk]

    client.post("/admin/ops/alert/", {"action": "acknowledge_alerts", "_selected_action": [older.pk]})

    older.refresh_from_db()
    assert older.acknowledged_by == "ops" and older.acknowledged_at is not None
    assert AuditLog.objects.filter(action="control.alert_acknowledge", actor="ops").count() == 1
    assert client.get("/admin/ops/alert/add/").status_code == 403


def test_an_evaluation_finding_another_one_running_does_nothing_and_frees_only_its_own_lock(
    channels, uw_feed, redis_store
):
    telegram, _ = channels
    _listener_reports(redis_store, last_frame_age=300)
    redis_store.set(alerts.LOCK_KEY, "another-run", ex=60)

    assert tasks.alerts_evaluate.delay().get()["skipped"] == "another evaluation is running"
    assert not Alert.objects.exists() and redis_store.get(alerts.LOCK_KEY) == "another-run"

    redis_store.delete(alerts.LOCK_KEY)
    tasks.alerts_evaluate.delay()

    assert redis_store.get(alerts.LOCK_KEY) is None
    assert len(_telegram_texts(telegram)) == 1


def test_a_channel_that_fails_is_not_knocked_on_again_in_the_same_run(
    channels, uw_feed, redis_store, django_capture_on_commit_callbacks
):
    from apps.risk.services import kill_switch_engage

    telegram, discord = channels
    discord.script(WEBHOOK, Scripted(500, {"message": "Internal Server Error"}))
    _listener_reports(redis_store, last_frame_age=300)
    with django_capture_on_commit_callbacks(execute=True):
        kill_switch_engage(by="tests", reason="two alerts at once", flatten=False)

    first = tasks.alerts_evaluate.delay().get()

    assert len(first["raised"]) == 2 and len(_telegram_texts(telegram)) == 2
    assert len(discord.requests_to(WEBHOOK)) == 1  # the second notice did not wait out another failure
    assert all("discord: " in a.delivery_error for a in Alert.objects.all())

    tasks.alerts_evaluate.delay()

    assert len(_discord_texts(discord)) == 2 and len(_telegram_texts(telegram)) == 2
    assert not Alert.objects.filter(delivered_at__isnull=True).exists()


def test_production_does_not_redirect_prometheus_and_alertmanager_to_https_but_does_the_admin(settings):
    # Inside the compose network both call http://web:8000 (docs/alerting.md); the public face is HTTPS.
    settings.SECURE_SSL_REDIRECT = True
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    client = Client(HTTP_HOST="web:8000")
    settings.ALLOWED_HOSTS = ["web"]

    assert _post(client, _payload("firing"), token="wrong").status_code == 401
    assert client.get("/metrics").status_code == 200
    assert client.get("/admin/login/").status_code == 301
