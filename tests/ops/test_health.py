from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from apps.core import clock, queues
from apps.ops import tasks
from apps.ops.selectors import CANARY_STALE_AFTER_SECONDS, health_snapshot
from apps.ops.services import CANARY_KEY, audit_record

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("requires_real_services")]


def test_the_canary_task_stamps_the_redis_key_with_the_clock(redis_store):
    start = clock.now().replace(microsecond=0) - timedelta(days=3)
    with clock.simulated(start):
        tasks.canary.delay()

    assert redis_store.get(CANARY_KEY) == start.isoformat()


def test_snapshot_reports_real_postgres_and_redis_and_a_fresh_canary(redis_store):
    tasks.canary.delay()

    snapshot = health_snapshot()

    assert snapshot.ok and snapshot.database_ok and snapshot.redis_ok
    assert snapshot.redis_used_memory > 0
    assert snapshot.broker == "redis"
    assert snapshot.canary_age_seconds is not None and 0 <= snapshot.canary_age_seconds < 5
    assert not snapshot.canary_stale
    assert snapshot.kill_switch_on is False


def test_snapshot_counts_messages_waiting_on_each_broker_queue(redis_store):
    # kombu's Redis transport keeps a queue as a list named after it; two waiting messages on "risk".
    redis_store.lpush("risk", "{}", "{}")

    depths = health_snapshot().queue_depths

    assert depths["risk"] == 2
    assert set(depths) == set(queues.ALL)


def test_an_old_canary_is_reported_stale(redis_store):
    redis_store.set(CANARY_KEY, (clock.now() - timedelta(seconds=CANARY_STALE_AFTER_SECONDS + 5)).isoformat())

    snapshot = health_snapshot()

    assert snapshot.canary_stale
    assert snapshot.canary_age_seconds > CANARY_STALE_AFTER_SECONDS


def test_a_canary_that_is_not_a_timestamp_is_stale_and_said_to_be_unreadable(redis_store):
    redis_store.set(CANARY_KEY, "yesterday")
    out = StringIO()

    call_command("health", stdout=out)

    assert health_snapshot().canary_stale
    assert "canary       UNREADABLE (ops:canary holds 'yesterday', not an ISO timestamp)" in out.getvalue()


def test_a_missing_canary_is_stale_and_the_kill_switch_state_is_read(redis_store):
    redis_store.set("risk:kill_switch", "1")

    snapshot = health_snapshot()

    assert snapshot.canary_at is None and snapshot.canary_stale
    assert snapshot.kill_switch_on is True


def test_an_unreachable_redis_fails_the_snapshot_without_hiding_the_database(settings):
    from apps.core import store

    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    store.reset_client()

    snapshot = health_snapshot()

    assert not snapshot.ok
    assert snapshot.database_ok
    assert not snapshot.redis_ok and "ConnectionError" in snapshot.redis_error
    assert not snapshot.broker_ok and "ConnectionError" in snapshot.broker_error
    assert snapshot.kill_switch_on is None


def test_an_unreachable_broker_fails_the_snapshot_while_the_platform_redis_answers(settings, redis_store):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    snapshot = health_snapshot()

    assert snapshot.redis_ok and not snapshot.broker_ok
    assert not snapshot.ok
    assert snapshot.queue_depths == {}


def test_the_embedded_in_process_store_is_healthy_without_memory_figures(settings):
    from apps.core import store

    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = "memory://"
    store.reset_client()

    snapshot = health_snapshot()

    assert snapshot.ok and snapshot.redis_in_process
    assert snapshot.redis_used_memory is None
    assert (snapshot.broker, snapshot.queue_depths) == ("memory", {})


def test_the_health_command_prints_json(redis_store):
    tasks.canary.delay()
    out = StringIO()

    call_command("health", "--json", stdout=out)

    data = json.loads(out.getvalue())
    assert data["ok"] is True
    assert data["queue_depths"]["ops"] == 0
    assert data["canary_stale"] is False


def test_the_health_command_prints_text_and_exits_1_when_redis_is_down(settings):
    from apps.core import store

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    store.reset_client()
    out = StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("health", stdout=out)

    assert exited.value.code == 1
    assert "redis        UNREACHABLE" in out.getvalue()
    assert "database     ok" in out.getvalue()


def test_audit_entries_are_stamped_with_the_platform_clock():
    at = clock.now().replace(microsecond=0) - timedelta(hours=5)
    with clock.simulated(at):
        entry = audit_record(actor="alice", action="kill_switch.on", target="risk", detail={"reason": "drill"})

    entry.refresh_from_db()
    assert (entry.actor, entry.action, entry.target, entry.detail, entry.at) == (
        "alice",
        "kill_switch.on",
        "risk",
        {"reason": "drill"},
        at,
    )


def test_require_fresh_canary_fails_the_health_command_while_no_worker_has_run_the_canary():
    out = StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("health", "--require-fresh-canary", stdout=out)

    assert exited.value.code == 1
    assert "canary       MISSING" in out.getvalue()


def test_require_fresh_canary_passes_once_a_worker_ran_the_canary(redis_store):
    tasks.canary.delay()
    redis_store.set("risk:kill_switch", "1")
    out = StringIO()

    call_command("health", "--require-fresh-canary", stdout=out)

    assert "canary       fresh" in out.getvalue()
    assert "kill switch  ON" in out.getvalue()


def test_the_snapshot_counts_dead_letters_of_the_last_24_hours(redis_store):
    from apps.ops.services import dead_letter_record

    def fail_at(at):
        with clock.simulated(at):
            dead_letter_record(task_name="risk.review", task_id="t", args=[], kwargs={}, exception="ValueError: x")

    now = clock.now()
    fail_at(now - timedelta(hours=25))
    fail_at(now - timedelta(hours=2))
    fail_at(now - timedelta(minutes=1))
    out = StringIO()

    call_command("health", stdout=out)

    assert health_snapshot().dead_letters_last_24h == 2
    assert "dead letters 2 in the last 24 h" in out.getvalue()
