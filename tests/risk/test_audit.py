"""What the risk manager keeps: decisions in Redis (capped), the limits in Redis, two years of risk_audit."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from apps.core.beat import declared_periodic_tasks
from apps.ops.beat_schedules import check_installable, registered_task_names
from apps.risk import services
from apps.risk.models import RiskDecision
from apps.risk.tasks import purge_audit
from tests.risk.factories import SignalFactory, ny

pytestmark = pytest.mark.django_db


def decided(at) -> RiskDecision:
    """A rejected decision (no orders) decided at ``at``."""
    return RiskDecision.objects.create(
        signal=SignalFactory(status="rejected"),
        limits=services.limits_active(),
        approved=False,
        quantity=0,
        limit_price="1.26",
        reason="rejected: test",
        decided_at=at,
    )


def test_purge_deletes_only_decisions_older_than_two_years_in_batches():
    now = ny(10, 30)
    old = [
        decided(now - timedelta(days=730, seconds=1)),
        decided(now - timedelta(days=900)),
        decided(now - timedelta(days=3000)),
    ]
    kept = [decided(now - timedelta(days=729)), decided(now - timedelta(days=730) + timedelta(seconds=1)), decided(now)]

    assert services.audit_purge(batch_size=2) == 3

    assert not RiskDecision.objects.filter(pk__in=[d.pk for d in old]).exists()
    assert set(RiskDecision.objects.values_list("pk", flat=True)) == {d.pk for d in kept}


def test_the_purge_task_returns_its_count_and_a_second_run_finds_nothing():
    decided(ny(10, 30) - timedelta(days=800))
    decided(ny(10, 30))

    assert purge_audit.delay().get() == 1
    assert purge_audit.delay().get() == 0
    assert RiskDecision.objects.count() == 1


def test_the_purge_runs_every_night_new_york_time_through_the_beat_declarations():
    entry = next(d for d in declared_periodic_tasks() if d.task == "risk.purge_audit")

    assert (entry.crontab["hour"], entry.crontab["minute"], entry.timezone) == ("3", "30", "America/New_York")
    assert entry.queue == "risk"
    check_installable([entry], known_tasks=registered_task_names())  # registered, on a stage queue


def test_risk_decisions_keeps_the_newest_summaries_up_to_its_cap(committed, redis_store, monkeypatch):
    monkeypatch.setattr(services, "DECISIONS_CAP", 3)
    signals = [SignalFactory(status="closed") for _ in range(4)]

    for signal in signals:
        with committed():
            services.signal_review(signal_id=signal.signal_id)

    summaries = [json.loads(item) for item in redis_store.lrange("risk:decisions", 0, -1)]
    assert [s["signal_id"] for s in summaries] == [s.signal_id for s in reversed(signals[1:])]
    newest = summaries[0]
    assert set(newest) == {"decision_id", "signal_id", "approved", "quantity", "reason", "decided_at"}
    assert newest["approved"] is False and newest["quantity"] == 0
    assert newest["reason"].startswith("rejected: signal_pending: ")
    assert newest["decision_id"] == RiskDecision.objects.get(signal=signals[-1]).pk
    assert newest["decided_at"] == ny(10, 30).isoformat()


def test_risk_decisions_is_written_only_when_the_decision_commits(redis_store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        services.signal_review(signal_id=SignalFactory().signal_id)

    assert redis_store.llen("risk:decisions") == 0


def test_the_first_limits_are_published_when_version_1_is_created(committed, redis_store):
    with committed():
        services.limits_active()

    published = redis_store.hgetall("risk:limits")
    assert published["version"] == "1"
    assert published["max_portfolio_delta"] == "2500.00"
    assert published["moc_entry_deadline"] == "15:45:00"
    assert published["max_leverage"] == "0.5000"
    assert published["flatten_on_daily_loss"] == "1"
    assert set(published) == {*services.EDITABLE_LIMITS, "version"}
