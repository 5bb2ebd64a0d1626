"""Installing the declared periodic tasks into django_celery_beat (``manage.py setup_schedules``).

The declarations themselves (``apps.<app>.schedules.PERIODIC_TASKS``) are read and validated by
:mod:`apps.core.beat`, the same code the replay's simulated beat fires from, so a live beat and a replay run the same
schedule.  This module adds what only installation needs (every task registered, kwargs storable as JSON) and makes
the ``PeriodicTask`` rows match.  Rows it manages carry a marker in ``description``: rows an operator added by hand
(and Celery's own ``celery.backend_cleanup``) are left alone, and a declaration that disappears disables its row
instead of deleting it (its run history stays visible in the admin).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from apps.core import queues
from apps.core.beat import CRONTAB_FIELDS, PeriodicDeclaration, ScheduleDeclarationError, declared_periodic_tasks
from apps.ops.services import audit_record

MANAGED_MARKER = "managed by setup_schedules"


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def registered_task_names() -> set[str]:
    """Task names the Celery app knows once every app's tasks module is imported (what a worker would load)."""
    from tradingplatform.celery import app

    app.loader.import_default_modules()
    return set(app.tasks.keys())


def check_installable(declarations: Iterable[PeriodicDeclaration], *, known_tasks: set[str]) -> None:
    """Refuse declarations beat could store but no worker could run: an unknown task name would be sent on every
    tick and fail each time, a queue no worker consumes would collect messages forever, and kwargs travel as JSON
    text in the row."""
    for declaration in declarations:
        where = f"{declaration.app}.schedules entry {declaration.name!r}"
        if declaration.task not in known_tasks:
            raise ScheduleDeclarationError(
                f"{where}: task {declaration.task!r} is not registered with the Celery app (no worker would run it)"
            )
        if declaration.queue is not None and declaration.queue not in queues.ALL:
            raise ScheduleDeclarationError(
                f"{where}: queue {declaration.queue!r} is not a stage queue ({', '.join(queues.ALL)})"
            )
        try:
            json.dumps(declaration.kwargs)
        except (TypeError, ValueError) as exc:
            raise ScheduleDeclarationError(f"{where}: kwargs must be JSON-serializable ({exc})") from exc
        if len(declaration.name) > 200:
            raise ScheduleDeclarationError(f"{where}: name must be at most 200 characters")


def installable_declarations() -> list[PeriodicDeclaration]:
    """Every app's declarations, validated for both the simulated beat and django_celery_beat."""
    declarations = declared_periodic_tasks()
    check_installable(declarations, known_tasks=registered_task_names())
    return declarations


def _schedule_for(declaration: PeriodicDeclaration) -> tuple[IntervalSchedule | None, CrontabSchedule | None]:
    if declaration.interval_seconds is not None:
        interval = (
            IntervalSchedule.objects.filter(every=declaration.interval_seconds, period=IntervalSchedule.SECONDS)
            .order_by("id")
            .first()
        )
        if interval is None:
            interval = IntervalSchedule.objects.create(
                every=declaration.interval_seconds, period=IntervalSchedule.SECONDS
            )
        return interval, None
    fields = {key: declaration.crontab.get(key, "*") for key in CRONTAB_FIELDS}
    crontab = CrontabSchedule.objects.filter(**fields, timezone=declaration.timezone).order_by("id").first()
    if crontab is None:
        # The zone travels with the row: beat evaluates "9:30 mon-fri" in New York time, across DST changes.
        crontab = CrontabSchedule.objects.create(**fields, timezone=ZoneInfo(declaration.timezone))
    return None, crontab


def periodic_tasks_sync(*, declarations: Iterable[PeriodicDeclaration], actor: str = "setup_schedules") -> SyncReport:
    """Make the managed ``PeriodicTask`` rows match ``declarations`` in one transaction.

    Idempotent: a row is saved only when a field differs, so a second run reports everything unchanged, does not
    make beat reload its schedule and writes no audit entry.  Managed rows no longer declared are disabled, never
    deleted.  A run that changes anything leaves one audit entry saying what changed.
    """
    report = SyncReport()
    declared = list(declarations)
    with transaction.atomic():
        for declaration in declared:
            interval, crontab = _schedule_for(declaration)
            wanted = {
                "task": declaration.task,
                "interval_id": interval.pk if interval else None,
                "crontab_id": crontab.pk if crontab else None,
                "solar_id": None,
                "clocked_id": None,
                "queue": declaration.queue,
                "enabled": declaration.enabled,
                "one_off": False,
                "description": f"Declared in {declaration.app}.schedules; {MANAGED_MARKER}.",
            }
            row = PeriodicTask.objects.select_for_update().filter(name=declaration.name).first()
            if row is None:
                PeriodicTask(name=declaration.name, args="[]", kwargs=json.dumps(declaration.kwargs), **wanted).save()
                report.created.append(declaration.name)
                continue
            differs = [key for key, value in wanted.items() if getattr(row, key) != value]
            if json.loads(row.kwargs or "{}") != declaration.kwargs:
                differs.append("kwargs")
            if json.loads(row.args or "[]") != []:
                differs.append("args")
            if not differs:
                report.unchanged.append(declaration.name)
                continue
            for key, value in wanted.items():
                setattr(row, key, value)
            row.kwargs = json.dumps(declaration.kwargs)
            row.args = "[]"
            row.save()
            report.updated.append(f"{declaration.name} ({', '.join(differs)})")

        stale = (
            PeriodicTask.objects.select_for_update()
            .filter(description__contains=MANAGED_MARKER, enabled=True)
            .exclude(name__in={d.name for d in declared})
            .order_by("name")
        )
        for row in stale:
            row.enabled = False
            # save() rather than a bulk update: PeriodicTask.save() bumps the change marker beat polls.
            row.save()
            report.disabled.append(row.name)

        if report.created or report.updated or report.disabled:
            audit_record(
                actor=actor,
                action="beat.schedules_synced",
                target="django_celery_beat.PeriodicTask",
                detail={"created": report.created, "updated": report.updated, "disabled": report.disabled},
            )
    return report
