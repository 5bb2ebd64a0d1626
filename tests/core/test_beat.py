from datetime import UTC, datetime, timedelta

import pytest

from apps.core import beat
from apps.core.beat import PeriodicDeclaration, ScheduleDeclarationError, SimulatedBeat


def test_every_declared_periodic_task_is_valid_and_uniquely_named():
    declarations = beat.declared_periodic_tasks()
    assert len({d.name for d in declarations}) == len(declarations)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "x", "task": "a.b"}, "exactly one of"),
        ({"name": "x", "task": "a.b", "interval_seconds": 0}, "positive integer"),
        ({"name": "x", "task": "a.b", "crontab": {"hour": "25"}}, "invalid crontab"),
        ({"name": "x", "task": "a.b", "crontab": {"hour": "9"}, "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"name": "x", "task": "", "interval_seconds": 5}, "'task' must be"),
        ({"name": "x", "task": "a.b", "interval_seconds": 5, "every": 3}, "unknown keys"),
        ({"name": "x", "task": "a.b", "interval_seconds": 5, "timezone": "UTC"}, "crontab entries only"),
        ({"name": "x", "task": "a.b", "interval_seconds": 5, "enabled": "no"}, "must be true or false"),
        ({"name": "x", "task": "a.b", "interval_seconds": 5, "replay": 0}, "'replay' must be true or false"),
    ],
)
def test_bad_declarations_are_refused_naming_the_app_and_entry(raw, message):
    with pytest.raises(ScheduleDeclarationError, match=message):
        beat._declaration("someapp", raw)


def _beat_with(declarations, start):
    fired: list[tuple[datetime, str]] = []
    now = {"t": start}
    sim = SimulatedBeat(start, run=lambda d: fired.append((now["t"], d.name)), declarations=declarations)

    def advance(t):
        now["t"] = t

    return sim, fired, advance


def test_simulated_beat_fires_intervals_and_new_york_crontabs_in_time_order():
    start = datetime(2026, 11, 20, 21, 28, tzinfo=UTC)  # 16:28 New York
    sweep = PeriodicDeclaration(app="t", name="sweep", task="t.sweep", interval_seconds=60)
    report = PeriodicDeclaration(
        app="t", name="report", task="t.report", crontab={"minute": "30", "hour": "16", "day_of_week": "mon-fri"}
    )
    sim, fired, advance = _beat_with([sweep, report], start)
    sim.run_until(start + timedelta(minutes=3, seconds=30), advance)
    assert [name for _, name in fired] == ["sweep", "sweep", "report", "sweep"]
    report_time = next(t for t, n in fired if n == "report")
    assert report_time == datetime(2026, 11, 20, 21, 30, tzinfo=UTC)
    assert [t for t, _ in fired] == sorted(t for t, _ in fired)


def test_simulated_beat_collapses_a_long_gap_into_one_run():
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    sweep = PeriodicDeclaration(app="t", name="sweep", task="t.sweep", interval_seconds=5)
    sim, fired, advance = _beat_with([sweep], start)
    sim.run_until(start + timedelta(hours=5), advance)
    assert len(fired) == 1
    sim.run_until(start + timedelta(hours=5, seconds=20), advance)
    assert len(fired) == 5


def test_a_replay_skips_live_only_work_and_fires_the_rest():
    start = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    sweep = PeriodicDeclaration(app="t", name="sweep", task="t.sweep", interval_seconds=60)
    canary = PeriodicDeclaration(app="t", name="canary", task="t.canary", interval_seconds=60, replay=False)
    sim, fired, advance = _beat_with([sweep, canary], start)
    sim.run_until(start + timedelta(minutes=2), advance)
    assert [name for _, name in fired] == ["sweep", "sweep"]


def test_what_only_watches_the_live_platform_is_declared_live_only():
    live_only = {d.task for d in beat.declared_periodic_tasks() if not d.replay}
    # Canaries, the alert evaluator, the dashboard's samples and the REST polls would do nothing on a simulated clock.
    assert {
        "ops.canary",
        "ops.alerts_evaluate",
        "ops.dashboard_sample",
        "ingestion.rest_poll",
        "ingestion.flow_alerts_backfill",
    } == live_only
