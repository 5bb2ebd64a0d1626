"""The operations dashboard inside the admin: who may see it, what its JSON says, that it stays cheap on big tables,
the chart history beat records, and its controls (allowed, refused and audited)."""

from __future__ import annotations

import re
from datetime import timedelta

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core import clock, store
from apps.ingestion.feeds import feed_is_paused
from apps.ops.dashboard_selectors import SERIES_KEY, dashboard_series, series_capacity
from apps.ops.dashboard_services import dashboard_sample_record
from apps.ops.dashboard_tasks import dashboard_sample
from apps.ops.models import Alert, AuditLog
from apps.risk.selectors import kill_switch_is_on
from tests.ops.dashboard_seed import (
    OPERATOR_PERMISSIONS,
    TICK_TABLES,
    chart_samples,
    listener_report,
    open_position,
    staff_user,
    unacknowledged_alert,
)

pytestmark = pytest.mark.django_db

TICK_TABLE = re.compile(r'"(' + "|".join(TICK_TABLES) + r')"')
# health, broker, feeds, kill switch, PnL, positions, orders, posts, approvals, signals, alerts: a fixed number, however
# many rows the tables hold.
MAX_DASHBOARD_QUERIES = 17


def _seed_ticks(rows: int) -> None:
    """Rows in two tick tables, so a COUNT or a scan over them would show in the captured SQL."""
    from apps.ingestion.models import PriceTick, RawFrame

    now = clock.now()
    RawFrame.objects.bulk_create(
        RawFrame(frame_hash=f"h{i}", channel="price:SPY", received_at=now, payload={"i": i}) for i in range(rows)
    )
    PriceTick.objects.bulk_create(
        PriceTick(ticker="SPY", ts=now + timedelta(seconds=i), close="600.00", volume=1) for i in range(rows)
    )


