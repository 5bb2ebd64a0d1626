"""The commentary task and its beat schedule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from apps.commentary.models import AiReport
from apps.core import clock

pytestmark = pytest.mark.django_db


def test_market_report_defaults_to_today_in_new_york(no_api_key):
    from apps.commentary.tasks import market_report

    # 00:30 UTC on Saturday is still Friday 19:30 in New York.
    clock.set_simulated(datetime(2026, 11, 21, 0, 30, tzinfo=UTC))

    report_id = market_report.delay().get()

    assert report_id is not None
    report = AiReport.objects.get(pk=report_id)
    assert (report.kind, report.day) == ("post_market", date(2026, 11, 20))


def test_market_report_does_nothing_on_a_market_holiday(no_api_key):
    from apps.commentary.tasks import market_report

    clock.set_simulated(datetime(2026, 11, 26, 21, 30, tzinfo=UTC))  # Thanksgiving

    assert market_report.delay(kind="post_market").get() is None
    assert market_report.delay(kind="intraday", day="2026-11-28").get() is None  # a Saturday
    assert AiReport.objects.count() == 0


def test_report_schedules_fire_at_new_york_market_times():
    from apps.core.beat import declared_periodic_tasks

    declared = {d.name: d for d in declared_periodic_tasks() if d.task == "commentary.market_report"}

    times = {d.kwargs["kind"]: (d.crontab["hour"], d.crontab["minute"], d.timezone) for d in declared.values()}
    assert times == {
        "pre_market": ("9", "0", "America/New_York"),
        "intraday": ("12", "30", "America/New_York"),
        "post_market": ("16", "30", "America/New_York"),
    }
    assert all(d.crontab["day_of_week"] == "mon-fri" for d in declared.values())


def test_release_due_is_declared_every_five_seconds():
    from apps.core.beat import declared_periodic_tasks

    (release,) = [d for d in declared_periodic_tasks() if d.task == "distribution.release_due"]

    assert release.interval_seconds == 5


def test_the_three_reports_fire_at_their_new_york_times_on_a_trading_day_and_not_on_a_holiday(
    no_api_key, django_capture_on_commit_callbacks
):
    """Beat, simulated over Wednesday 2026-11-25 (a full session) and Thursday 2026-11-26 (Thanksgiving, NYSE
    closed), fires the declared crontabs; the real task runs at each firing with the platform clock moved there."""
    from apps.approvals.models import ApprovalRequest
    from apps.core.beat import SimulatedBeat, declared_periodic_tasks
    from apps.core.calendar import is_trading_day
    from tradingplatform.celery import app

    assert is_trading_day(date(2026, 11, 25)) and not is_trading_day(date(2026, 11, 26))
    declarations = [d for d in declared_periodic_tasks() if d.task.startswith("commentary.")]
    assert len(declarations) == 3
    start = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # Wednesday 00:00 New York (EST)
    clock.set_simulated(start)
    fired: list[tuple[datetime, str, int | None]] = []

    def run(declaration):
        result = app.tasks[declaration.task].delay(**declaration.kwargs).get()
        fired.append((clock.now(), declaration.kwargs["kind"], result))

    beat = SimulatedBeat(start, run=run, declarations=declarations)
    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(datetime(2026, 11, 27, 5, 0, tzinfo=UTC), clock.advance_to)  # to Friday 00:00 New York

    wednesday = [
        (datetime(2026, 11, 25, 14, 0, tzinfo=UTC), "pre_market"),  # 09:00 New York
        (datetime(2026, 11, 25, 17, 30, tzinfo=UTC), "intraday"),  # 12:30
        (datetime(2026, 11, 25, 21, 30, tzinfo=UTC), "post_market"),  # 16:30
    ]
    thanksgiving = [(at + timedelta(days=1), kind) for at, kind in wednesday]
    assert [(at, kind) for at, kind, _ in fired] == wednesday + thanksgiving
    assert [result for *_, result in fired[3:]] == [None, None, None]  # fired, but the market is closed
    reports = {r.kind: r for r in AiReport.objects.all()}
    assert set(reports) == {"pre_market", "intraday", "post_market"}
    assert all(r.day == date(2026, 11, 25) for r in reports.values())
    assert [(reports[kind].created_at, kind) for _, kind in wednesday] == wednesday
    assert [reports[kind].pk for _, kind, _ in fired[:3]] == [result for *_, result in fired[:3]]
    assert ApprovalRequest.objects.filter(subject_type="ai_report").count() == 3
