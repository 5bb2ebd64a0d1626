from __future__ import annotations

from decimal import Decimal

import pytest
from celery import shared_task

from apps.ops.models import DeadLetter


@shared_task(name="ops.test_always_fails")
def always_fails(amount, *, reason):
    """Test task: fails on every run, so running it twice just fails twice."""
    raise RuntimeError(f"cannot process {amount}: {reason}")


# throw=False runs the task through Celery's failure path as a worker does (task_failure); the worker itself is
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
def test_an_in_process_run_that_raises_into_its_caller_still_leaves_a_dead_letter():
    # The embedded default runs tasks eagerly and propagates their errors: task_failure is never sent there.
    with pytest.raises(RuntimeError):
        always_fails.delay("3", reason="eager")

    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.args, letter.kwargs) == ("ops.test_always_fails", ["3"], {"reason": "eager"})
    assert letter.exception == "RuntimeError: cannot process 3: eager"


@pytest.mark.django_db
def test_a_task_that_succeeds_leaves_no_dead_letter():
    from apps.ops.tasks import canary

    assert canary.apply(throw=False).successful()
    assert not DeadLetter.objects.exists()
