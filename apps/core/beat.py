"""The periodic work every app declares, and a simulated beat that fires it on the simulated clock.

Each app may have a ``schedules`` module with ``PERIODIC_TASKS``: a list of dicts with ``name``, ``task`` and either
``interval_seconds`` or ``crontab`` (``minute``, ``hour``, ``day_of_week``, ``day_of_month``, ``month_of_year``; in
``timezone``, America/New_York by default), optional ``kwargs``, ``enabled`` and ``replay``.  Live, ``manage.py
setup_schedules`` turns the declarations into django-celery-beat rows; in a replay, :class:`SimulatedBeat` fires the
same declarations when the simulated clock passes their due times, so a replayed day sees its sweeps and reports as a
live day would.  ``replay: False`` marks work that only watches or feeds the live platform (canaries, the alert
evaluator, the dashboard's samples, the REST polls): it would do nothing on a simulated clock, and firing it anyway
cost a replayed day some 10,000 empty task runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

import celery.schedules
from celery.schedules import crontab
from django.apps import apps as django_apps

DEFAULT_TIMEZONE = "America/New_York"
MAX_CATCH_UP = 120
CRONTAB_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


class _ExpandedCrontab(Protocol):
    """The expanded field sets a celery ``crontab`` sets in ``__init__`` (celery-types does not declare them)."""

    minute: set[int]
    hour: set[int]
    day_of_week: set[int]
    day_of_month: set[int]
    month_of_year: set[int]


class ScheduleDeclarationError(ValueError):
    """A ``schedules.py`` declaration that cannot be run; the message names the app and the entry."""


@dataclass(frozen=True)
class PeriodicDeclaration:
    app: str
    name: str
    task: str
    interval_seconds: int | None = None
    crontab: dict[str, str] = field(default_factory=dict)
    timezone: str = DEFAULT_TIMEZONE
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    enabled: bool = True
    replay: bool = True  # fired by a replay's simulated beat (False: live-only work, see the module docstring)

    # ``celery.schedules.crontab`` spelled in full: in this class body ``crontab`` is the field above.
    def celery_crontab(self) -> celery.schedules.crontab:
        return crontab(**{k: self.crontab.get(k, "*") for k in CRONTAB_FIELDS})


def _declaration(app_label: str, raw: object) -> PeriodicDeclaration:
    if not isinstance(raw, dict):
        raise ScheduleDeclarationError(f"{app_label}.schedules: each PERIODIC_TASKS entry must be a dict, got {raw!r}")
    where = f"{app_label}.schedules entry {raw.get('name', '?')!r}"
    unknown = set(raw) - {
        "name",
        "task",
        "interval_seconds",
        "crontab",
        "timezone",
        "kwargs",
        "queue",
        "enabled",
        "replay",
    }
    if unknown:
        raise ScheduleDeclarationError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("name", "task"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ScheduleDeclarationError(f"{where}: {key!r} must be a non-empty string")
    has_interval, has_crontab = "interval_seconds" in raw, "crontab" in raw
    if has_interval == has_crontab:
        raise ScheduleDeclarationError(f"{where}: give exactly one of 'interval_seconds' or 'crontab'")
    if has_interval and (not isinstance(raw["interval_seconds"], int) or raw["interval_seconds"] <= 0):
        raise ScheduleDeclarationError(f"{where}: interval_seconds must be a positive integer")
    cron = raw.get("crontab", {})
    if has_crontab:
        if not isinstance(cron, dict) or set(cron) - set(CRONTAB_FIELDS):
            raise ScheduleDeclarationError(f"{where}: crontab must be a dict with keys among {CRONTAB_FIELDS}")
        try:
            crontab(**{k: str(v) for k, v in cron.items()})
        except ValueError as exc:
            raise ScheduleDeclarationError(f"{where}: invalid crontab {cron}: {exc}") from exc
    if "timezone" in raw and not has_crontab:
        raise ScheduleDeclarationError(f"{where}: 'timezone' applies to crontab entries only")
    for flag in ("enabled", "replay"):
        if not isinstance(raw.get(flag, True), bool):
            raise ScheduleDeclarationError(f"{where}: {flag!r} must be true or false")
    tz = raw.get("timezone", DEFAULT_TIMEZONE)
    try:
        ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise ScheduleDeclarationError(f"{where}: unknown timezone {tz!r}") from exc
    kwargs = raw.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ScheduleDeclarationError(f"{where}: kwargs must be a dict")
    return PeriodicDeclaration(
        app=app_label,
        name=raw["name"],
        task=raw["task"],
        interval_seconds=raw.get("interval_seconds"),
        crontab={k: str(v) for k, v in cron.items()},
        timezone=tz,
        kwargs=kwargs,
        queue=raw.get("queue"),
        enabled=raw.get("enabled", True),
        replay=raw.get("replay", True),
    )


def declared_periodic_tasks() -> list[PeriodicDeclaration]:
    """Every app's declarations, validated; names must be unique across apps."""
    declarations: list[PeriodicDeclaration] = []
    for config in django_apps.get_app_configs():
        try:
            module = importlib.import_module(f"{config.name}.schedules")
        except ModuleNotFoundError as exc:
            if exc.name == f"{config.name}.schedules":
                continue
            raise
        for raw in getattr(module, "PERIODIC_TASKS", []):
            declarations.append(_declaration(config.label, raw))
    names = [d.name for d in declarations]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ScheduleDeclarationError(f"periodic task names must be unique: {sorted(duplicates)}")
    return declarations


