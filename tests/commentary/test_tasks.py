"""The commentary task and its beat schedule."""

from __future__ import annotations

from datetime import UTC, date, datetime

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
