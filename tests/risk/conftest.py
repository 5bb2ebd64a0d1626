from __future__ import annotations

import pytest

from apps.core import clock
from tests.risk.factories import ny, record_tasks, stop_recording


@pytest.fixture(autouse=True)
def _session_clock():
    """Every test starts at 10:30 New York on a regular session day; the root conftest restores the wall clock."""
    clock.set_simulated(ny(10, 30))
    yield


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a block and then its on-commit work (the next stage, Redis writes), as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def tasks_run():
    recorder = record_tasks()
    yield recorder
    stop_recording(recorder)