def test_the_dashboard_needs_a_staff_login(client):
    staff_user("operator")
    for name in ("admin:ops_dashboard", "admin:ops_dashboard_data"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.login(username="operator", password="pw-dashboard")
    assert client.get(reverse("admin:ops_dashboard")).status_code == 200


def test_a_user_who_is_not_staff_is_sent_to_the_login(client):
    from django.contrib.auth.models import User

    User.objects.create_user(username="viewer", password="pw")
    client.login(username="viewer", password="pw")
    response = client.get(reverse("admin:ops_dashboard_data"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_admin_index_shows_the_status_headline_and_links_the_dashboard(client, redis_store):
    staff_user("operator")
    client.login(username="operator", password="pw-dashboard")
    unacknowledged_alert()
    redis_store.set("risk:kill_switch", "1")

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="ops-headline"' in page
    assert reverse("admin:ops_dashboard") in page and "Live dashboard" in page
    assert re.search(r"Kill switch</span><span[^>]*>ENGAGED<", page)
    assert re.search(r"Unacknowledged alerts</span><span[^>]*>1<", page)


def test_the_json_endpoint_reports_every_panel(client):
    staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")
    listener_report(rate=12.5)
    trade = open_position(mark="1.45", entry="1.20", quantity=2)
    alert = unacknowledged_alert()
    chart_samples(count=3)

    data = client.get(reverse("admin:ops_dashboard_data")).json()

    assert data["health"]["database_ok"] and data["health"]["redis_ok"]
    assert data["health"]["redis_memory"]["used_bytes"] > 0
    assert set(data["health"]["queue_depths"]) >= {"ingestion", "execution", "ops"}
    assert {c["channel"]: c["rate_per_s"] for c in data["ingestion"]["channels"]} == {
        "flow-alerts": 12.5,
        "price:SPY": 12.5,
    }
    assert data["ingestion"]["rate_per_s"] == 25.0 and data["ingestion"]["status"] == "connected"
    assert [f["feed"] for f in data["feeds"]] == ["uw_stream", "uw_rest", "ib_market"]
    assert not any(f["paused"] for f in data["feeds"])
    assert data["kill_switch"]["on"] is False
    assert data["positions"] == [
        {
            "trade_id": trade.pk,
            "ticker": trade.ticker,
            "strategy": trade.strategy,
            "option_symbol": trade.option_symbol,
            "quantity": 2,
            "entry_price": "1.200000",
            "entry_at": trade.entry_at.isoformat(),
            "mark": "1.450000",
            "unrealized_pnl": "50.00",
        }
    ]
    assert data["pnl"] == {"open": "50.00", "realized_today": "0.00", "total": "50.00"}
    assert [a["id"] for a in data["alerts"]] == [alert.pk]
    assert len(data["series"]) == 3
    assert data["orders"] == [] and data["posts"] == [] and data["approvals"] == []


def test_the_json_endpoint_runs_a_bounded_number_of_queries_and_never_touches_a_tick_table(client):
    staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")
    listener_report()
    for _ in range(3):
        open_position()
    unacknowledged_alert(key="a")
    unacknowledged_alert(key="b")
    _seed_ticks(200)
    client.get(reverse("admin:ops_dashboard_data"))  # the session and permission caches warm up

    with CaptureQueriesContext(connection) as few:
        assert client.get(reverse("admin:ops_dashboard_data")).status_code == 200
    for n in range(20):
        open_position()
        unacknowledged_alert(key=f"k{n}")
    with CaptureQueriesContext(connection) as many:
        assert client.get(reverse("admin:ops_dashboard_data")).status_code == 200

    assert len(many.captured_queries) == len(few.captured_queries) <= MAX_DASHBOARD_QUERIES
    for query in many.captured_queries:
        sql = query["sql"]
        assert not TICK_TABLE.search(sql), sql
        if "COUNT(" in sql.upper():
            # The only counts are over small tables (dead letters in the health check), each on an indexed range.
            assert "ops_dead_letters" in sql, sql


def test_the_page_embeds_a_first_snapshot_and_the_poll_interval(client, settings):
    settings.DASHBOARD_REFRESH_SECONDS = 3
    staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")
    chart_samples(count=4)

    page = client.get(reverse("admin:ops_dashboard")).content.decode()

    config = orjson.loads(re.search(r'id="ops-dashboard-config" type="application/json">(.*?)</script>', page).group(1))
    assert config["refresh_seconds"] == 3
    assert config["data_url"] == reverse("admin:ops_dashboard_data")
    assert len(config["series"]) == 4 and "health" in config["snapshot"]
    assert all(control["allowed"] for control in config["controls"].values())
    assert "ops/vendor/uplot/uPlot.iife.min.js" in page and "ops/dashboard.js" in page
    assert 'id="kill-engage"' in page and 'id="kill-engage" class="ops-btn ops-btn-danger"' in page


def test_controls_the_user_may_not_run_are_rendered_disabled(client):
    staff_user("watcher")
    client.login(username="watcher", password="pw-dashboard")

    page = client.get(reverse("admin:ops_dashboard")).content.decode()

    for button in ("kill-engage", "kill-release", "flatten-all", "flush-latest", "flush-analytics"):
        tag = re.search(rf'<button[^>]*id="{button}"[^>]*>', page, re.S).group(0)
        assert "disabled" in tag, tag


def test_a_control_runs_through_the_control_layer_and_is_audited(client, django_capture_on_commit_callbacks):
    operator = staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")

    with django_capture_on_commit_callbacks(execute=True):  # the feed's flag is set after the commit
        response = client.post(
            reverse("admin:ops_dashboard_control"),
            {"control": "feed_pause", "feed": "uw_stream", "reason": "bad prints"},
            HTTP_ACCEPT="application/json",
        )

    assert response.status_code == 200 and response.json()["ok"] is True
    assert feed_is_paused("uw_stream")
    entry = AuditLog.objects.get(action="control.feed_pause")
    assert entry.actor == operator.username and entry.detail["channel"] == "dashboard"
    assert entry.detail["outcome"] == "ok"


def test_a_plain_form_post_redirects_back_with_the_message(client):
    staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")

    response = client.post(
        reverse("admin:ops_dashboard_control"), {"control": "kill_switch_engage", "reason": "drill"}, follow=True
    )

    assert response.redirect_chain == [(reverse("admin:ops_dashboard"), 303)]
    assert "Kill switch ON" in response.content.decode()
    assert kill_switch_is_on()


def test_a_forced_post_without_the_permission_is_refused_audited_and_changes_nothing(client):
    staff_user("watcher")
    client.login(username="watcher", password="pw-dashboard")
    alert = unacknowledged_alert()
    trade = open_position()

    attempts = [
        {"control": "feed_pause", "feed": "uw_stream"},
        {"control": "kill_switch_engage", "reason": "x"},
        {"control": "flatten_all"},
        {"control": "caches_flush", "pattern": "latest"},
        {"control": "alert_acknowledge", "alert_id": str(alert.pk)},
        {"control": "position_close", "trade_id": str(trade.pk)},
    ]
    for form in attempts:
        answer = client.post(reverse("admin:ops_dashboard_control"), form, HTTP_ACCEPT="application/json")
        assert answer.status_code == 403 and answer.json()["message"].startswith("Refused"), form
    plain = client.post(reverse("admin:ops_dashboard_control"), {"control": "kill_switch_release"})
    assert plain.status_code == 403

    assert not feed_is_paused("uw_stream") and not kill_switch_is_on()
    alert.refresh_from_db()
    trade.refresh_from_db()
    assert alert.acknowledged_at is None and trade.status == "open"
    refused = AuditLog.objects.filter(actor="watcher", action__startswith="control.")
    assert refused.count() == len(attempts) + 1
    assert {entry.detail["outcome"] for entry in refused} == {"refused"}


def test_a_bad_control_request_is_a_400_with_the_reason(client):
    staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")

    answer = client.post(
        reverse("admin:ops_dashboard_control"),
        {"control": "feed_pause", "feed": "bloomberg"},
        HTTP_ACCEPT="application/json",
    )

    assert answer.status_code == 400 and "bloomberg" in answer.json()["message"]
    assert client.get(reverse("admin:ops_dashboard_control")).status_code == 405


def test_acknowledging_an_alert_from_the_dashboard_records_the_user(client):
    staff_user("operator", permissions=["ops.acknowledge_alert"])
    client.login(username="operator", password="pw-dashboard")
    alert = unacknowledged_alert()

    client.post(
        reverse("admin:ops_dashboard_control"),
        {"control": "alert_acknowledge", "alert_id": str(alert.pk)},
        HTTP_ACCEPT="application/json",
    )

    assert Alert.objects.get(pk=alert.pk).acknowledged_by == "operator"
    assert client.get(reverse("admin:ops_dashboard_data")).json()["alerts"] == []


def test_the_beat_task_appends_a_sample_of_pnl_ingestion_and_queues(redis_store):
    listener_report(rate=7.0, channels=("flow-alerts",))
    open_position(mark="1.30", entry="1.20", quantity=1)
    redis_store.rpush("ingestion", "m1", "m2")

    dashboard_sample.delay()

    [raw] = redis_store.lrange(SERIES_KEY, 0, -1)
    sample = orjson.loads(raw)
    assert sample["pnl_total"] == 10.0 and sample["pnl_open"] == 10.0 and sample["pnl_realized"] == 0.0
    assert sample["ingest_rate"] == 7.0 and sample["channel_rates"] == {"flow-alerts": 7.0}
    assert sample["queues"]["ingestion"] == 2
    assert abs(sample["t"] - clock.now().timestamp()) < 5


def test_the_series_keeps_one_trading_session_of_samples(redis_store, settings):
    settings.DASHBOARD_SAMPLE_SECONDS = 3600  # a session of 6.5 h: 7 samples
    assert series_capacity() == 7
    for _ in range(10):
        dashboard_sample_record()
    assert redis_store.llen(SERIES_KEY) == 7


def test_the_series_returns_today_only_and_what_is_newer_than_since(redis_store):
    samples = chart_samples(count=6)
    yesterday = clock.now().timestamp() - 86400 * 2
    redis_store.lpush(SERIES_KEY, orjson.dumps({"t": yesterday, "pnl_total": 1.0}))

    everything = dashboard_series()
    newer = dashboard_series(since=samples[3]["t"])

    assert [s["t"] for s in everything] == [s["t"] for s in samples]
    assert [s["t"] for s in newer] == [s["t"] for s in samples[4:]]


def test_a_listener_that_stopped_reporting_counts_as_no_ingestion(client):
    staff_user("operator")
    client.login(username="operator", password="pw-dashboard")
    listener_report(rate=50.0)
    store.get_redis().hset("uw:stream:state", "updated_at", f"{clock.now().timestamp() - 120:.3f}")

    ingestion = client.get(reverse("admin:ops_dashboard_data")).json()["ingestion"]

    assert ingestion["stale"] is True and ingestion["rate_per_s"] == 0.0
    assert all(c["last_frame_age_s"] > 119 for c in ingestion["channels"])


def test_a_replay_records_no_dashboard_samples(redis_store):
    with clock.simulated(clock.now() - timedelta(days=3)):
        assert dashboard_sample_record() is None
    assert redis_store.llen(SERIES_KEY) == 0
    assert dashboard_sample_record() is not None
    assert redis_store.llen(SERIES_KEY) == 1


def test_the_dashboard_still_answers_when_redis_is_unreachable(client, settings):
    staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")
    open_position()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    store.reset_client()
    try:
        data = client.get(reverse("admin:ops_dashboard_data")).json()
        page = client.get(reverse("admin:ops_dashboard"))
        index = client.get(reverse("admin:index"))
    finally:
        store.reset_client()  # the settings fixture puts REDIS_URL back; the next client is built from it

    assert page.status_code == 200
    assert index.status_code == 200 and re.search(r"Redis</span><span[^>]*>DOWN<", index.content.decode())
    assert data["health"]["redis_ok"] is False and data["health"]["redis_memory"]["used_bytes"] is None
    assert "Redis unreachable" in data["ingestion"]["status"]
    assert {f["paused"] for f in data["feeds"]} == {None}
    assert data["kill_switch"]["on"] is None
    assert data["series"] == [] and len(data["positions"]) == 1


def test_signals_waiting_for_risk_are_listed_and_an_operator_rejects_one_from_the_dashboard(client):
    from apps.risk.models import RiskDecision
    from apps.signals.models import Signal
    from tests.risk.factories import SignalFactory

    operator = staff_user("operator", permissions=OPERATOR_PERMISSIONS)
    client.login(username="operator", password="pw-dashboard")
    waiting = SignalFactory()
    SignalFactory(status=Signal.Status.REJECTED)  # decided: not listed

    data = client.get(reverse("admin:ops_dashboard_data")).json()
    assert [row["signal_id"] for row in data["signals"]] == [waiting.signal_id]

    response = client.post(
        reverse("admin:ops_dashboard_control"),
        {"control": "signal_reject", "signal_id": waiting.signal_id, "reason": "stale quote"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200 and response.json()["ok"] is True
    waiting.refresh_from_db()
    assert waiting.status == Signal.Status.REJECTED
    decision = RiskDecision.objects.get(signal=waiting)
    assert not decision.approved and operator.username in decision.reason and "stale quote" in decision.reason
    assert client.get(reverse("admin:ops_dashboard_data")).json()["signals"] == []
