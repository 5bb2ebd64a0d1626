from __future__ import annotations

from decimal import Decimal

import pytest
from celery import shared_task

from apps.ops.models import DeadLetter


@shared_task(name="ops.test_always_fails")
def always_fails(amount, *, reason):
    """Test task: fails on every run, so running it twice just fails twice."""
    raise RuntimeError(f"cannot process {amount}: {reason}")


# In-process runs here go through Celery's tracer as a worker would; throw=False keeps the failure inside the task run
# (as on a worker) instead of re-raising it into the caller before Celery reports it.  The worker path itself is
# proven in test_processes.py.


@pytest.mark.django_db
def test_a_failing_task_leaves_a_dead_letter_with_its_arguments_and_traceback():
    result = always_fails.apply(args=("12.50",), kwargs={"reason": "broker down"}, task_id="tid-1", throw=False)

    assert result.failed()
    letter = DeadLetter.objects.get()
    assert letter.task_name == "ops.test_always_fails"
    assert letter.task_id == "tid-1"
    assert letter.args == ["12.50"]
    assert letter.kwargs == {"reason": "broker down"}
    assert letter.exception == "RuntimeError: cannot process 12.50: broker down"
    assert "raise RuntimeError" in letter.traceback
    assert letter.at is not None


@pytest.mark.django_db
def test_arguments_that_are_not_json_are_kept_as_text_rather_than_losing_the_record():
    always_fails.apply(args=(Decimal("1.10"),), kwargs={"reason": "x"}, throw=False)

    assert DeadLetter.objects.get().args == ["1.10"]


@pytest.mark.django_db
def test_a_task_that_succeeds_leaves_no_dead_letter():
    from apps.ops.tasks import canary

    assert canary.apply(throw=False).successful()
    assert not DeadLetter.objects.exists()
