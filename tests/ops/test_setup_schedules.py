from __future__ import annotations

import json
from dataclasses import replace
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from apps.core import queues
from apps.core.beat import PeriodicDeclaration
from apps.ops import beat_schedules, schedules
from apps.ops.beat_schedules import periodic_tasks_sync
from apps.ops.models import AuditLog

pytestmark = pytest.mark.django_db

REPORT = PeriodicDeclaration(
    app="tests",
    name="test: morning report",
    task="ops.canary",
    crontab={"minute": "30", "hour": "9", "day_of_week": "mon-fri"},
    kwargs={"kind": "open"},
    queue="ops",
)
SWEEP = PeriodicDeclaration(app="tests", name="test: sweep", task="ops.canary", interval_seconds=15)


def _sync(*declarations: PeriodicDeclaration) -> beat_schedules.SyncReport:
    return periodic_tasks_sync(declarations=declarations)


def _rows() -> list[tuple]:
    return list(
        PeriodicTask.objects.order_by("name").values_list(
            "id", "name", "task", "interval_id", "crontab_id", "kwargs", "queue", "enabled", "description"
        )
    )


def test_a_second_sync_changes_no_row():
    first = _sync(REPORT, SWEEP)
    rows = _rows()
    crontabs, intervals = CrontabSchedule.objects.count(), IntervalSchedule.objects.count()

    second = _sync(REPORT, SWEEP)

    assert sorted(first.created) == ["test: morning report", "test: sweep"]
    assert second.created == second.updated == second.disabled == []
    assert sorted(second.unchanged) == ["test: morning report", "test: sweep"]
    assert _rows() == rows
    assert (CrontabSchedule.objects.count(), IntervalSchedule.objects.count()) == (crontabs, intervals)


def test_a_sync_that_changes_rows_leaves_one_audit_entry_and_an_unchanged_one_none():
    _sync(REPORT, SWEEP)
    _sync(REPORT, SWEEP)
    _sync(REPORT)

    entries = list(AuditLog.objects.order_by("id").values_list("actor", "action", "detail"))
    assert entries == [
        (
            "setup_schedules",
            "beat.schedules_synced",
            {"created": ["test: morning report", "test: sweep"], "updated": [], "disabled": []},
        ),
        ("setup_schedules", "beat.schedules_synced", {"created": [], "updated": [], "disabled": ["test: sweep"]}),
    ]


def test_crontab_rows_carry_the_new_york_timezone_by_default():
    _sync(REPORT)
    row = PeriodicTask.objects.get(name="test: morning report")

    assert str(row.crontab.timezone) == "America/New_York"
    assert (row.crontab.minute, row.crontab.hour, row.crontab.day_of_week) == ("30", "9", "mon-fri")
    assert (row.crontab.day_of_month, row.crontab.month_of_year) == ("*", "*")
    assert json.loads(row.kwargs) == {"kind": "open"}
    assert row.queue == "ops"
    assert row.interval is None


def test_an_explicit_timezone_is_kept_on_the_crontab():
    _sync(replace(REPORT, timezone="Europe/London"))

    assert str(PeriodicTask.objects.get(name="test: morning report").crontab.timezone) == "Europe/London"


def test_interval_declarations_become_interval_schedules_in_seconds():
    _sync(SWEEP)
    row = PeriodicTask.objects.get(name="test: sweep")

    assert (row.interval.every, row.interval.period) == (15, IntervalSchedule.SECONDS)
    assert row.crontab is None
    assert row.enabled


def test_a_removed_declaration_is_disabled_not_deleted():
    _sync(REPORT, SWEEP)

    report = _sync(REPORT)

    assert report.disabled == ["test: sweep"]
    sweep = PeriodicTask.objects.get(name="test: sweep")
    assert not sweep.enabled
    assert PeriodicTask.objects.get(name="test: morning report").enabled


def test_a_declaration_that_comes_back_is_enabled_again():
    _sync(REPORT, SWEEP)
    _sync(REPORT)

    report = _sync(REPORT, SWEEP)

    assert report.updated == ["test: sweep (enabled)"]
    assert PeriodicTask.objects.get(name="test: sweep").enabled


def test_rows_not_managed_by_setup_schedules_are_left_alone():
    every_minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="operator: by hand", task="ops.canary", interval=every_minute)

    report = _sync(SWEEP)

    assert "operator: by hand" not in report.disabled
    assert PeriodicTask.objects.get(name="operator: by hand").enabled


