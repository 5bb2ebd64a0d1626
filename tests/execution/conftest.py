"""The execution tests share the risk tests' session clock and recorders (the same paper-account world)."""

from tests.risk.conftest import _session_clock, committed, tasks_run

__all__ = ["_session_clock", "committed", "tasks_run"]
