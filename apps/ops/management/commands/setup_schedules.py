"""Install every app's declared periodic tasks (``apps.<app>.schedules.PERIODIC_TASKS``) into django_celery_beat."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.beat import ScheduleDeclarationError
from apps.ops import beat_schedules


class Command(BaseCommand):
    help = (
        "Create or update the django_celery_beat PeriodicTask rows declared in each app's schedules module; "
        "disable managed rows no longer declared. Safe to run on every deploy: a second run changes nothing."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            declarations = beat_schedules.installable_declarations()
        except ScheduleDeclarationError as exc:
            raise CommandError(f"invalid periodic task declaration: {exc}") from exc
        report = beat_schedules.periodic_tasks_sync(declarations=declarations)
        for name in report.created:
            self.stdout.write(f"created   {name}")
        for name in report.updated:
            self.stdout.write(f"updated   {name}")
        for name in report.disabled:
            self.stdout.write(f"disabled  {name} (no longer declared)")
        self.stdout.write(
            f"setup_schedules: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.disabled)} disabled, {len(report.unchanged)} unchanged"
        )