def test_a_changed_declaration_updates_its_row_in_place():
    _sync(REPORT)
    row_id = PeriodicTask.objects.get(name="test: morning report").pk

    report = _sync(replace(REPORT, crontab={"minute": "0", "hour": "16"}, kwargs={"kind": "close"}))

    row = PeriodicTask.objects.get(name="test: morning report")
    assert row.pk == row_id
    assert report.updated == ["test: morning report (crontab_id, kwargs)"]
    assert (row.crontab.minute, row.crontab.hour) == ("0", "16")
    assert json.loads(row.kwargs) == {"kind": "close"}


def test_a_declaration_with_enabled_false_installs_a_disabled_row():
    _sync(replace(SWEEP, enabled=False))

    assert not PeriodicTask.objects.get(name="test: sweep").enabled


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"task": "ops.canary", "interval_seconds": 5}, "'name' must be a non-empty string"),
        ({"name": "x", "task": "ops.canary"}, "exactly one of 'interval_seconds' or 'crontab'"),
        ({"name": "x", "task": "ops.canary", "interval_seconds": 5, "crontab": {"minute": "1"}}, "exactly one"),
        ({"name": "x", "task": "ops.canary", "interval_seconds": 0}, "positive integer"),
        ({"name": "x", "task": "ops.canary", "crontab": {"hour": "25"}}, "invalid crontab"),
        ({"name": "x", "task": "ops.canary", "crontab": {"minutes": "5"}}, "crontab must be a dict with keys"),
        ({"name": "x", "task": "ops.canary", "crontab": {"minute": "5"}, "timezone": "Mars/Base"}, "unknown timezone"),
        ({"name": "x", "task": "ops.canary", "interval_seconds": 5, "every": 3}, "unknown keys ['every']"),
        ({"name": "x", "task": "ops.no_such_task", "interval_seconds": 5}, "'ops.no_such_task' is not registered"),
        ({"name": "x", "task": "ops.canary", "interval_seconds": 5, "kwargs": {"at": object()}}, "JSON-serializable"),
        ({"name": "x", "task": "ops.canary", "interval_seconds": 5, "queue": "opps"}, "'opps' is not a stage queue"),
    ],
)
def test_a_bad_declaration_fails_with_a_message_naming_the_app_and_entry_and_writes_nothing(
    monkeypatch, entry, message
):
    monkeypatch.setattr(schedules, "PERIODIC_TASKS", [*schedules.PERIODIC_TASKS, entry])

    with pytest.raises(CommandError) as caught:
        call_command("setup_schedules", stdout=StringIO())

    assert f"ops.schedules entry {entry.get('name', '?')!r}" in str(caught.value)
    assert message in str(caught.value)
    assert not PeriodicTask.objects.filter(task="ops.canary").exists()


def test_the_same_name_declared_twice_is_rejected(monkeypatch):
    monkeypatch.setattr(schedules, "PERIODIC_TASKS", schedules.PERIODIC_TASKS * 2)

    with pytest.raises(CommandError, match="periodic task names must be unique"):
        call_command("setup_schedules", stdout=StringIO())


def test_the_command_installs_the_ops_canary_every_minute_and_is_idempotent():
    first, second = StringIO(), StringIO()

    call_command("setup_schedules", stdout=first)
    rows = _rows()
    call_command("setup_schedules", stdout=second)

    canary = PeriodicTask.objects.get(name="ops: worker canary")
    assert (canary.interval.every, canary.interval.period) == (60, IntervalSchedule.SECONDS)
    assert canary.enabled and canary.queue == "ops"
    assert f"created   {canary.name}" in first.getvalue()
    # One canary per stage queue, each routed to the queue it names (docs/alerting.md).
    canaries = PeriodicTask.objects.filter(task="ops.canary", enabled=True)
    assert {row.queue: json.loads(row.kwargs)["queue"] for row in canaries} == {q: q for q in queues.ALL}
    assert _rows() == rows
    assert " 0 created, 0 updated, 0 disabled," in second.getvalue()


def test_the_command_disables_a_managed_row_whose_declaration_was_removed(monkeypatch):
    call_command("setup_schedules", stdout=StringIO())
    monkeypatch.setattr(schedules, "PERIODIC_TASKS", [])
    out = StringIO()

    call_command("setup_schedules", stdout=out)

    assert "disabled  ops: worker canary (no longer declared)" in out.getvalue()
    assert not PeriodicTask.objects.get(name="ops: worker canary").enabled