class SimulatedBeat:
    """Fires declared periodic tasks as a simulated clock passes their due times (one beat, like live)."""

    def __init__(
        self,
        start: datetime,
        run: Callable[[PeriodicDeclaration], None],
        declarations: list[PeriodicDeclaration] | None = None,
        max_catch_up: int | None = MAX_CATCH_UP,
    ) -> None:
        self._run = run
        self._max_catch_up = max_catch_up
        if declarations is None:
            declarations = declared_periodic_tasks()
        self._declarations = [d for d in declarations if d.enabled and d.replay]
        self._next_interval = {
            d.name: start + timedelta(seconds=d.interval_seconds or 0) for d in self._declarations if d.interval_seconds
        }
        self._cron = [
            (d, cast(_ExpandedCrontab, d.celery_crontab()), ZoneInfo(d.timezone))
            for d in self._declarations
            if d.crontab
        ]
        # crontabs fire on minute boundaries strictly after the start
        self._minute_cursor = start.replace(second=0, microsecond=0)
        self.fired: dict[str, int] = {d.name: 0 for d in self._declarations}

    def _due_until(self, until: datetime) -> list[tuple[datetime, PeriodicDeclaration]]:
        due: list[tuple[datetime, PeriodicDeclaration]] = []
        for declaration in self._declarations:
            if declaration.interval_seconds is None:
                continue
            step = timedelta(seconds=declaration.interval_seconds)
            at = self._next_interval[declaration.name]
            missed = int((until - at) / step) if at <= until else -1
            if self._max_catch_up is not None and missed > self._max_catch_up:
                # A long quiet gap (overnight, a halted feed): like a beat that was down, run once, not thousands.
                at = at + missed * step
            while at <= until:
                due.append((at, declaration))
                at += step
            self._next_interval[declaration.name] = at
        minute = self._minute_cursor + timedelta(minutes=1)
        while minute <= until:
            for declaration, schedule, tz in self._cron:
                local = minute.astimezone(tz)
                if (
                    local.minute in schedule.minute
                    and local.hour in schedule.hour
                    and local.isoweekday() % 7 in schedule.day_of_week
                    and local.day in schedule.day_of_month
                    and local.month in schedule.month_of_year
                ):
                    due.append((minute, declaration))
            self._minute_cursor = minute
            minute += timedelta(minutes=1)
        due.sort(key=lambda item: item[0])
        return due

    def run_until(self, until: datetime, advance: Callable[[datetime], object]) -> int:
        """Fire everything due up to ``until`` in time order, moving the clock to each due time first."""
        fired = 0
        for at, declaration in self._due_until(until):
            advance(at)
            self._run(declaration)
            self.fired[declaration.name] += 1
            fired += 1
        return fired
